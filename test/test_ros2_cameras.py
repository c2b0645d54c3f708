"""Several cameras, one node (issue 16), in the real ROS 2 runtime: the sam3_node executable as a
process, two synthetic cameras publishing over DDS at different rates (10 Hz and 3 Hz).

Checked: each camera's outputs on its own topics (/sam3_cams/NAME/...) with its stamps and frame
id, Instance.camera, track IDs unique across cameras, the slow camera served at its pace, a camera
that stops holding nobody back and being served again when it restarts, concepts applied to both,
one diagnostics status per camera, per-camera parameters from a params file, bad per-camera
parameters refused at configure, a lifecycle cycle and SIGINT with two cameras.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from ros_runtime import SKIP_REASON, NodeProcess, RosClient, SyntheticCamera, stamp_ns, wait_until

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402  (after the skip: needs the runtime)
from rcl_interfaces.srv import ListParameters  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sam3_ros_interfaces import srv  # noqa: E402
from sam3_ros_interfaces.msg import Concept, InstanceArray  # noqa: E402
from vision_msgs.msg import Detection3DArray, LabelInfo  # noqa: E402

from test_ros2_node import CRASH_SIGNS, TINY, assert_publishing, assert_silent, bring_up  # noqa: E402
from test_ros2_readme_claims import code, readme_section, table_rows  # noqa: E402

NAME = "sam3_cams"
NODE = f"/{NAME}"
HEAD, WRIST = "mc_head", "mc_wrist"
RATES = {HEAD: 10.0, WRIST: 3.0}
WINDOW_S = 6.0
ROS_TOPICS = {"/rosout", "/parameter_events", f"{NODE}/transition_event"}  # every lifecycle node's


@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_cams_client")
    yield client
    client.close()


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    """Per-camera keys from a params file, declared by the node once it has read `cameras`."""
    path = tmp_path_factory.mktemp("params") / "cameras.yaml"
    path.write_text(yaml.safe_dump({NAME: {"ros__parameters": {
        f"{HEAD}.depth": True, f"{WRIST}.reliability": "reliable", f"{WRIST}.camera_timeout_s": 1.0}}}))
    return path


@pytest.fixture(scope="module")
def node(client, params_file):
    params = {**TINY, "cameras": [HEAD, WRIST], "prompts": ["red cup"]}
    with NodeProcess(NAME, params, ros_args=["--params-file", str(params_file)]) as process:
        bring_up(client, NODE)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        cameras = {HEAD: SyntheticCamera(client, f"/{HEAD}", fps=RATES[HEAD], frame_id=f"{HEAD}_optical"),
                   WRIST: SyntheticCamera(client, f"/{WRIST}", fps=RATES[WRIST], frame_id=f"{WRIST}_optical",
                                          qos=reliable)}
        for camera in cameras.values():
            camera.start()
        yield process, cameras
        for camera in cameras.values():
            camera.stop()
        assert process.alive or process.process.returncode == 0, process.output()[-3000:]  # the last test stops it


def instances_of(client, camera: str):
    return client.subscribe(InstanceArray, f"{NODE}/{camera}/instances")


def camera_status(diagnostics, camera: str, predicate=lambda status: True, timeout_s: float = 30.0):
    """The next diagnostics status named for ``camera`` that satisfies ``predicate``."""
    name = f"sam3_ros: camera {camera}"

    def ours(message):
        return any(s.name == name and s.hardware_id.endswith(NAME) and predicate(s) for s in message.status)
    message = diagnostics.wait_for(ours, timeout_s)
    return next(s for s in message.status if s.name == name and s.hardware_id.endswith(NAME) and predicate(s))


def level(status) -> int:
    return int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)


def test_each_camera_is_served_at_its_pace_on_its_topics_with_its_stamps_frames_and_unique_ids(client, node):
    _, cameras = node
    inboxes = {name: instances_of(client, name) for name in cameras}
    depth = client.subscribe(Detection3DArray, f"{NODE}/{HEAD}/detections_3d")
    for inbox in inboxes.values():
        assert_publishing(inbox)
        inbox.clear()
    published = {name: len(camera.stamps) for name, camera in cameras.items()}
    time.sleep(WINDOW_S)
    sent = {name: set(camera.stamps[published[name]:]) for name, camera in cameras.items()}
    got = {name: list(inbox.messages) for name, inbox in inboxes.items()}
    owners: dict[int, set[str]] = {}
    for name, messages in got.items():
        assert messages, name
        for message in messages:
            assert message.header.frame_id == f"{name}_optical"
            assert stamp_ns(message) in set(cameras[name].stamps)  # an input stamp of this camera
            for instance in message.instances:
                assert instance.camera == name
                owners.setdefault(instance.track_id, set()).add(name)
    assert all(len(names) == 1 for names in owners.values()), owners  # no ID on two cameras
    # The node steps as fast as the model allows (head's rate at most): the 3 Hz camera is in every
    # step it has a frame for, so it is served at min(its rate, the step rate), never starved.
    steps = len(got[HEAD])
    assert len(got[WRIST]) >= 0.7 * min(len(sent[WRIST]), steps), (len(got[WRIST]), len(sent[WRIST]), steps)
    assert depth.wait_for(timeout_s=10.0).header.frame_id == f"{HEAD}_optical"  # head has depth, wrist none


def test_the_readme_topic_table_of_several_cameras_is_what_the_node_publishes(client, node):
    rows = table_rows(readme_section("Several cameras: one node, one model"), "topic")
    documented = {name.replace("~", NODE, 1).replace("NAME", camera)
                  for row in rows for name in code(row[0]) for camera in (HEAD, WRIST)}
    def ours() -> set[str]:
        published = client.node.get_publisher_names_and_types_by_node(NAME, "/")
        return {topic for topic, _ in published if topic not in ROS_TOPICS and "/_action/" not in topic}
    assert wait_until(lambda: ours() == documented, 20.0), ours() ^ documented


def test_each_cameras_label_info_reaches_a_late_subscriber(client, node):
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    for camera in (HEAD, WRIST):
        message = client.subscribe(LabelInfo, f"{NODE}/{camera}/label_info", latched).wait_for(timeout_s=15.0)
        assert message.header.frame_id == f"{camera}_optical"


def test_per_camera_parameters_from_the_params_file_apply(client, node):
    values = client.get_parameters(NODE, [f"{HEAD}.depth", f"{WRIST}.depth", f"{WRIST}.reliability"])
    assert values == {f"{HEAD}.depth": True, f"{WRIST}.depth": False, f"{WRIST}.reliability": "reliable"}
    (wrist_sub,) = [i for i in client.node.get_subscriptions_info_by_topic(f"/{WRIST}/image")
                    if i.node_name == NAME]
    (head_sub,) = [i for i in client.node.get_subscriptions_info_by_topic(f"/{HEAD}/image") if i.node_name == NAME]
    assert wrist_sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert head_sub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert client.node.count_subscribers(f"/{HEAD}/depth") == 1 and client.node.count_subscribers(f"/{WRIST}/depth") == 0


def test_a_camera_that_stops_holds_nobody_back_and_is_served_again_when_it_restarts(client, node):
    _, cameras = node
    diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
    head, wrist = instances_of(client, HEAD), instances_of(client, WRIST)
    cameras[WRIST].stop()
    try:
        silent = camera_status(diagnostics, WRIST, lambda s: level(s) == 1)
        assert f"no image on /{WRIST}/image for over 1 s" in silent.message
        head.clear()
        assert wait_until(lambda: head.count() >= 3, 30.0)  # head goes on alone
        assert level(camera_status(diagnostics, HEAD)) == 0
    finally:
        cameras[WRIST].start()
    assert_publishing(wrist)
    assert level(camera_status(diagnostics, WRIST, lambda s: level(s) == 0)) == 0


def test_diagnostics_hold_the_model_and_one_status_per_camera(client, node):
    diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
    message = diagnostics.wait_for(lambda m: any(s.hardware_id.endswith(NAME) for s in m.status))
    names = [s.name for s in message.status if s.hardware_id.endswith(NAME)]
    assert names == ["sam3_ros: perception", f"sam3_ros: camera {HEAD}", f"sam3_ros: camera {WRIST}"]
    for camera in (HEAD, WRIST):
        values = {kv.key: kv.value for kv in camera_status(diagnostics, camera).values}
        assert int(values["frames processed"]) > 0 and float(values["fps"]) > 0
        assert values["image topic"] == f"/{camera}/image"
        assert {"frames dropped (newer frame arrived)", "bad images", "latency_ms (receive to result)",
                "images without camera_info/depth partner"} <= set(values)


def test_concepts_apply_to_both_cameras(client, node):
    request = srv.AddConcept.Request(concept=Concept(id="both", text="blue box"))
    answer = client.call(srv.AddConcept, f"{NODE}/add_concept", request)
    assert answer.success, answer.message
    try:
        for camera in (HEAD, WRIST):
            inbox = instances_of(client, camera)
            inbox.wait_for(lambda m: any(i.concept_id == "both" for i in m.instances), 60.0)
    finally:
        client.call(srv.RemoveConcept, f"{NODE}/remove_concept", srv.RemoveConcept.Request(id="both"))
    bad = srv.AddConcept.Request(concept=Concept(id="nowhere", text="cup", camera="tail"))
    refused = client.call(srv.AddConcept, f"{NODE}/add_concept", bad)
    assert not refused.success and "camera 'tail'" in refused.message


def test_bad_per_camera_parameters_fail_configure_with_the_reason_before_the_model_loads(client):
    name = "sam3_cams_bad"
    params = {**TINY, "cameras": ["mc_bad"], "mc_bad.dept": True, "mc_bad.queue_depth": 0}
    with NodeProcess(name, params) as process:
        refused = client.set_parameters(f"/{name}", {"mc_bad.reliability": "fast"})[0]
        assert not refused.successful and "mc_bad.reliability must be one of" in refused.reason
        assert not client.transition(f"/{name}", "configure")
        assert client.state(f"/{name}") == "unconfigured"
        assert wait_until(lambda: "mc_bad.queue_depth must be >= 1" in process.output())
        log = process.output()
        assert "mc_bad.dept: unknown per-camera key (did you mean mc_bad.depth?)" in log
        assert "loading SAM 3" not in log
        assert process.alive


def test_cameras_set_at_run_time_get_their_parameters_and_apply_at_configure(client):
    name = "sam3_cams_late"
    with NodeProcess(name, TINY) as process:
        assert client.set_parameters(f"/{name}", {"cameras": ["mc_late"]})[0].successful
        def declared() -> bool:
            listed = client.call(ListParameters, f"/{name}/list_parameters", ListParameters.Request()).result.names
            return "mc_late.depth" in listed
        assert wait_until(declared)
        assert client.set_parameters(f"/{name}", {"mc_late.depth": True})[0].successful
        bring_up(client, f"/{name}")
        for topic in ("/mc_late/image", "/mc_late/camera_info", "/mc_late/depth"):
            assert wait_until(lambda: client.node.count_subscribers(topic) == 1, 10.0), topic
        assert client.node.count_subscribers("/image") == 0  # no single camera beside it
        assert client.set_parameters(f"/{name}", {"cameras": []})[0].successful  # back to one camera at configure
        assert process.alive


def test_a_lifecycle_cycle_and_sigint_to_the_process_group_with_two_cameras(client, node):
    """Last: it ends the module's node."""
    process, _ = node
    inboxes = [instances_of(client, camera) for camera in (HEAD, WRIST)]
    for step in ("deactivate", "cleanup", "configure", "activate"):
        assert client.transition(NODE, step), f"{step} failed:\n{process.output()[-3000:]}"
        subscribed = 1 if step == "activate" else 0
        for topic in (f"/{HEAD}/image", f"/{HEAD}/depth", f"/{WRIST}/image", f"/{WRIST}/camera_info"):
            assert wait_until(lambda: client.node.count_subscribers(topic) == subscribed, 10.0), (step, topic)
        for inbox in inboxes:
            assert_publishing(inbox) if step == "activate" else assert_silent(inbox)
    os.killpg(process.process.pid, signal.SIGINT)  # the node's whole process group, as Ctrl-C in a terminal
    assert process.process.wait(30) == 0, process.output()[-3000:]
    assert not any(sign in process.output() for sign in CRASH_SIGNS), process.output()[-3000:]
