"""Several cameras on one node, without rclpy (issue 16): the `cameras` parameters, the per-camera
sessions around one shared pipeline, the worker's scheduling, outputs, focus, find and diagnostics.

The network is the scripted stand-in network (test/standin_network.py): it finds every object of
its static scene on every camera's frame, so each camera keeps the same tracks from frame to frame.
The pipeline, the node core and the messages (rosbags classes, round-tripped to CDR) are the real ones.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.factory import LoadedPipeline
from sam3_ros.io import messages
from sam3_ros.model.tiny import byte_level_clip_tokenizer
from sam3_ros.ros.controller import NodeCore
from sam3_ros.ros.find import FindReason
from sam3_ros.ros.camera_session import CameraInput, CameraSession, LatestFrames
from sam3_ros.ros.params import (CAMERA_INPUTS, CAMERA_KEYS, CAMERA_OVERRIDES, NodeParams, all_parameters,
                                 camera_parameters, parameter_change_refusal, split_parameters)
from sam3_ros.ros.rviz_cameras import cameras_config

from standin_network import StandInComponents, StaticScene
from test_ros_controller import T, Clock, concept, image_msg, request, roundtrip

WIDTH, HEIGHT, OBJECTS = 320, 240, 3
CAMERAS = ["head", "wrist"]


def stand_in_core(cameras=CAMERAS, per_camera=None, **params) -> NodeCore:
    scene = StaticScene(WIDTH, HEIGHT, OBJECTS)
    components = StandInComponents(scene).components()
    factory = lambda config: LoadedPipeline(Sam3Pipeline(components, byte_level_clip_tokenizer(), config),  # noqa: E731
                                            "scripted stand-in network", True)
    node = NodeParams(prompts=["object"], warmup_frames=1, cameras=list(cameras), per_camera=per_camera or {},
                      **params)
    core = NodeCore(node, PipelineConfig().updated({"tracking.max_tracks": 4 * OBJECTS}), T, factory, now_ns=Clock())
    core.scene = scene
    core.configure()
    core.activate()
    return core


def send(core: NodeCore, camera: str, stamp_ns: int, depth: bool = False) -> None:
    """One frame on ``camera``'s subscription, in its own optical frame."""
    image = image_msg(np.full((HEIGHT, WIDTH, 3), 90, np.uint8), stamp_ns, frame_id=f"{camera}_optical")
    if not depth:
        core.sessions[camera].on_camera(image)
        return
    scene = core.scene
    depth_mm = scene.depth_mm()
    depth_image = T.new("sensor_msgs/msg/Image", header=messages.header(stamp_ns, f"{camera}_optical", T),
                        height=HEIGHT, width=WIDTH, encoding="16UC1", is_bigendian=0, step=WIDTH * 2,
                        data=depth_mm.view(np.uint8).reshape(-1))
    fx, fy, cx, cy = scene.camera_k()
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
    roi = T.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = T.new("sensor_msgs/msg/CameraInfo", header=messages.header(stamp_ns, f"{camera}_optical", T),
                 height=HEIGHT, width=WIDTH, distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.zeros(9),
                 p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
    core.sessions[camera].on_camera(image, info, depth_image)


def ids(outputs) -> set[int]:
    return {inst.track_id for inst in outputs.result.instances}


# -- parameters ---------------------------------------------------------------------------------------------

def test_no_cameras_is_the_single_camera_on_the_node_topics():
    (single,) = NodeParams(depth_topic="depth").camera_settings()
    assert (single.name, single.image_topic, single.camera_info_topic, single.depth_topic) == \
        ("", "image", "camera_info", "depth")
    assert single.output_prefix == "~/"


def test_each_camera_gets_relative_topics_outputs_and_its_overrides():
    node, _ = split_parameters({"cameras": ["head", "wrist"], "reliability": "reliable", "head.depth": True,
                                "wrist.compressed": True, "wrist.camera_info": False,
                                "wrist.reliability": "best_effort", "wrist.queue_depth": 2,
                                "head.target_frame": "base_link", "head.sync_slop_s": 0.02, "wrist.sync_slop_s": None})
    head, wrist = node.camera_settings()
    assert (head.image_topic, head.camera_info_topic, head.depth_topic, head.output_prefix) == \
        ("head/image", "head/camera_info", "head/depth", "~/head/")
    assert (wrist.image_topic, wrist.camera_info_topic, wrist.depth_topic, wrist.compressed) == \
        ("wrist/image/compressed", "", "", True)
    assert (head.reliability, wrist.reliability, wrist.queue_depth, head.queue_depth) == \
        ("reliable", "best_effort", 2, 5)  # unset: the node's value
    assert (head.target_frame, wrist.target_frame, head.sync_slop_s, wrist.sync_slop_s) == ("base_link", "", 0.02, 0.05)


@pytest.mark.parametrize("values, words", [
    ({"cameras": ["head", "head"]}, "['head'] appear more than once"),
    ({"cameras": ["head cam"]}, "letters, digits and _"),
    ({"cameras": ["2nd"]}, "letters, digits and _"),
    ({"cameras": ["tracking"]}, "reserved"),
    ({"cameras": ["focus"]}, "reserved"),
    ({"cameras": ["head"], "head.dept": True}, "head.dept: unknown per-camera key (did you mean head.depth?)"),
    ({"cameras": ["head"], "hed.depth": True}, "hed.depth: 'hed' is not one of cameras ['head']"),
    ({"cameras": ["head"], "head.depth": "yes"}, "'head.depth' expects bool"),
    ({"cameras": ["head"], "head.reliability": "fast"}, "head.reliability must be one of best_effort, reliable"),
    ({"cameras": ["head"], "head.queue_depth": 0}, "head.queue_depth must be >= 1"),
    ({"cameras": ["head"], "head.max_frame_age_s": -1.0}, "head.max_frame_age_s must be >= 0"),
    ({"head.depth": True}, "per-camera parameters ['head.depth'] but cameras is empty"),
])
def test_bad_camera_parameters_are_refused_with_the_reason(values, words):
    with pytest.raises(ValueError) as err:
        split_parameters(values)
    assert words in str(err.value)


def test_set_parameters_checks_per_camera_values_too():
    current = {name: default for name, (default, _) in all_parameters().items()}
    current.update({"cameras": ["head"], "head.depth": False, "head.reliability": None})
    assert parameter_change_refusal(current, {"head.depth": True, "head.reliability": "reliable"}) is None
    assert "head.reliability must be" in parameter_change_refusal(current, {"head.reliability": "sometimes"})
    assert "unknown parameters: ['wrist.depth']" in parameter_change_refusal(current, {"wrist.depth": True})
    assert parameter_change_refusal({**current, "head.depth": True}, {"cameras": []}) is None  # back to one camera
    assert parameter_change_refusal({**current, "head.depth": True}, {"cameras": ["wrist"]}) is None


# -- scheduling ------------------------------------------------------------------------------------------------

def test_one_step_takes_the_newest_frame_of_every_camera_that_has_one():
    core = stand_in_core()
    for stamp in (1_000, 2_000, 3_000):
        send(core, "head", stamp)
    send(core, "wrist", 5_000)
    step = core.process_step(timeout_s=0.0)
    assert list(step) == CAMERAS
    assert (step["head"].result.stamp_ns, step["wrist"].result.stamp_ns) == (3_000, 5_000)
    head, wrist = core.sessions["head"].counters, core.sessions["wrist"].counters
    assert (head.received, head.dropped, head.processed) == (3, 2, 1)
    assert (wrist.received, wrist.dropped, wrist.processed) == (1, 0, 1)


def test_a_frame_from_any_camera_wakes_the_waiting_worker():
    mailbox = LatestFrames()
    taken = []
    worker = threading.Thread(target=lambda: taken.append((mailbox.take_all(timeout_s=30.0), time.monotonic())))
    worker.start()
    time.sleep(0.2)
    sent = time.monotonic()
    mailbox.put("wrist", CameraInput(image="frame"))
    worker.join(5.0)
    (items, woke), = taken
    assert list(items) == ["wrist"] and woke - sent < 2.0


def test_a_silent_camera_is_never_waited_for_and_stays_untouched():
    core = stand_in_core()
    send(core, "head", 1_000)
    send(core, "wrist", 1_000)
    first = core.process_step(timeout_s=0.0)
    for i in range(1, 4):  # wrist stops sending
        send(core, "head", 1_000 + i)
        step = core.process_step(timeout_s=0.0)
        assert list(step) == ["head"]
    assert core.pipeline.tracks_of("wrist").live_ids == sorted(ids(first["wrist"]))
    assert core.sessions["wrist"].counters.processed == 1 and core.sessions["head"].counters.processed == 4
    assert core.process_step(timeout_s=0.0) == {}  # nothing pending: no step


def test_a_fast_camera_cannot_starve_a_slow_one():
    """head sends three frames per step, wrist one every third step: every wrist frame is processed, in
    the step that follows it; head's surplus is dropped, never wrist's."""
    core = stand_in_core()
    wrist_frames = 0
    for step_index in range(9):
        for k in range(3):
            send(core, "head", 10_000 * step_index + k)
        if step_index % 3 == 0:
            wrist_frames += 1
            send(core, "wrist", 10_000 * step_index)
        step = core.process_step(timeout_s=0.0)
        assert ("wrist" in step) == (step_index % 3 == 0)
        assert step["head"].result.stamp_ns == 10_000 * step_index + 2
    wrist = core.sessions["wrist"].counters
    assert (wrist.received, wrist.processed, wrist.dropped) == (wrist_frames, wrist_frames, 0)
    assert core.sessions["head"].counters.dropped == 9 * 2


def test_a_bad_image_on_one_camera_leaves_the_other_cameras_step():
    core = stand_in_core()
    bad = T.new("sensor_msgs/msg/Image", header=messages.header(1_000, "head_optical", T), height=2, width=2,
                encoding="weird", is_bigendian=0, step=2, data=np.zeros(4, np.uint8))
    core.sessions["head"].on_camera(bad)
    send(core, "wrist", 1_000)
    step = core.process_step(timeout_s=0.0)
    assert list(step) == ["wrist"]
    assert core.sessions["head"].counters.bad_images == 1 and core.sessions["wrist"].counters.bad_images == 0


def test_a_camera_restart_resets_only_that_cameras_tracks():
    core = stand_in_core()
    send(core, "head", 5_000)
    send(core, "wrist", 5_000)
    before = core.process_step(timeout_s=0.0)
    send(core, "head", 1_000)  # head's stamps went back: its tracks end, wrist's go on
    send(core, "wrist", 6_000)
    after = core.process_step(timeout_s=0.0)
    assert core.sessions["head"].counters.time_resets == 1 and core.sessions["wrist"].counters.time_resets == 0
    assert ids(after["wrist"]) == ids(before["wrist"])
    assert not ids(after["head"]) & ids(before["head"])  # new IDs, never reused


# -- outputs ----------------------------------------------------------------------------------------------------

def test_each_cameras_outputs_carry_its_stamp_frame_and_name_and_ids_are_unique_across_cameras():
    core = stand_in_core(per_camera={"head.depth": True})
    for i in range(3):
        send(core, "head", 1_000 + i, depth=True)
        send(core, "wrist", 2_000 + i)
        step = core.process_step(timeout_s=0.0)
    head, wrist = step["head"], step["wrist"]
    for name, outputs, stamp in (("head", head, 1_002), ("wrist", wrist, 2_002)):
        instances = roundtrip(outputs.instances, "sam3_ros_interfaces/msg/InstanceArray")
        assert instances.header.frame_id == f"{name}_optical"
        assert instances.header.stamp.nanosec == stamp
        assert {i.camera for i in instances.instances} == {name} and len(instances.instances) == OBJECTS
        assert outputs.detections.header.frame_id == f"{name}_optical"
        assert outputs.overlay.header.frame_id == f"{name}_optical"
    assert not ids(head) & ids(wrist)
    assert head.detections_3d is not None and head.markers is not None  # head has depth, wrist none
    assert wrist.detections_3d is None and wrist.markers is None
    assert all(i.position_3d is not None for i in head.result.instances)


def test_label_info_is_latched_per_camera():
    core = stand_in_core()
    send(core, "head", 1_000)
    send(core, "wrist", 1_000)
    first = core.process_step(timeout_s=0.0)
    assert first["head"].label_info is not None and first["wrist"].label_info is not None
    send(core, "head", 1_001)
    assert core.process_step(timeout_s=0.0)["head"].label_info is None  # unchanged on head
    names = {c.class_name for c in first["wrist"].label_info.class_map}
    assert names == {f"object #{i}" for i in ids(first["wrist"])}


def test_outputs_nobody_subscribes_to_are_not_built_per_camera():
    core = stand_in_core()
    core.sessions["wrist"].subscribed = lambda output: output != "overlay"
    send(core, "head", 1_000)
    send(core, "wrist", 1_000)
    step = core.process_step(timeout_s=0.0)
    assert step["head"].overlay is not None and step["wrist"].overlay is None


# -- concepts, focus, find --------------------------------------------------------------------------------------

def test_concepts_apply_to_every_camera_and_exemplars_name_a_known_camera():
    core = stand_in_core()
    send(core, "head", 1_000)
    send(core, "wrist", 1_000)
    core.process_step(timeout_s=0.0)
    answer = core.add_concept(request("AddConcept", concept=concept("", "crate", [(10, 10, 60, 60)], camera="wrist"),
                                      replace=False))
    assert answer["success"], answer["message"]
    assert [c.camera for c in core.active_concepts()] == ["", "wrist"]
    refused = core.add_concept(request("AddConcept", concept=concept("", "box", [(1, 1, 9, 9)], camera="tail"),
                                       replace=False))
    assert not refused["success"]
    assert "camera 'tail'" in refused["message"] and "['head', 'wrist']" in refused["message"]
    outside = core.add_concept(request("AddConcept", concept=concept("", "far", [(400, 10, 500, 60)], camera="head"),
                                       replace=False))
    assert not outside["success"]  # boxes are checked against head's 320 x 240 image
    # boxes with no camera are the first camera's, whichever camera a step happens to list first
    first = core.add_concept(request("AddConcept", concept=concept("", "bin", [(10, 10, 60, 60)]), replace=False))
    assert first["success"], first["message"]
    assert [c.camera for c in core.active_concepts()] == ["", "wrist", "head"]
    send(core, "head", 1_001)
    send(core, "wrist", 1_001)
    step = core.process_step(timeout_s=0.0)
    for name in CAMERAS:
        assert {i.concept_id for i in step[name].result.instances} == {"object", "crate", "bin"}


def test_focus_follows_the_track_on_its_camera_only():
    core = stand_in_core()
    send(core, "head", 1_000)
    send(core, "wrist", 1_000)
    first = core.process_step(timeout_s=0.0)
    track = min(ids(first["wrist"]))
    wrong = core.set_focus(request("Focus", track_id=track, camera="head"))
    assert not wrong["success"] and "is on camera 'wrist'" in wrong["message"]
    assert core.set_focus(request("Focus", track_id=track, camera=""))["success"]
    send(core, "head", 1_001)
    send(core, "wrist", 1_001)
    step = core.process_step(timeout_s=0.0)
    assert step["head"].focus_status is None
    status = step["wrist"].focus_status
    assert status.track_id == track and status.header.frame_id == "wrist_optical" and status.status == 1  # VISIBLE


class Goal:
    """The Find action's goal fields (actions are not in the rosbags typestore)."""

    def __init__(self, text, camera=""):
        self.concept = concept(text)
        self.min_score, self.timeout_s, self.stable_frames, self.keep_concept = 0.0, 5.0, 2, False
        self.camera = camera


def test_find_watches_the_named_camera_and_needs_its_depth():
    core = stand_in_core(per_camera={"head.depth": True})
    assert core.start_find(Goal("object", camera="wrist")).outcome.reason == FindReason.NO_DEPTH
    assert core.start_find(Goal("object", camera="tail")).outcome.reason == FindReason.INVALID
    session = core.start_find(Goal("object", camera="head"))
    assert session.outcome is None
    for i in range(2):
        send(core, "head", 1_000 + i, depth=True)
        send(core, "wrist", 1_000 + i)
        core.process_step(timeout_s=0.0)
    assert session.outcome is not None and session.outcome.reason == FindReason.FOUND
    assert {i.camera for i in session.outcome.instances} == {"head"}
    core.finish_find(session)


# -- diagnostics -------------------------------------------------------------------------------------------------

def test_diagnostics_have_the_model_status_and_one_status_per_camera():
    core = stand_in_core()
    core.sessions["head"].topic_names["image"] = "/robot/head/image"
    for i in range(3):
        send(core, "head", 1_000 + i)
        core.process_step(timeout_s=0.0)
    core.sessions["head"].counters.last_image_ns = core._now_ns()
    array = roundtrip(core.diagnostics("/sam3"), "diagnostic_msgs/msg/DiagnosticArray")
    statuses = {s.name: s for s in array.status}
    assert list(statuses) == ["sam3_ros: perception", "sam3_ros: camera head", "sam3_ros: camera wrist"]
    head, wrist = statuses["sam3_ros: camera head"], statuses["sam3_ros: camera wrist"]
    values = {kv.key: kv.value for kv in head.values}
    assert values["frames processed"] == "3" and values["image topic"] == "/robot/head/image"
    assert values["live tracks"] == str(OBJECTS)
    assert head.level == messages.DiagnosticLevel.OK
    assert wrist.level == messages.DiagnosticLevel.WARN and "no image on wrist/image" in wrist.message
    model = {kv.key: kv.value for kv in statuses["sam3_ros: perception"].values}
    assert model["state"] == "active" and model["live tracks"] == str(OBJECTS) and "fps" not in model


# -- what the README and the shipped files say ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_per_camera_key_table_is_what_the_node_takes():
    text = (REPO / "README.md").read_text()
    table = text.split("<!-- camera-keys: start -->")[1].split("<!-- camera-keys: end -->")[0]
    rows = [line.split("|")[1:3] for line in table.strip().splitlines()[2:]]
    documented = {key.strip().strip("`").removeprefix("NAME."): default.strip().strip("`") for key, default in rows}
    assert list(documented) == list(CAMERA_KEYS)
    assert {k: documented[k] for k in CAMERA_INPUTS} == {k: str(d).lower() for k, (d, _) in CAMERA_INPUTS.items()}
    assert all(documented[k] == "the node's" for k in CAMERA_OVERRIDES)
    assert all(default is None for default, _ in list(camera_parameters("head").values())[len(CAMERA_INPUTS):])


def test_the_example_params_file_is_valid_and_remaps_the_nodes_inputs():
    (section,) = yaml.safe_load((REPO / "config" / "cameras_example.yaml").read_text()).values()
    values = dict(section["ros__parameters"])
    remappings = values.pop("remappings")
    node, _ = split_parameters(values)
    inputs = {topic for camera in node.camera_settings() for _, topic in
              CameraSession(camera, node, T, None, Clock()).inputs()}
    assert {r.split(":=")[0] for r in remappings} == inputs == \
        {f"{name}/{role}" for name in ("head", "wrist") for role in ("image", "camera_info", "depth")}


def test_the_shipped_cameras_rviz_config_is_the_generated_one():
    config = cameras_config((REPO / "config" / "sam3.rviz").read_text(), ["head", "wrist"])
    assert (REPO / "config" / "sam3_cameras.rviz").read_text() == config
    topics = [d["Topic"]["Value"] for d in yaml.safe_load(config)["Visualization Manager"]["Displays"] if "Topic" in d]
    for output in ("overlay", "instance_id_image", "markers", "instance_points"):
        assert [t for t in topics if t.endswith(f"/{output}")] == [f"/sam3/head/{output}", f"/sam3/wrist/{output}"]
    assert "/sam3/focus/pose" in topics
