"""NodeCore under generated hostile input, in-process (no rclpy): every frame is either published
(and serialises) or counted as dropped, and a valid frame afterwards is processed.

The same seeded cases drive the running node over DDS in test_ros2_reliability.py; the crashes they
found are kept in fuzz_cases.REGRESSIONS and each has a test here.
"""
import logging

import numpy as np
import pytest

import fuzz_cases as fz
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.factory import LoadedPipeline
from sam3_ros.io.ros_types import RosbagsTypes, typestore
from sam3_ros.ros.controller import MAX_CONCEPTS, NodeCore
from sam3_ros.ros.params import NodeParams

T = RosbagsTypes()
STORE = typestore()
PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 4}
OUTPUT_FIELDS = ("instances", "detections", "detections_3d", "id_image", "label_info", "overlay", "markers")


def make_core(tiny, components, **params) -> NodeCore:
    factory = lambda config: LoadedPipeline(Sam3Pipeline(components, tiny.tokenizer, config), tiny.describe(),  # noqa: E731
                                            True, tiny)
    core = NodeCore(NodeParams(prompts=["red cup", "square"], warmup_frames=1, **params),
                    PipelineConfig().updated(PERMISSIVE), T, factory)
    core.configure()
    core.activate()
    return core


@pytest.fixture
def core(tiny, tiny_components):
    return make_core(tiny, tiny_components)


def lost(core) -> int:
    c = core.counters
    return c.received - (c.processed + c.dropped + c.stale + c.bad_images + c.failed_frames)


def serialised(message):
    return STORE.deserialize_cdr(STORE.serialize_cdr(message, message.__msgtype__), message.__msgtype__)


def feed(core, case):
    core.on_camera(*fz.build_camera(T, case))
    return core.process_next(timeout_s=0.0)


def call(core, case) -> dict:
    fields = getattr(core, case.kind)(fz.build_request(T, case))
    response = T.new(f"sam3_ros_interfaces/srv/{fz.SERVICE_TYPES[case.kind]}_Response", **fields)
    serialised(response)
    return fields


def send(core, case):
    return feed(core, case) if case.kind == "camera" else call(core, case)


def assert_valid_frame_published(core, index: int):
    case = fz.camera_case("valid", (1_900_000_000 + index, 0), image=fz.valid_image_fields(index))
    outputs = feed(core, case)
    assert outputs is not None
    message = serialised(outputs.instances)
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == case.fields["stamp"]


def test_generated_cases_never_escape_and_every_frame_is_accounted_for(core):
    """Seeded cases of every category, a batch at a time, each followed by a valid frame."""
    cases = fz.cases(seed=7, count=132)
    for start in range(0, len(cases), 22):
        for case in cases[start:start + 22]:
            answer = send(core, case)
            if case.kind == "camera" and answer is not None:
                for name in OUTPUT_FIELDS:
                    if getattr(answer, name) is not None:
                        serialised(getattr(answer, name))
            assert lost(core) == 0, case.describe()
        assert_valid_frame_published(core, start)
    counted = core.counters
    assert counted.bad_images > 0 and counted.processed > 0


def test_nan_camera_info_with_depth_gives_2d_output_without_3d(core, caplog):
    outputs = feed(core, fz.REGRESSIONS["nan_camera_info_k"])
    assert outputs is not None and core.counters.failed_frames == 0
    assert not any(i.has_position for i in serialised(outputs.instances).instances)
    assert "not finite" in caplog.text


def test_a_stamp_whose_nanoseconds_overflow_is_published_as_it_came(core):
    case = fz.REGRESSIONS["stamp_beyond_int32"]
    outputs = feed(core, case)
    assert outputs is not None and core.counters.failed_frames == 0
    for name in ("instances", "detections", "detections_3d", "id_image", "overlay"):
        stamp = serialised(getattr(outputs, name)).header.stamp
        assert (stamp.sec, stamp.nanosec) == case.fields["stamp"], name


def test_thousands_of_concepts_are_refused_with_the_reason(core):
    before = [c.id for c in core.active_concepts()]
    answer = call(core, fz.REGRESSIONS["thousands_of_concepts"])
    assert not answer["success"] and f"at most {MAX_CONCEPTS}" in answer["message"]
    assert [c.id for c in core.active_concepts()] == before


def test_any_exception_in_a_frame_is_counted_and_logged(tiny, tiny_components, caplog):
    """A TF lookup that raises something other than LookupError used to escape process_next."""
    def broken_lookup(target, source, stamp_ns):
        raise TypeError("tf2 buffer returned garbage")
    core = make_core(tiny, tiny_components, target_frame="base_link")
    core._lookup_transform = broken_lookup
    with caplog.at_level(logging.ERROR):
        assert feed(core, fz.camera_case("valid", (1_800_000_000, 0), image=fz.valid_image_fields(0))) is None
    assert core.counters.failed_frames == 1 and lost(core) == 0
    assert "TypeError: tf2 buffer returned garbage" in caplog.text
    core._lookup_transform = None
    assert_valid_frame_published(core, 1)


def test_generated_cases_are_reproducible():
    first, again = fz.cases(seed=3, count=40), fz.cases(seed=3, count=40)
    assert [c.describe() for c in first] == [c.describe() for c in again]
    assert {c.category for c in first} == set(fz.CAMERA_CATEGORIES + fz.SERVICE_CATEGORIES)
    assert np.array_equal(np.frombuffer(first[0].fields["image"]["data"], np.uint8),
                          np.frombuffer(again[0].fields["image"]["data"], np.uint8))


def test_a_frame_arriving_after_a_later_stamped_one_is_still_paired():
    """Found over DDS (fuzz seed 11, batch 125): a far-future stamp matched after an older-stamped
    frame had arrived dropped that frame by stamp order, silently and uncounted."""
    from sam3_ros.ros.stamp_sync import StampSynchronizer

    matched = []
    sync = StampSynchronizer(3, slop_ns=0, queue_size=10, on_match=lambda *m: matched.append(m))
    future, now = 2**31 * 10**9, 2 * 10**18
    sync.add(0, future, "image@future")
    sync.add(1, future, "info@future")
    sync.add(0, now, "image@now")
    sync.add(1, now, "info@now")
    sync.add(2, future, "depth@future")  # the depth of the earlier frame arrives late
    sync.add(2, now, "depth@now")
    assert matched == [("image@future", "info@future", "depth@future"), ("image@now", "info@now", "depth@now")]


@pytest.mark.parametrize("height, width", [(1, 1), (1, 64), (48, 1)])
def test_a_one_pixel_wide_image_is_a_bad_image_not_a_failed_frame(core, height, width):
    """Issue 15: a 1x1 image passed decoding and failed in the pipeline, counted as a failed frame."""
    image = fz.image_fields(height, width, "rgb8", width * 3, bytes(height * width * 3))
    assert feed(core, fz.camera_case("tiny", (1_900_000_000, 0), image=image)) is None
    assert (core.counters.bad_images, core.counters.failed_frames) == (1, 0)
    assert lost(core) == 0
