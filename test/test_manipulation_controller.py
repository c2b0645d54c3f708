"""NodeCore's find and focus handlers over the scripted stand-in network (no ROS): the temporary
concept comes and goes without touching the tracked one, and focus follows one track."""
import numpy as np
import pytest
from scripted_world import MASK, ScriptedObject, static
from test_ros_controller import T, camera_info, depth_msg, image_msg, scripted_core

from sam3_ros.ros.find import FindReason
from sam3_ros.ros.focus import FocusState


class Goal:
    """The Find action's goal fields (actions are not in the rosbags typestore)."""

    def __init__(self, text, min_score=0.0, timeout_s=5.0, stable_frames=2, keep_concept=False):
        self.concept = T.new("sam3_ros_interfaces/msg/Concept", id="", text=text, exemplar_boxes=[],
                             exemplar_positive=T.sequence(np.zeros(0, bool)), score_threshold=0.0, camera="")
        self.min_score, self.timeout_s, self.camera = min_score, timeout_s, ""
        self.stable_frames, self.keep_concept = stable_frames, keep_concept


def frame_with_depth(core, scene, stamp):
    depth = np.full((MASK, MASK), 2.0, np.float32)
    core.on_camera(image_msg(scene.image(), stamp), camera_info(stamp), depth_msg(depth, stamp))
    return core.process_next(timeout_s=0.0)


def test_find_adds_a_temporary_concept_and_leaves_the_tracked_one_alone():
    core, scene = scripted_core([ScriptedObject("box", static(4, 4, 20, 20)), ScriptedObject("mug", static(30, 30, 50, 50))],
                                camera_info_topic="info", depth_topic="depth")
    box_track = frame_with_depth(core, scene, 10**9).result.instances[0].track_id
    session = core.start_find(Goal("mug"))
    assert [c.text for c in core.active_concepts()] == ["box", "mug"]
    for i in range(2, 5):
        out = frame_with_depth(core, scene, i * 10**9)
    assert session.outcome.reason == FindReason.FOUND
    (found,) = session.outcome.instances
    assert found.label == "mug" and found.position_3d.centroid[2] == pytest.approx(2.0)
    core.finish_find(session)
    assert [c.id for c in core.active_concepts()] == ["box"]
    out = frame_with_depth(core, scene, 6 * 10**9)
    assert [i.track_id for i in out.result.instances if i.label == "box"] == [box_track]


def test_find_says_why_it_cannot_start():
    core, _ = scripted_core([ScriptedObject("box", static(4, 4, 20, 20))])
    assert core.start_find(Goal("box")).outcome.reason == FindReason.NO_DEPTH
    core.deactivate()
    assert core.start_find(Goal("box")).outcome.reason == FindReason.NOT_ACTIVE


def test_focus_publishes_pose_mask_and_status_then_loss():
    core, scene = scripted_core([ScriptedObject("box", static(4, 4, 20, 20))], camera_info_topic="info",
                                depth_topic="depth")
    track = frame_with_depth(core, scene, 10**9).result.instances[0].track_id
    assert core.set_focus(type("Request", (), {"track_id": track, "camera": ""})())["success"]
    out = frame_with_depth(core, scene, 2 * 10**9)
    assert out.focus_status.status == FocusState.VISIBLE and out.focus_pose.pose.position.z == pytest.approx(2.0)
    assert np.count_nonzero(np.asarray(out.focus_mask.data)) == 16 * 16
    core.reset_tracks()
    out = frame_with_depth(core, scene, 3 * 10**9)
    assert (out.focus_status.status, out.focus_status.track_id, out.focus_pose) == (FocusState.LOST, track, None)
