"""The node's callbacks and service handlers as plain functions over the core (no rclpy).

Requests, responses and camera messages are real ROS 2 messages built with the rosbags typestore,
and every published message is serialised to CDR and back.
"""
import numpy as np
import pytest

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.image_encoding import rgb_to_image_fields
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.results import TrackState
from sam3_ros.factory import LoadedPipeline
from sam3_ros.io import messages
from sam3_ros.io.ros_types import RosbagsTypes, typestore
from sam3_ros.model.tiny import byte_level_clip_tokenizer
from sam3_ros.ros.controller import NodeCore, NodeState
from sam3_ros.ros.params import NodeParams

from scripted_world import MASK, ScriptedComponents, ScriptedObject, ScriptedScene, static

T = RosbagsTypes()
PKG = "sam3_ros_interfaces"
PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 4}


class Clock:
    def __init__(self):
        self.ns = 1_000_000_000

    def __call__(self):
        return self.ns


def roundtrip(msg, msgtype):
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def concept(text="", cid="", boxes=(), positive=(), threshold=0.0, camera=""):
    bboxes = [messages._bbox2d(b, T) for b in boxes]
    return T.new(f"{PKG}/msg/Concept", id=cid, text=text, exemplar_boxes=bboxes,
                 exemplar_positive=T.sequence(np.array(positive, dtype=bool)), score_threshold=threshold,
                 camera=camera)


def request(service, **fields):
    return T.new(f"{PKG}/srv/{service}_Request", **fields)


def response(service, fields):
    return roundtrip(T.new(f"{PKG}/srv/{service}_Response", **fields), f"{PKG}/srv/{service}_Response")


def image_msg(rgb, stamp_ns, encoding="rgb8", frame_id="camera_optical"):
    return T.new("sensor_msgs/msg/Image", header=messages.header(stamp_ns, frame_id, T),
                 **rgb_to_image_fields(rgb, encoding))


def depth_msg(depth_m, stamp_ns, encoding="32FC1"):
    if encoding == "32FC1":
        data, step = depth_m.astype("<f4").view(np.uint8).reshape(-1), depth_m.shape[1] * 4
    else:
        data, step = np.nan_to_num(depth_m * 1000).astype("<u2").view(np.uint8).reshape(-1), depth_m.shape[1] * 2
    h, w = depth_m.shape
    return T.new("sensor_msgs/msg/Image", header=messages.header(stamp_ns, "camera_optical", T), height=h, width=w,
                 encoding=encoding, is_bigendian=0, step=step, data=data)


def camera_info(stamp_ns, f=50.0, size=MASK):
    k = np.array([f, 0, size / 2, 0, f, size / 2, 0, 0, 1], dtype=np.float64)
    zeros9 = np.zeros(9)
    roi = T.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T.new("sensor_msgs/msg/CameraInfo", header=messages.header(stamp_ns, "camera_optical", T), height=size,
                 width=size, distortion_model="plumb_bob", d=np.zeros(5), k=k, r=zeros9, p=np.zeros(12),
                 binning_x=0, binning_y=0, roi=roi)


@pytest.fixture
def tiny_core(tiny, tiny_components):
    clock = Clock()
    factory = lambda config: LoadedPipeline(Sam3Pipeline(tiny_components, tiny.tokenizer, config), tiny.describe(),
                                            True, tiny)
    core = NodeCore(NodeParams(prompts=["red cup"], warmup_frames=1), PipelineConfig().updated(PERMISSIVE), T,
                    factory, now_ns=clock)
    core.clock = clock
    return core


def scripted_core(objects, **params):
    scene = ScriptedScene(objects)
    components = ScriptedComponents(scene, byte_level_clip_tokenizer()).components()
    clock = Clock()
    factory = lambda config: LoadedPipeline(Sam3Pipeline(components, byte_level_clip_tokenizer(), config),
                                            "scripted stand-in network", True)
    core = NodeCore(NodeParams(prompts=["box"], warmup_frames=1, **params), PipelineConfig(), T, factory, now_ns=clock)
    core.clock = clock
    core.configure()
    core.activate()
    return core, scene


def feed(core, rgb, stamp_ns, **kw):
    core.on_camera(image_msg(rgb, stamp_ns, **kw.pop("encoding_kw", {})), **kw)
    return core.process_next(timeout_s=0.0)


# -- services ----------------------------------------------------------------------------------------------------

def test_services_answer_before_the_model_loads_and_apply_later(tiny_core):
    fields = tiny_core.set_concepts(request("SetConcepts", concepts=[concept("forklift"), concept("", "pal", [(0, 0, 9, 9)])]))
    msg = response("SetConcepts", fields)
    assert msg.success and "applies once it is loaded" in msg.message
    assert [c.id for c in msg.active_concepts] == ["forklift", "pal"]
    assert not tiny_core.reset_tracks().get("success")
    assert "unconfigured" in tiny_core.refine_track(request(
        "RefineTrack", track_id=1, use_box=False, box=messages._bbox2d((0, 0, 1, 1), T), points=[],
        point_positive=T.sequence(np.array([], bool))))["message"]
    tiny_core.configure()
    assert [c.id for c in tiny_core.pipeline.active_concepts()] == ["forklift", "pal"]
    assert tiny_core.pipeline.tracks.tracks == {}  # the warm-up leaves nothing behind


@pytest.mark.parametrize("concepts, reason", [
    ([concept("")], "empty"),
    ([concept("cup"), concept("cup")], "duplicate"),
    ([concept("cup", boxes=[(0, 0, 10, 10)], positive=[True, False])], "exemplar_positive"),
    ([concept("cup", boxes=[(5, 5, 5, 20)])], "degenerate"),
    ([concept("cup", threshold=3.0)], "threshold"),
])
def test_invalid_concepts_change_nothing_and_say_why(tiny_core, concepts, reason):
    before = [c.id for c in tiny_core.active_concepts()]
    msg = response("SetConcepts", tiny_core.set_concepts(request("SetConcepts", concepts=concepts)))
    assert not msg.success and reason in msg.message
    assert [c.id for c in msg.active_concepts] == before == ["red_cup"]


def test_add_replace_remove_and_list(tiny_core):
    tiny_core.configure()
    assert response("AddConcept", tiny_core.add_concept(request("AddConcept", concept=concept("box"), replace=False))).success
    dup = response("AddConcept", tiny_core.add_concept(request("AddConcept", concept=concept("box"), replace=False)))
    assert not dup.success and "replace=true" in dup.message
    replaced = response("AddConcept", tiny_core.add_concept(
        request("AddConcept", concept=concept("crate", cid="box"), replace=True)))
    assert replaced.success and [c.text for c in replaced.active_concepts] == ["red cup", "crate"]
    assert not response("RemoveConcept", tiny_core.remove_concept(request("RemoveConcept", id="nope"))).success
    assert response("RemoveConcept", tiny_core.remove_concept(request("RemoveConcept", id="box"))).success
    listed = response("ListConcepts", tiny_core.list_concepts(request("ListConcepts")))
    assert [c.id for c in listed.active_concepts] == ["red_cup"] and listed.success


def test_exemplar_boxes_are_checked_against_the_last_image(tiny_core):
    tiny_core.configure()
    tiny_core.activate()
    feed(tiny_core, np.zeros((48, 64, 3), np.uint8), 2_000_000_000)
    outside = response("AddConcept", tiny_core.add_concept(
        request("AddConcept", concept=concept("", "far", [(50, 40, 90, 60)]), replace=False)))
    assert not outside.success and "outside" in outside.message


def test_configure_failure_is_reported_and_services_keep_answering():
    def broken(config):
        raise RuntimeError("checkpoint directory /x does not exist")
    core = NodeCore(NodeParams(), PipelineConfig(), T, broken)
    with pytest.raises(RuntimeError):
        core.configure()
    assert core.state == NodeState.FAILED
    status = roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0]
    assert status.level == messages.DiagnosticLevel.ERROR and "does not exist" in status.message
    assert response("ListConcepts", core.list_concepts()).success


# -- frames ---------------------------------------------------------------------------------------------------------

OUTPUT_TYPES = {
    "instances": f"{PKG}/msg/InstanceArray", "detections": "vision_msgs/msg/Detection2DArray",
    "detections_3d": "vision_msgs/msg/Detection3DArray", "id_image": "sensor_msgs/msg/Image",
    "label_info": "vision_msgs/msg/LabelInfo", "overlay": "sensor_msgs/msg/Image",
    "markers": "visualization_msgs/msg/MarkerArray",
}


def test_latest_frame_wins_and_drops_are_counted(tiny_core):
    tiny_core.configure()
    rgb = np.zeros((48, 64, 3), np.uint8)
    tiny_core.on_camera(image_msg(rgb, 1))  # inactive: ignored
    assert tiny_core.counters.received == 0
    tiny_core.activate()
    for i in range(3):
        tiny_core.on_camera(image_msg(rgb, 1_000 + i))
    out = tiny_core.process_next(timeout_s=0.0)
    assert out.result.stamp_ns == 1_002 and tiny_core.counters.dropped == 2
    assert tiny_core.process_next(timeout_s=0.0) is None


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_supported_encodings_are_processed_and_every_output_serialises(tiny_core, encoding):
    tiny_core.configure()
    tiny_core.activate()
    rgb = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    out = feed(tiny_core, rgb, 5_000_000_000, encoding_kw={"encoding": encoding})
    assert out is not None and out.markers is None and out.detections_3d is None  # no depth given
    for key, msgtype in OUTPUT_TYPES.items():
        message = getattr(out, key)
        if message is not None:
            back = roundtrip(message, msgtype)
            if hasattr(back, "header"):
                assert back.header.frame_id == "camera_optical" and back.header.stamp.sec == 5
    ids = [i.track_id for i in roundtrip(out.instances, OUTPUT_TYPES["instances"]).instances]
    assert ids == [i.track_id for i in out.result.instances]


def test_bad_images_are_counted_and_never_stop_the_node(tiny_core):
    tiny_core.configure()
    tiny_core.activate()
    header = messages.header(1, "cam", T)
    bad = [
        T.new("sensor_msgs/msg/Image", header=header, height=4, width=4, encoding="bayer_rggb8", is_bigendian=0,
              step=4, data=np.zeros(16, np.uint8)),
        T.new("sensor_msgs/msg/Image", header=header, height=0, width=0, encoding="rgb8", is_bigendian=0, step=0,
              data=np.zeros(0, np.uint8)),
        T.new("sensor_msgs/msg/Image", header=header, height=8, width=8, encoding="rgb8", is_bigendian=0, step=24,
              data=np.zeros(10, np.uint8)),
        T.new("sensor_msgs/msg/CompressedImage", header=header, format="jpeg", data=np.zeros(10, np.uint8)),
    ]
    for msg in bad:
        tiny_core.on_camera(msg)
        assert tiny_core.process_next(timeout_s=0.0) is None
    assert tiny_core.counters.bad_images == len(bad)
    assert feed(tiny_core, np.zeros((48, 64, 3), np.uint8), 2) is not None


def test_compressed_images_are_accepted(tiny_core):
    import cv2

    tiny_core.configure()
    tiny_core.activate()
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    tiny_core.on_camera(T.new("sensor_msgs/msg/CompressedImage", header=messages.header(7, "cam", T), format="jpeg",
                              data=jpeg.reshape(-1)))
    assert tiny_core.process_next(timeout_s=0.0).result.image_width == 64


def test_stale_frames_are_dropped_and_counted(tiny_core):
    tiny_core.params.max_frame_age_s = 0.5
    tiny_core.configure()
    tiny_core.activate()
    tiny_core.clock.ns = 10 * 10**9
    tiny_core.on_camera(image_msg(np.zeros((48, 64, 3), np.uint8), 9 * 10**9))  # one second old
    assert tiny_core.process_next(timeout_s=0.0) is None and tiny_core.counters.stale == 1


def test_depth_gives_3d_from_the_mask_pixels_in_mm_and_m():
    for encoding in ("32FC1", "16UC1"):
        core, scene = scripted_core([ScriptedObject("box", static(20, 24, 44, 40))], camera_info_topic="info",
                                    depth_topic="depth")
        depth = np.full((MASK, MASK), 4.0, np.float32)   # background
        depth[24:40, 20:44] = 2.0                         # the object
        depth[30, 30] = np.nan                            # a hole in the reading
        depth[10:14, 10:14] = 0.0                         # no reading
        stamp = 3 * 10**9
        core.on_camera(image_msg(scene.image(), stamp), camera_info(stamp), depth_msg(depth, stamp, encoding))
        out = core.process_next(timeout_s=0.0)
        (inst,) = out.result.instances
        x, y, z = inst.position_3d.centroid
        assert z == pytest.approx(2.0, abs=1e-3)
        # The mask's pixel centres span columns 20..43 and rows 24..39 around cx = cy = 32 (f = 50 px).
        assert x == pytest.approx((31.5 - 32) * 2.0 / 50, abs=0.02)
        assert y == pytest.approx((31.5 - 32) * 2.0 / 50, abs=0.02)
        det3d = roundtrip(out.detections_3d, OUTPUT_TYPES["detections_3d"])
        assert det3d.detections[0].id == str(inst.track_id)
        assert det3d.detections[0].bbox.center.position.z == pytest.approx(2.0, abs=1e-3)
        markers = roundtrip(out.markers, OUTPUT_TYPES["markers"]).markers
        assert markers[0].action == 3 and markers[1].pose.position.z == pytest.approx(2.0, abs=1e-3)


def test_stamps_going_backwards_reset_tracks_and_ids_keep_counting():
    core, scene = scripted_core([ScriptedObject("box", static(10, 10, 30, 30))])
    for i in range(3):
        out = feed(core, scene.image(), (10 + i) * 10**9)
    assert [i.track_id for i in out.result.instances] == [1]
    feed(core, scene.image(), 5 * 10**9)  # the camera restarted with an older clock
    out = feed(core, scene.image(), 6 * 10**9)
    assert core.counters.time_resets == 1
    assert [i.track_id for i in out.result.instances] == [2]


def test_label_info_is_published_only_when_labels_change():
    core, scene = scripted_core([ScriptedObject("box", static(10, 10, 30, 30))])
    outs = [feed(core, scene.image(), (10 + i) * 10**9) for i in range(3)]
    assert [o.label_info is not None for o in outs] == [True, False, False]
    info = roundtrip(outs[0].label_info, OUTPUT_TYPES["label_info"])
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(1, "box #1")]


def refine_request(track_id):
    return request("RefineTrack", track_id=track_id, use_box=True, box=messages._bbox2d((8, 8, 32, 32), T),
                   points=[T.new("vision_msgs/msg/Point2D", x=20.0, y=20.0)],
                   point_positive=T.sequence(np.array([True])))


def test_refine_service_confirms_a_live_track(tiny_core):
    tiny_core.configure()
    tiny_core.activate()
    rgb = (np.random.default_rng(2).random((48, 64, 3)) * 255).astype(np.uint8)
    feed(tiny_core, rgb, 10**9)
    track_id = tiny_core.pipeline.tracks.live_ids[0]
    assert response("RefineTrack", tiny_core.refine_track(refine_request(track_id))).success
    assert not response("RefineTrack", tiny_core.refine_track(refine_request(999))).success
    feed(tiny_core, rgb, 2 * 10**9)
    assert tiny_core.pipeline.tracks.tracks[track_id].state == TrackState.CONFIRMED


def test_refine_is_refused_clearly_by_a_backend_without_a_refiner():
    core, scene = scripted_core([ScriptedObject("box", static(10, 10, 30, 30))])
    feed(core, scene.image(), 10**9)
    msg = response("RefineTrack", core.refine_track(refine_request(1)))
    assert not msg.success and "cannot refine" in msg.message


def test_camera_silence_turns_diagnostics_to_warn_and_recovers():
    core, scene = scripted_core([ScriptedObject("box", static(10, 10, 30, 30))], camera_timeout_s=1.0)
    feed(core, scene.image(), 10**9)
    ok = roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0]
    assert ok.level == messages.DiagnosticLevel.OK
    values = {kv.key: kv.value for kv in ok.values}
    assert values["frames processed"] == "1" and "stage tracker ms" in values
    core.clock.ns += 3 * 10**9
    warn = roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0]
    assert warn.level == messages.DiagnosticLevel.WARN and "no image" in warn.message
    feed(core, scene.image(), 5 * 10**9)
    assert roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0].level == 0


def test_images_without_partners_are_counted_and_diagnostics_say_which_topic_is_missing():
    core, scene = scripted_core([ScriptedObject("box", static(10, 10, 30, 30))], camera_timeout_s=1.0,
                                camera_info_topic="camera_info", depth_topic="depth", queue_depth=3)
    image_cb, info_cb, depth_cb = core.camera_callbacks()
    for i in range(5):  # camera info and depth never come
        image_cb(image_msg(scene.image(), (i + 1) * 10**9))
    status = roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["images without camera_info/depth partner"] == "2"  # 5 received, 3 still queued
    assert values["frames received"] == "0"
    assert status.level == messages.DiagnosticLevel.WARN
    assert "none pairs with camera_info and depth" in status.message
    info_cb(camera_info(5 * 10**9))
    depth_cb(depth_msg(np.full((MASK, MASK), 2.0, dtype=np.float32), 5 * 10**9))
    assert core.process_next(timeout_s=0.0) is not None  # the newest image pairs once its partners arrive
    assert roundtrip(core.diagnostics(), "diagnostic_msgs/msg/DiagnosticArray").status[0].level == 0


def test_deactivate_ends_tracks_and_activate_resumes(tiny_core):
    tiny_core.configure()
    tiny_core.activate()
    rgb = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    for i in range(2):
        feed(tiny_core, rgb, (i + 1) * 10**9)
    tiny_core.deactivate()
    assert tiny_core.pipeline.tracks.tracks == {} and tiny_core.state == NodeState.INACTIVE
    tiny_core.activate()
    assert feed(tiny_core, rgb, 9 * 10**9) is not None
