"""FrameResult and Concept converters, checked after a CDR round trip through the rosbags typestore."""
from dataclasses import replace

import numpy as np
import pytest
from synthetic_results import HEIGHT, WIDTH, sample_masks, sample_result

from sam3_ros.core.image_encoding import image_to_rgb
from sam3_ros.core.masks import RleMask
from sam3_ros.core.prompts import Concept, ExemplarBox, PromptError, make_concept
from sam3_ros.core.results import FrameResult, TrackState
from sam3_ros.io import messages
from sam3_ros.io.overlay import draw_overlay, track_colour
from sam3_ros.io.ros_types import RosbagsTypes, typestore

TYPES = RosbagsTypes()
STORE = typestore()


def roundtrip(msg):
    """The message as a subscriber would receive it."""
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


@pytest.fixture
def result() -> FrameResult:
    return sample_result()


@pytest.fixture
def header(result):
    return messages.header(result.stamp_ns, "camera_optical", TYPES)


def test_header_splits_the_stamp():
    msg = roundtrip(messages.header(12 * 10**9 + 345, "cam", TYPES))
    assert (msg.stamp.sec, msg.stamp.nanosec, msg.frame_id) == (12, 345, "cam")


def box_of(bbox) -> tuple[float, float, float, float]:
    cx, cy = bbox.center.position.x, bbox.center.position.y
    return cx - bbox.size_x / 2, cy - bbox.size_y / 2, cx + bbox.size_x / 2, cy + bbox.size_y / 2


def mask_bounds(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_instance_array_carries_masks_boxes_states_and_positions(result, header):
    msg = roundtrip(messages.instance_array(result, header, TYPES))
    assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == result.stamp_ns
    masks = sample_masks()
    assert [i.track_id for i in msg.instances] == [3, 4, 70000, 12]
    for sent, inst in zip(result.instances, msg.instances):
        decoded = RleMask(inst.mask_height, inst.mask_width, tuple(int(c) for c in inst.mask_rle)).to_array()
        assert np.array_equal(decoded, masks[inst.track_id])
        assert box_of(inst.bbox) == mask_bounds(masks[inst.track_id])
        assert (inst.label, inst.concept_id) == (sent.label, sent.concept_id)
        assert inst.score == pytest.approx(sent.score, abs=1e-6)
        assert inst.state == int(sent.state)
        assert inst.has_position == (sent.position_3d is not None)
    located = msg.instances[0]
    assert located.position_frame_id == "camera_optical"
    assert (located.centroid.x, located.centroid.y, located.centroid.z) == (0.1, -0.2, 1.5)
    assert (located.size.x, located.size.y, located.size.z) == (0.08, 0.1, 0.05)
    assert msg.instances[1].state == TrackState.TENTATIVE == 0


def test_instance_state_values_match_the_message_constants():
    constants = {name: value for name, _, value in STORE.fielddefs["sam3_ros_interfaces/msg/Instance"][0]}
    assert {f"STATE_{s.name}": int(s) for s in TrackState} == constants


def test_detection2d_array(result, header):
    msg = roundtrip(messages.detection2d_array(result, header, TYPES))
    masks = sample_masks()
    assert [d.id for d in msg.detections] == ["3", "4", "70000", "12"]
    for sent, det in zip(result.instances, msg.detections):
        (hypothesis,) = det.results
        assert hypothesis.hypothesis.class_id == sent.label
        assert hypothesis.hypothesis.score == pytest.approx(sent.score)
        assert box_of(det.bbox) == mask_bounds(masks[int(det.id)])
        assert det.header.frame_id == "camera_optical"
        assert len(hypothesis.pose.covariance) == 36


def test_detection3d_array_has_only_located_instances(result, header):
    msg = roundtrip(messages.detection3d_array(result, header, TYPES))
    assert [d.id for d in msg.detections] == ["3", "70000"]
    forklift = msg.detections[1]
    centre = forklift.bbox.center.position
    assert (centre.x, centre.y, centre.z) == (1.0, 0.5, 6.0)
    assert (forklift.bbox.size.x, forklift.bbox.size.y, forklift.bbox.size.z) == (2.0, 2.2, 1.5)
    assert forklift.bbox.center.orientation.w == 1.0
    assert forklift.results[0].hypothesis.class_id == "forklift"
    assert msg.header.frame_id == forklift.header.frame_id == "camera_optical"


def test_detection3d_array_uses_the_positions_frame(result):
    moved = replace(result, instances=[
        replace(inst, position_3d=replace(inst.position_3d, frame_id="base_link"))
        if inst.position_3d else inst for inst in result.instances
    ])
    msg = roundtrip(messages.detection3d_array(moved, messages.header(5, "camera_optical", TYPES), TYPES))
    assert msg.header.frame_id == "base_link"
    assert {d.header.frame_id for d in msg.detections} == {"base_link"}
    assert msg.header.stamp.nanosec == 5


def test_instance_id_image_decodes_to_the_results_id_image(result, header):
    msg = roundtrip(messages.instance_id_image(result, header, TYPES))
    assert (msg.encoding, msg.height, msg.width) == ("mono16", HEIGHT, WIDTH)
    pixels = np.frombuffer(msg.data.tobytes(), dtype=">u2" if msg.is_bigendian else "<u2")
    pixels = pixels.reshape(msg.height, msg.step // 2)[:, :msg.width]
    # Track 70000 is past uint16: it wraps to 70000 - 65535 = 4465; the others keep their ids.
    expected = result.instance_id_image(id_of=lambda inst: 4465 if inst.track_id == 70000 else inst.track_id)
    assert np.array_equal(pixels, expected)
    # Where discs 3 (score 0.91) and 4 (0.55) overlap, the better one wins.
    masks = sample_masks()
    assert set(np.unique(pixels[masks[3] & masks[4]])) == {3}


def test_id_image_values_wrap_into_uint16_without_zero():
    assert [messages.id_image_value(t) for t in (1, 2, 65535, 65536, 65537, 131070, 131071)] == \
        [1, 2, 65535, 1, 2, 65535, 1]


def test_label_info_names_every_pixel_value_of_the_id_image(result, header):
    info = roundtrip(messages.label_info(result, header, TYPES))
    names = {c.class_id: c.class_name for c in info.class_map}
    image = roundtrip(messages.instance_id_image(result, header, TYPES))
    values = set(np.unique(np.frombuffer(image.data.tobytes(), "<u2"))) - {0}
    assert values <= set(names)
    assert names[4465] == "forklift #70000" and names[3] == "red cup #3" and names[12] == "pallet #12"


def test_label_info_from_a_track_mapping(header):
    info = roundtrip(messages.label_info({9: "door", 2: "person"}, header, TYPES, threshold=0.4))
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(2, "person #2"), (9, "door #9")]
    assert info.threshold == pytest.approx(0.4)


def test_overlay_image_is_rgb8(header):
    rgb = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = roundtrip(messages.overlay_image(rgb, header, TYPES))
    assert msg.encoding == "rgb8"
    assert np.array_equal(image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data), rgb)


def test_marker_constants_match_visualization_msgs():
    constants = {name: value for name, _, value in STORE.fielddefs["visualization_msgs/msg/Marker"][0]}
    assert messages.MARKER_TEXT_VIEW_FACING == constants["TEXT_VIEW_FACING"]
    assert messages.MARKER_ADD == constants["ADD"]
    assert messages.MARKER_DELETEALL == constants["DELETEALL"]


def test_marker_array_clears_then_labels_located_instances(result, header):
    msg = roundtrip(messages.marker_array(result, header, TYPES, lifetime_s=1.25))
    first, *texts = msg.markers
    assert first.action == messages.MARKER_DELETEALL
    assert [m.id for m in texts] == [3, 70000]
    cup = texts[0]
    assert cup.action == messages.MARKER_ADD and cup.type == messages.MARKER_TEXT_VIEW_FACING
    assert cup.text == "red cup #3 0.91"
    assert (cup.pose.position.x, cup.pose.position.y, cup.pose.position.z) == (0.1, -0.2, 1.5)
    assert (cup.lifetime.sec, cup.lifetime.nanosec) == (1, 250_000_000)
    assert cup.header.frame_id == "camera_optical"
    expected = [c / 255 for c in track_colour(3)]
    assert [cup.color.r, cup.color.g, cup.color.b] == pytest.approx(expected, abs=1e-6)
    assert cup.color.a == 1.0


def located_at_scale(extent_m: float, track_id: int = 5) -> FrameResult:
    """One located instance whose largest extent is ``extent_m`` (axis-aligned, no oriented box)."""
    inst = sample_result().instances[0]
    position = replace(inst.position_3d, size=(extent_m / 4, extent_m, extent_m / 2), box=None)
    return FrameResult(0, HEIGHT, WIDTH, [replace(inst, track_id=track_id, position_3d=position)], stamp_ns=1)


def text_marker(result: FrameResult, header):
    (text,) = [m for m in roundtrip(messages.marker_array(result, header, TYPES)).markers
               if m.type == messages.MARKER_TEXT_VIEW_FACING and m.action == messages.MARKER_ADD]
    return text


@pytest.mark.parametrize("extent_m, low_m, high_m", [
    (0.08, 0.015, 0.03),   # a cup on a table, seen from ~1 m: about 2 cm
    (0.3, 0.04, 0.08),     # a shoebox: a few cm
    (1.8, 0.25, 0.4),      # a person in a warehouse, seen from ~10 m: some 30 cm
    (12.0, 0.25, 0.4),     # a random mask over a whole wall: capped, not metres tall
])
def test_text_height_follows_the_instance_size_within_legible_bounds(header, extent_m, low_m, high_m):
    assert low_m <= text_marker(located_at_scale(extent_m), header).scale.z <= high_m


def test_text_spacing_is_the_fonts_own_word_space(header):
    """rviz2 (MovableText) draws a glyph cell 2 * scale.z tall and advances a space by scale.x. Its
    font, Liberation Sans (SIL OFL), has a space advance of 569/2048 em and a cell of 1.125 em at
    18 pt / 96 dpi (27 px for a 24 px em): a space of 2 * 0.2778 / 1.125 = 0.49 of scale.z (0.52 with
    rviz's pixel rounding), half the 1.0 that made words look far apart."""
    for extent_m in (0.08, 1.8):
        scale = text_marker(located_at_scale(extent_m), header).scale
        assert 0.45 <= scale.x / scale.z <= 0.56


def test_oriented_box_and_text_share_the_overlays_track_colour(header):
    inst = sample_result().instances[0]
    box = messages.OrientedBox((0.1, -0.2, 1.5), (0.2, 0.1, 0.05), (0.0, 0.0, 0.0, 1.0))
    result = FrameResult(0, HEIGHT, WIDTH, [replace(inst, track_id=11,
                                                    position_3d=replace(inst.position_3d, box=box))], stamp_ns=1)
    markers = roundtrip(messages.marker_array(result, header, TYPES)).markers[1:]
    assert [(m.ns, m.type) for m in markers] == [("sam3", messages.MARKER_TEXT_VIEW_FACING),
                                                 ("sam3_boxes", messages.MARKER_CUBE)]
    # the overlay paints track 11 in this colour (its contour, box and caption)
    overlay_rgb = draw_overlay(np.zeros((HEIGHT, WIDTH, 3), np.uint8), result, alpha=1.0)
    painted = {tuple(int(c) for c in px) for px in overlay_rgb.reshape(-1, 3)} - {(0, 0, 0)}
    for marker in markers:
        rgb = tuple(round(c * 255) for c in (marker.color.r, marker.color.g, marker.color.b))
        assert rgb in painted and rgb == track_colour(11)
    assert [m.color.a for m in markers] == [1.0, pytest.approx(messages.BOX_MARKER_ALPHA)]
    assert markers[1].scale.z == pytest.approx(0.05)  # the cube keeps the box's size


def test_a_flat_instances_box_is_drawn_with_some_thickness(header):
    """A plane's points give a box of zero thickness, which rviz2 draws black or not at all."""
    inst = sample_result().instances[0]
    box = messages.OrientedBox((0.0, 0.0, 1.5), (0.4, 0.3, 0.0), (0.0, 0.0, 0.0, 1.0))
    result = FrameResult(0, HEIGHT, WIDTH, [replace(inst, position_3d=replace(inst.position_3d, box=box))], stamp_ns=1)
    (cube,) = [m for m in roundtrip(messages.marker_array(result, header, TYPES)).markers if m.ns == "sam3_boxes"]
    assert (cube.scale.x, cube.scale.y) == (pytest.approx(0.4), pytest.approx(0.3))
    assert cube.scale.z == pytest.approx(messages.BOX_MARKER_MIN_M)


def test_point_cloud_points_carry_their_tracks_overlay_colour(header):
    cloud = np.zeros(5, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("track_id", "<u4")])
    cloud["x"] = np.arange(5)
    cloud["track_id"] = [7, 7, 2, 9, 2]
    msg = roundtrip(messages.point_cloud2(cloud, header, TYPES))
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("track_id", 12, 6), ("rgb", 16, 7)]
    assert (msg.point_step, msg.row_step, msg.width) == (20, 100, 5)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(5, 20)
    packed = raw[:, 16:20].copy().view("<u4").reshape(-1)
    rgb = [((int(v) >> 16) & 255, (int(v) >> 8) & 255, int(v) & 255) for v in packed]
    assert rgb == [track_colour(t) for t in (7, 7, 2, 9, 2)]
    assert raw[:, 12:16].copy().view("<u4").reshape(-1).tolist() == [7, 7, 2, 9, 2]
    assert raw[:, 0:4].copy().view("<f4").reshape(-1).tolist() == [0, 1, 2, 3, 4]


def test_point_cloud_without_track_ids_is_sent_as_given(header):
    cloud = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    msg = roundtrip(messages.point_cloud2(cloud, header, TYPES))
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 12
    empty = np.zeros(0, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("track_id", "<u4")])
    assert roundtrip(messages.point_cloud2(empty, header, TYPES)).point_step == 20


def test_marker_colours_are_stable_across_frames(header):
    first = roundtrip(messages.marker_array(sample_result(frame_index=1), header, TYPES)).markers[1].color
    again = roundtrip(messages.marker_array(sample_result(frame_index=2), header, TYPES)).markers[1].color
    assert (first.r, first.g, first.b) == (again.r, again.g, again.b)


def test_diagnostics(header):
    values = {"fps": 14.98765, "live_tracks": 3, "device": "cuda:0"}
    level = messages.DiagnosticLevel.WARN
    msg = roundtrip(messages.diagnostics(header, "sam3: pipeline", "H100", values, level, "slow", TYPES))
    (status,) = msg.status
    assert (status.level, status.name, status.message) == (1, "sam3: pipeline", "slow")
    assert status.hardware_id == "H100"
    assert {kv.key: kv.value for kv in status.values} == {
        "fps": "14.988", "live_tracks": "3", "device": "cuda:0"}


def test_diagnostic_levels_match_diagnostic_msgs():
    constants = {name: value for name, _, value in STORE.fielddefs["diagnostic_msgs/msg/DiagnosticStatus"][0]}
    assert {level.name: int(level) for level in messages.DiagnosticLevel} == constants


CONCEPT = make_concept("forklift", "yellow forklift",
                       [ExemplarBox(10, 20, 110, 90), ExemplarBox(200, 40, 260, 100, positive=False)], 0.3)


def test_concept_round_trip():
    msg = roundtrip(messages.concept_msg(CONCEPT, TYPES))
    assert box_of(msg.exemplar_boxes[0]) == (10, 20, 110, 90)
    assert list(msg.exemplar_positive) == [True, False]
    assert messages.concept_from_msg(msg) == CONCEPT


def test_concept_inside_a_service_request():
    request = TYPES.new("sam3_ros_interfaces/srv/SetConcepts_Request",
                        concepts=[messages.concept_msg(CONCEPT, TYPES)])
    (msg,) = roundtrip(request).concepts
    assert messages.concept_from_msg(msg) == CONCEPT


def concept_fields(**changes):
    fields = dict(id="", text="person", exemplar_boxes=[], exemplar_positive=np.zeros(0, bool),
                  score_threshold=0.0, camera="")
    return TYPES.new("sam3_ros_interfaces/msg/Concept", **{**fields, **changes})


def test_concept_defaults():
    concept = messages.concept_from_msg(roundtrip(concept_fields()))
    assert concept == Concept("person", "person", (), None)


def test_empty_positive_flags_mean_all_positive():
    boxes = [messages.concept_msg(CONCEPT, TYPES).exemplar_boxes[0]] * 2
    concept = messages.concept_from_msg(roundtrip(concept_fields(exemplar_boxes=boxes)))
    assert [box.positive for box in concept.exemplars] == [True, True]


@pytest.mark.parametrize("changes, reason", [
    ({"exemplar_positive": np.array([True])}, "1 exemplar_positive"),
    ({"text": "", "id": ""}, "explicit id"),
    ({"score_threshold": 1.5}, "not in"),
    ({"id": "bad id!"}, "invalid"),
])
def test_bad_concepts(changes, reason):
    boxes = [messages.concept_msg(CONCEPT, TYPES).exemplar_boxes[0]] * 2
    with pytest.raises(PromptError, match=reason):
        messages.concept_from_msg(roundtrip(concept_fields(exemplar_boxes=boxes, **changes)))


def test_rotated_exemplar_box_is_refused():
    box = messages.concept_msg(CONCEPT, TYPES).exemplar_boxes[0]
    box.center.theta = 0.3
    with pytest.raises(PromptError, match="rotated"):
        messages.concept_from_msg(concept_fields(exemplar_boxes=[box]))


def test_exemplar_boxes_are_checked_against_the_image():
    msg = messages.concept_msg(CONCEPT, TYPES)
    clipped = messages.concept_from_msg(msg, image_size=(99, 259))  # box 1 sticks out by 1 px
    assert clipped.exemplars[1].as_tuple() == (200, 40, 259, 99)
    with pytest.raises(PromptError, match="outside"):
        messages.concept_from_msg(msg, image_size=(50, 100))


def test_factory_requires_every_field():
    with pytest.raises(TypeError, match=r"missing fields \['z'\]"):
        TYPES.new("geometry_msgs/msg/Point", x=1.0, y=2.0)
    with pytest.raises(TypeError, match=r"unknown fields \['w'\]"):
        TYPES.new("geometry_msgs/msg/Point", x=1.0, y=2.0, z=0.0, w=1.0)
    with pytest.raises(KeyError, match="no_msgs/msg/Nothing"):
        TYPES.new("no_msgs/msg/Nothing")
