"""Manipulation features in the real ROS 2 runtime: the ~/find action, ~/instance_points, ~/focus.

The sam3_node executable runs as a process (tiny random-init model on the CPU) and a synthetic
camera publishes one still picture with camera info and a depth plane at 2 m, so the random
model's tracks stay put. The CI tests drive the action and service through rclpy; the
full-runtime tests at the end run the README's exact `ros2 action send_goal` and
`ros2 service call` lines, and skip where the ros2 CLI is missing.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import numpy as np
import pytest

from ros_runtime import REPO, SKIP_REASON, Inbox, NodeProcess, RosClient, SyntheticCamera, node_environment, wait_until

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from action_msgs.msg import GoalStatus  # noqa: E402  (after the skip: needs the runtime)
from sam3_ros_interfaces import srv  # noqa: E402
from sam3_ros_interfaces.action import Find  # noqa: E402
from sam3_ros_interfaces.msg import Concept, FocusStatus, InstanceArray  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402

from sam3_ros.core.point_cloud import CLOUD_DTYPE  # noqa: E402

NODE = "sam3_manip"
CAMERA = "/manip_cam"
DEPTH_M = 2.0
TINY = {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1,
        "detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02}
UNREACHABLE_SCORE = 0.999  # a random-init model never scores this high
POINTS_MAX = 50


class StillCamera(SyntheticCamera):
    """The synthetic camera's first picture on every frame (stamps still advance)."""

    def frame(self, index: int) -> np.ndarray:
        return super().frame(0)


def node_params(namespace: str = CAMERA) -> dict:
    return {**TINY, "image_topic": f"{namespace}/image", "camera_info_topic": f"{namespace}/camera_info",
            "depth_topic": f"{namespace}/depth", "prompts": ["thing"], "publish_instance_points": True,
            "instance_points_max": POINTS_MAX}


@pytest.fixture(scope="module")
def client():
    ros = RosClient("sam3_manip_client")
    yield ros
    ros.close()


@pytest.fixture(scope="module")
def node(client):
    process = NodeProcess(NODE, node_params())
    camera = StillCamera(client, CAMERA, depth_m=DEPTH_M).start()
    assert client.transition(NODE, "configure"), process.output()
    assert client.transition(NODE, "activate"), process.output()
    process.camera = camera
    yield process
    camera.stop()
    process.stop()
    assert "Traceback" not in process.output(), process.output()


@pytest.fixture(scope="module")
def instances(client, node):
    return client.subscribe(InstanceArray, f"/{NODE}/instances")


def concept_ids(client) -> list[tuple[str, str]]:
    return [(c.id, c.text) for c in client.call(srv.ListConcepts, f"/{NODE}/list_concepts").active_concepts]


def find_goal(text: str, min_score: float, timeout_s: float, stable_frames: int = 2) -> Find.Goal:
    return Find.Goal(concept=Concept(text=text), min_score=min_score, timeout_s=timeout_s, stable_frames=stable_frames)


def thing_tracks(instances) -> set[int]:
    message = instances.wait_for(lambda m: any(i.concept_id == "thing" for i in m.instances))
    return {i.track_id for i in message.instances if i.concept_id == "thing"}


# -- CI: rclpy ------------------------------------------------------------------------------------------


def test_find_succeeds_with_the_3d_position_and_leaves_other_concepts_alone(client, node, instances):
    before_concepts, before_tracks = concept_ids(client), thing_tracks(instances)
    feedback = Inbox()
    handle = client.send_goal(Find, f"/{NODE}/find", find_goal("red square", 0.02, 60.0), feedback)
    status, result = client.goal_result(handle, timeout_s=90.0)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert (result.success, result.reason) == (True, Find.Result.REASON_FOUND)
    assert result.instances and feedback.count() >= 1 and feedback.messages[0].frames_seen >= 1
    for found in result.instances:
        inst = found.instance
        assert inst.concept_id.startswith("find") and inst.label == "red square" and inst.score >= 0.02
        centroid = np.array([inst.centroid.x, inst.centroid.y, inst.centroid.z])
        assert centroid == pytest.approx(node.camera.mask_centroid(inst), abs=1e-3)
        assert found.num_points > 0 and found.oriented_box.center.position.z == pytest.approx(DEPTH_M, abs=1e-3)
    instances.clear()
    assert concept_ids(client) == before_concepts  # the temporary concept is gone
    assert before_tracks <= thing_tracks(instances)  # and the tracked concept's tracks live on


def test_find_without_a_match_times_out_with_the_reason(client, node):
    before = concept_ids(client)
    handle = client.send_goal(Find, f"/{NODE}/find", find_goal("red square", UNREACHABLE_SCORE, 2.0))
    status, result = client.goal_result(handle, timeout_s=60.0)
    assert status == GoalStatus.STATUS_ABORTED
    assert (result.success, result.reason, result.instances) == (False, Find.Result.REASON_TIMEOUT, [])
    assert "timeout" in result.message
    assert concept_ids(client) == before


def test_find_can_be_cancelled(client, node):
    before = concept_ids(client)
    feedback = Inbox()
    handle = client.send_goal(Find, f"/{NODE}/find", find_goal("red square", UNREACHABLE_SCORE, 120.0), feedback)
    feedback.wait_for()  # it is running
    client.cancel_goal(handle)
    status, result = client.goal_result(handle, timeout_s=60.0)
    assert status == GoalStatus.STATUS_CANCELED
    assert (result.success, result.reason) == (False, Find.Result.REASON_CANCELED)
    assert concept_ids(client) == before


def test_instance_points_are_per_track_on_the_depth_plane(client, node, instances):
    clouds = client.subscribe(PointCloud2, f"/{NODE}/instance_points")
    cloud_msg = clouds.wait_for(lambda m: m.width > 0)
    assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "track_id", "rgb"]
    cloud = np.frombuffer(bytes(cloud_msg.data), dtype=CLOUD_DTYPE.descr + [("rgb", "<f4")])
    assert cloud["z"] == pytest.approx(np.full(len(cloud), DEPTH_M))
    same_frame = instances.wait_for(lambda m: m.header.stamp == cloud_msg.header.stamp)
    located = {i.track_id for i in same_frame.instances if i.has_position}
    ids, counts = np.unique(cloud["track_id"], return_counts=True)
    assert set(ids.tolist()) == located and counts.max() <= POINTS_MAX


def test_focus_follows_a_track_and_reports_its_loss(client, node, instances):
    refused = client.call(srv.Focus, f"/{NODE}/focus", srv.Focus.Request(track_id=4_000_000))
    assert not refused.success and "not live" in refused.message
    statuses = client.subscribe(FocusStatus, f"/{NODE}/focus/status")
    poses = client.subscribe(PoseStamped, f"/{NODE}/focus/pose")
    masks = client.subscribe(Image, f"/{NODE}/focus/mask")
    instances.clear()
    target = instances.wait_for(lambda m: any(i.has_position and i.state != i.STATE_LOST for i in m.instances))
    track = next(i for i in target.instances if i.has_position and i.state != i.STATE_LOST)
    response = client.call(srv.Focus, f"/{NODE}/focus", srv.Focus.Request(track_id=track.track_id))
    assert response.success, response.message
    visible = statuses.wait_for(lambda m: m.status == FocusStatus.STATUS_VISIBLE)
    assert (visible.track_id, visible.has_pose) == (track.track_id, True)
    pose = poses.wait_for(lambda m: m.header.stamp == visible.header.stamp).pose
    assert pose.position.z == pytest.approx(DEPTH_M, abs=1e-3)
    mask = masks.wait_for(lambda m: m.header.stamp == visible.header.stamp)
    shown = instances.wait_for(lambda m: m.header.stamp == visible.header.stamp)
    expected = next(i for i in shown.instances if i.track_id == track.track_id)
    pixels = np.frombuffer(bytes(mask.data), np.uint8).reshape(mask.height, mask.width)
    assert mask.encoding == "mono8" and int((pixels == 255).sum()) == int(np.sum(expected.mask_rle[1::2]))

    assert client.call(srv.ResetTracks, f"/{NODE}/reset_tracks").success  # every track ends
    lost = statuses.wait_for(lambda m: m.status == FocusStatus.STATUS_LOST, timeout_s=60.0)
    assert lost.track_id == track.track_id and not lost.has_pose
    statuses.clear()
    assert wait_until(lambda: statuses.count() >= 3)  # it never switches to another track
    assert {(m.status, m.track_id) for m in statuses.messages} == {(FocusStatus.STATUS_LOST, track.track_id)}
    assert client.call(srv.Focus, f"/{NODE}/focus", srv.Focus.Request(track_id=0)).success


def test_find_on_an_inactive_node_says_not_active(client, node):
    assert client.transition(NODE, "deactivate")
    try:
        handle = client.send_goal(Find, f"/{NODE}/find", find_goal("red square", 0.02, 5.0))
        status, result = client.goal_result(handle)
        assert status == GoalStatus.STATUS_ABORTED
        assert (result.reason, result.success) == (Find.Result.REASON_NOT_ACTIVE, False)
        assert "not active" in result.message
    finally:
        assert client.transition(NODE, "activate")


# -- full runtime: the README's ros2 CLI lines -------------------------------------------------------------


def readme_lines(prefix: str) -> list[str]:
    lines = [line.strip() for line in (REPO / "README.md").read_text().splitlines() if line.strip().startswith(prefix)]
    assert lines, f"README.md has no line starting with {prefix!r}"
    return lines


def ros2_cli_missing() -> str | None:
    if shutil.which("ros2") is None:
        return "needs the ros2 CLI of a full ROS 2 runtime (source /opt/ros/jazzy/setup.bash); CI has only rclpy"
    probe = subprocess.run(["ros2", "interface", "show", "sam3_ros_interfaces/action/Find"], capture_output=True,
                           text=True, env=node_environment())
    if probe.returncode != 0:
        return f"the ros2 CLI does not know sam3_ros_interfaces/action/Find: {probe.stderr.strip()[-200:]}"
    return None


full_runtime = pytest.mark.skipif(ros2_cli_missing() is not None, reason=str(ros2_cli_missing()))


@pytest.fixture(scope="module")
def readme_node(client):
    """The node as the README names it (/sam3), in this session's private DDS domain."""
    process = NodeProcess("sam3", node_params("/readme_cam"))
    camera = StillCamera(client, "/readme_cam", depth_m=DEPTH_M).start()
    assert client.transition("sam3", "configure"), process.output()
    assert client.transition("sam3", "activate"), process.output()
    yield process
    camera.stop()
    process.stop()


def run_cli(line: str, timeout_s: float = 90.0) -> str:
    run = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=timeout_s, env=node_environment())
    assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
    return run.stdout


@full_runtime
def test_readme_find_goal_line(readme_node):
    for line in readme_lines("ros2 action send_goal /sam3/find"):
        output = run_cli(line)
        assert "Goal accepted" in output, output
        reason = int(re.search(r"reason: (\d+)", output).group(1))
        assert reason in (Find.Result.REASON_FOUND, Find.Result.REASON_TIMEOUT), output
        assert ("success: true" in output) == (reason == Find.Result.REASON_FOUND), output


@full_runtime
def test_readme_focus_lines(client, readme_node):
    for line in readme_lines("ros2 service call /sam3/focus"):
        output = run_cli(line)
        requested = int(re.search(r"track_id: (\d+)", line).group(1))
        assert f"track_id={requested}" in output and "response:" in output, output
        if requested == 0:
            assert "success=True" in output and "focus cleared" in output, output
