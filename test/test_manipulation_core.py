"""Manipulation outputs without ROS: PCA boxes, per-instance point clouds, the find state machine, focus."""
import math

import numpy as np
import pytest
from synthetic_results import sample_result

from sam3_ros.core.depth import instance_points, position_of_points
from sam3_ros.core.geometry import matrix_to_quaternion, pca_box, quaternion_to_matrix
from sam3_ros.core.image_encoding import depth_to_metres
from sam3_ros.core.masks import RleMask
from sam3_ros.core.point_cloud import CLOUD_DTYPE, downsample, instance_cloud
from sam3_ros.core.prompts import make_concept
from sam3_ros.core.results import FrameResult, Instance, TrackState
from sam3_ros.io import messages
from sam3_ros.io.ros_types import RosbagsTypes, typestore
from sam3_ros.ros.find import FindGoal, FindReason, FindSession, run_find
from sam3_ros.ros.focus import Focus, FocusState

TYPES = RosbagsTypes()
STORE = typestore()
FX, FY, CX, CY = 500.0, 400.0, 32.0, 24.0


def roundtrip(msg):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def rotation(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def cuboid_points(size, rot, centre, per_axis=(21, 11, 6)) -> np.ndarray:
    """A grid filling a cuboid of ``size`` (its own axes), rotated by ``rot`` and moved to ``centre``."""
    axes = [np.linspace(-s / 2, s / 2, n) for s, n in zip(size, per_axis)]
    local = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return local @ rot.T + np.asarray(centre)


# -- oriented boxes ------------------------------------------------------------------------------


@pytest.mark.parametrize("axis,angle", [((0, 0, 1), 0.0), ((0, 0, 1), 0.7), ((1, 2, 3), 2.1), ((1, -1, 0), math.pi)])
def test_pca_box_of_a_rotated_cuboid_is_the_cuboid(axis, angle):
    size, centre, rot = (0.4, 0.2, 0.1), (0.3, -0.1, 1.5), rotation(axis, angle)
    box = pca_box(cuboid_points(size, rot, centre))
    assert box.size == pytest.approx(size, abs=1e-9)       # largest extent first
    assert box.center == pytest.approx(centre, abs=1e-9)
    axes = box.rotation()
    assert np.linalg.det(axes) == pytest.approx(1.0)       # right-handed
    assert np.abs(np.sum(axes * rot, axis=0)) == pytest.approx(np.ones(3), abs=1e-9)  # same axes up to sign


def test_pca_box_contains_every_point_of_a_random_cloud():
    points = np.random.default_rng(0).normal(size=(500, 3)) * (0.3, 0.1, 0.02)
    box = pca_box(points)
    local = (points - box.center) @ box.rotation()
    assert np.all(np.abs(local) <= np.asarray(box.size) / 2 + 1e-9)


def test_pca_box_needs_enough_points():
    assert pca_box(np.zeros((5, 3)), min_points=30) is None


@pytest.mark.parametrize("axis,angle", [((1, 0, 0), math.pi), ((0, 1, 0), math.pi), ((0, 0, 1), math.pi),
                                        ((1, 1, 1), 1.0), ((0.2, -1, 0.5), 3.0)])
def test_quaternion_round_trip(axis, angle):
    rot = rotation(axis, angle)
    q = matrix_to_quaternion(rot)
    assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
    assert quaternion_to_matrix(*q) == pytest.approx(rot, abs=1e-9)


def test_a_transformed_box_is_the_box_of_the_transformed_points():
    points = cuboid_points((0.5, 0.3, 0.1), rotation((0, 0, 1), 0.4), (1.0, 0.0, 2.0))
    rot, shift = rotation((1, 0, 0), -math.pi / 2), np.array([0.1, 0.2, 0.3])
    moved = pca_box(points).transformed(rot, shift)
    direct = pca_box(points @ rot.T + shift)
    assert moved.center == pytest.approx(direct.center, abs=1e-9)
    assert np.abs(np.sum(moved.rotation() * direct.rotation(), axis=0)) == pytest.approx(np.ones(3), abs=1e-9)


# -- points from depth ------------------------------------------------------------------------------


def plane_depth(encoding: str, z_m: float, height=48, width=64) -> np.ndarray:
    """A fronto-parallel plane as a depth image in ``encoding``, decoded like the node decodes it."""
    if encoding == "16UC1":
        raw, step = np.full((height, width), round(z_m * 1000), dtype="<u2"), width * 2
    else:
        raw, step = np.full((height, width), z_m, dtype="<f4"), width * 4
    return depth_to_metres(height, width, encoding, step, raw.tobytes())


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])  # millimetres and metres
def test_points_back_project_a_depth_plane_with_the_intrinsics(encoding):
    depth = plane_depth(encoding, 1.25)
    mask = np.zeros(depth.shape, bool)
    mask[10:20, 40:50] = True
    points = instance_points(mask, depth, FX, FY, CX, CY)
    rows, cols = np.nonzero(mask)
    assert len(points) == mask.sum()
    assert points[:, 2] == pytest.approx(np.full(len(points), 1.25))
    assert sorted(points[:, 0]) == pytest.approx(sorted((cols - CX) * 1.25 / FX))
    assert sorted(points[:, 1]) == pytest.approx(sorted((rows - CY) * 1.25 / FY))
    position = position_of_points(points, "cam")
    assert position.centroid == pytest.approx(((44.5 - CX) * 1.25 / FX, (14.5 - CY) * 1.25 / FY, 1.25))
    assert position.box is not None and position.box.size[2] == pytest.approx(0.0, abs=1e-9)  # flat


def test_points_drop_background_the_mask_bleeds_onto():
    depth = plane_depth("32FC1", 3.0)
    depth[10:20, 40:50] = 1.0
    mask = np.zeros(depth.shape, bool)
    mask[9:21, 39:51] = True  # one pixel of background all round
    assert instance_points(mask, depth, FX, FY, CX, CY)[:, 2] == pytest.approx(np.ones(100))


def test_cloud_downsamples_each_instance_and_tags_its_track():
    rng = np.random.default_rng(1)
    cloud = instance_cloud({7: rng.normal(size=(1000, 3)), 3: rng.normal(size=(40, 3))}, max_points_per_instance=100)
    assert cloud.dtype == CLOUD_DTYPE
    assert list(np.unique(cloud["track_id"], return_counts=True)[1]) == [40, 100]
    assert len(downsample(np.zeros((10, 3)), 0)) == 10  # 0: every point


def test_point_cloud2_round_trip_restores_points_and_track_ids():
    depth = plane_depth("16UC1", 2.0)
    mask = np.zeros(depth.shape, bool)
    mask[5:25, 5:15] = True
    points = instance_points(mask, depth, FX, FY, CX, CY)
    cloud = instance_cloud({42: points}, max_points_per_instance=50)
    msg = roundtrip(messages.point_cloud2(cloud, messages.header(1, "cam", TYPES), TYPES))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "track_id", "rgb"]  # rgb: the track's colour
    assert (msg.height, msg.width, msg.point_step) == (1, 50, 20)
    decoded = np.frombuffer(bytes(msg.data), dtype=CLOUD_DTYPE.descr + [("rgb", "<f4")])
    assert set(decoded["track_id"]) == {42}
    assert decoded["z"] == pytest.approx(np.full(50, 2.0))
    original = {(round(float(x), 5), round(float(y), 5)) for x, y in points[:, :2]}
    assert {(round(float(x), 5), round(float(y), 5)) for x, y in zip(decoded["x"], decoded["y"])} <= original


# -- messages -----------------------------------------------------------------------------------------


def located(track_id=5, score=0.8, concept_id="mug", state=TrackState.CONFIRMED, tilt=0.5, box=True) -> Instance:
    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:30] = True
    points = cuboid_points((0.3, 0.1, 0.05), rotation((0, 1, 0), tilt), (0.2, 0.0, 2.0))
    position = position_of_points(points if box else points[:10], "cam")
    return Instance(track_id, concept_id, concept_id, score, (10, 10, 30, 20), state, RleMask.from_array(mask), position)


def test_detection3d_box_is_the_oriented_box_and_markers_carry_it():
    inst = located()
    result = FrameResult(0, 48, 64, [inst], stamp_ns=1)
    header = messages.header(1, "cam", TYPES)
    bbox = roundtrip(messages.detection3d_array(result, header, TYPES)).detections[0].bbox
    q = bbox.center.orientation
    assert (q.x, q.y, q.z, q.w) == pytest.approx(inst.position_3d.box.quaternion)
    assert (bbox.size.x, bbox.size.y, bbox.size.z) == pytest.approx((0.3, 0.1, 0.05))
    cubes = [m for m in roundtrip(messages.marker_array(result, header, TYPES)).markers
             if m.ns == messages.BOX_MARKER_NAMESPACE]
    assert [(m.type, m.id) for m in cubes] == [(messages.MARKER_CUBE, 5)]
    assert (cubes[0].scale.x, cubes[0].scale.y, cubes[0].scale.z) == pytest.approx((0.3, 0.1, 0.05))


def test_few_points_keep_the_axis_aligned_box():
    inst = located(box=False)
    bbox = messages.bounding_box_3d(inst, TYPES)
    assert inst.position_3d.box is None
    assert (bbox.center.orientation.w, bbox.size.x) == (1.0, inst.position_3d.size[0])
    assert not roundtrip(messages.found_instance(inst, TYPES)).oriented


def test_found_instance_pose_and_mask_messages():
    inst = located()
    header = messages.header(1, "cam", TYPES)
    found = roundtrip(messages.found_instance(inst, TYPES))
    assert (found.instance.track_id, found.num_points, found.oriented) == (5, inst.position_3d.num_points, True)
    pose = roundtrip(messages.pose_stamped(inst, header, TYPES)).pose
    assert (pose.position.x, pose.position.y, pose.position.z) == pytest.approx(inst.position_3d.centroid)
    image = roundtrip(messages.mask_image(inst.mask.to_array(), header, TYPES))
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width)
    assert image.encoding == "mono8" and np.array_equal(pixels == 255, inst.mask.to_array())


# -- find: a scripted stand-in world feeds FrameResults ------------------------------------------------


class ScriptedClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def frame(*instances, removed=()) -> FrameResult:
    return FrameResult(0, 48, 64, list(instances), removed_track_ids=list(removed))


def session(clock=None, **goal) -> FindSession:
    return FindSession(FindGoal(make_concept("mug", "red mug"), **goal), now_s=clock or ScriptedClock())


def test_find_succeeds_once_a_track_is_stable_for_n_frames():
    s = session(min_score=0.5, stable_frames=3)
    for streak in (1, 2):
        s.on_frame(frame(located(5), located(6, score=0.3), located(9, concept_id="other")))
        progress = s.wait(0)
        assert ([i.track_id for i in progress.candidates], progress.stable_for) == ([5], [streak])
        assert s.outcome is None
    s.on_frame(frame(located(5)))
    assert s.outcome.reason == FindReason.FOUND and [i.track_id for i in s.outcome.instances] == [5]


def test_a_track_that_comes_and_goes_is_not_stable_and_times_out():
    clock = ScriptedClock()
    s = session(clock, stable_frames=2, timeout_s=1.0)
    for i in range(6):
        s.on_frame(frame(located(5)) if i % 2 == 0 else frame())
        clock.now += 0.25
        s.wait(0)
    assert s.outcome.reason == FindReason.TIMEOUT and "timeout" in s.outcome.message and not s.outcome.success


def test_candidates_without_depth_fail_with_no_depth():
    clock = ScriptedClock()
    s = session(clock, timeout_s=0.5)
    unlocated = Instance(5, "mug", "red mug", 0.9, (0, 0, 1, 1), TrackState.CONFIRMED, located().mask)
    s.on_frame(frame(unlocated))
    clock.now = 1.0
    s.wait(0)
    assert s.outcome.reason == FindReason.NO_DEPTH and "no 3D position" in s.outcome.message


def test_run_find_stops_on_cancel_and_stop_and_publishes_feedback():
    s = session()
    s.on_frame(frame())
    feedback = []
    calls = iter([False, True])
    outcome = run_find(s, lambda: next(calls), feedback.append, poll_s=0.01)
    assert outcome.reason == FindReason.CANCELED and [p.frames_seen for p in feedback] == [1]
    stopped = session()
    stopped.stop("deactivated")
    assert run_find(stopped, lambda: False, feedback.append).reason == FindReason.NOT_ACTIVE


def test_goal_zero_values_mean_defaults():
    goal = FindGoal(make_concept("mug", "mug"), timeout_s=0, stable_frames=0)
    assert (goal.timeout_s, goal.stable_frames) == (10.0, 1)


# -- focus -----------------------------------------------------------------------------------------------


def test_focus_follows_one_track_and_reports_its_loss_without_switching():
    focus = Focus()
    assert focus.set(7, live_ids=[5]) == (False, "track 7 is not live; live tracks: [5]")
    assert focus.set(5, live_ids=[5, 6])[0]
    visible = focus.on_frame(frame(located(5), located(6)), live_ids=[5, 6])
    assert (visible.state, visible.instance.track_id, visible.label) == (FocusState.VISIBLE, 5, "mug")
    assert focus.on_frame(frame(located(6)), live_ids=[5, 6]).state == FocusState.OCCLUDED
    assert focus.on_frame(frame(located(5, state=TrackState.LOST)), live_ids=[5, 6]).state == FocusState.OCCLUDED
    lost = focus.on_frame(frame(located(6), removed=[5]), live_ids=[6])
    assert (lost.state, lost.track_id, lost.instance) == (FocusState.LOST, 5, None)
    assert focus.on_frame(frame(located(6)), live_ids=[6]).state == FocusState.LOST  # stays lost
    assert focus.set(0, live_ids=[]) == (True, "focus cleared")
    assert focus.on_frame(sample_result(), live_ids=[3]) is None


# -- RViz ---------------------------------------------------------------------------------------------


def test_rviz_config_shows_clouds_by_track_the_focused_pose_and_oriented_boxes():
    import yaml
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "sam3.rviz").read_text())
    displays = {d.get("Topic", {}).get("Value"): d for d in config["Visualization Manager"]["Displays"]}
    cloud = displays["/sam3/instance_points"]
    assert (cloud["Class"], cloud["Color Transformer"]) == ("rviz_default_plugins/PointCloud2", "RGB8")  # rgb field
    assert displays["/sam3/focus/pose"]["Class"] == "rviz_default_plugins/Pose"
    assert displays["/sam3/markers"]["Namespaces"][messages.BOX_MARKER_NAMESPACE]
