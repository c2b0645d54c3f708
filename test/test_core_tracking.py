"""Track life cycle through the real pipeline, driven by a scripted stand-in for the network."""
from __future__ import annotations

import numpy as np
import pytest

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.prompts import make_concept
from sam3_ros.core.results import TrackState
from sam3_ros.core.tracking import Observations, TrackManager
from sam3_ros.model.tiny import byte_level_clip_tokenizer

from scripted_world import ScriptedComponents, ScriptedObject, ScriptedScene, moving, static


def run(objects, frames, phrases=("box",), long_memory=True, **overrides):
    scene = ScriptedScene(objects)
    config = PipelineConfig().updated(overrides)
    pipeline = Sam3Pipeline(ScriptedComponents(scene, byte_level_clip_tokenizer(), long_memory).components(),
                            byte_level_clip_tokenizer(), config)
    pipeline.set_concepts([make_concept(None, p) for p in phrases])
    results = [pipeline.step(scene.image()) for _ in range(frames)]
    return pipeline, scene, results


def ids_per_frame(results):
    return [sorted(i.track_id for i in r.instances) for r in results]


def instance_of(result, track_id):
    return next((i for i in result.instances if i.track_id == track_id), None)


def test_id_persists_through_short_occlusion_with_memory_tracker():
    obj = ScriptedObject("box", moving(5, 20, 12, dx=1.0), occluded=lambda f: 10 <= f < 14)
    _, _, results = run([obj], 30)
    before = ids_per_frame(results[:10])
    after = ids_per_frame(results[14:])
    assert all(ids == [1] for ids in before + after)
    assert all(r.instances == [] for r in results[10:14])
    assert results[29].instances[0].state == TrackState.CONFIRMED


def test_lost_track_is_reacquired_by_its_last_mask_when_the_tracker_forgets():
    obj = ScriptedObject("box", static(20, 20, 40, 40), occluded=lambda f: 8 <= f < 12)
    pipeline, _, results = run([obj], 20, long_memory=False)
    assert ids_per_frame(results[12:]) == [[1]] * 8
    assert pipeline.tracks.tracks[1].state == TrackState.CONFIRMED


def test_new_object_gets_a_new_id_and_old_one_keeps_its_own():
    first = ScriptedObject("box", static(2, 2, 14, 14))
    second = ScriptedObject("box", static(40, 40, 56, 56), occluded=lambda f: f < 6)
    _, _, results = run([first, second], 12)
    assert ids_per_frame(results[:6]) == [[1]] * 6
    assert ids_per_frame(results[6:]) == [[1, 2]] * 6
    assert instance_of(results[-1], 1).box_xyxy == (2.0, 2.0, 14.0, 14.0)
    assert instance_of(results[-1], 2).box_xyxy == (40.0, 40.0, 56.0, 56.0)


def test_removed_ids_are_never_reused():
    leaves = ScriptedObject("box", static(10, 10, 30, 30), occluded=lambda f: f >= 5)
    arrives = ScriptedObject("box", static(10, 10, 30, 30), occluded=lambda f: f < 20)
    pipeline, _, results = run([leaves, arrives], 26, **{"tracking.keep_alive": 6})
    removed_at = next(i for i, r in enumerate(results) if 1 in r.removed_track_ids)
    assert removed_at < 20
    assert ids_per_frame(results[20:]) == [[2]] * 6
    pipeline.request_reset()
    scene_frame = pipeline.step(np.zeros((64, 64, 3), np.uint8))
    assert scene_frame.removed_track_ids == [2]
    assert [i.track_id for i in scene_frame.instances] == [3]


def test_tentative_track_never_confirmed_when_unmatched():
    flash = ScriptedObject("box", static(10, 10, 30, 30), detected=lambda f: f == 3, occluded=lambda f: f != 3)
    pipeline, _, results = run([flash], 25)
    states = [i.state for r in results for i in r.instances]
    assert states == [TrackState.TENTATIVE]
    assert 1 not in pipeline.tracks.tracks


def test_tentative_becomes_confirmed_after_confirm_hits():
    obj = ScriptedObject("box", static(10, 10, 30, 30))
    _, _, results = run([obj], 5, **{"tracking.confirm_hits": 3})
    assert [r.instances[0].state for r in results] == [TrackState.TENTATIVE] * 2 + [TrackState.CONFIRMED] * 3


def test_publish_tentative_false_hides_unconfirmed_tracks():
    obj = ScriptedObject("box", static(10, 10, 30, 30))
    _, _, results = run([obj], 4, **{"output.publish_tentative": False})
    assert [len(r.instances) for r in results] == [0, 0, 1, 1]


def test_track_cap_holds_and_is_reported():
    objects = [ScriptedObject("box", static(6 * i, 2, 6 * i + 4, 6)) for i in range(10)]
    pipeline, _, results = run(objects, 6, **{"tracking.max_tracks": 4})
    assert max(r.live_tracks for r in results) == 4
    assert any("track cap" in w for w in results[0].warnings)
    assert pipeline.tracks.total_births_dropped > 0


def test_duplicate_track_following_another_object_is_removed():
    anchor = ScriptedObject("box", static(10, 10, 26, 26))
    # Starts apart, slides onto the anchor, then vanishes: its track ends up on the anchor.
    drifter = ScriptedObject("box", lambda f: (max(40 - 4 * f, 10), 10, max(40 - 4 * f, 10) + 16, 26),
                             occluded=lambda f: f >= 9)
    pipeline, _, results = run([anchor, drifter], 30, **{"tracking.duplicate_frames": 4})
    assert 2 not in pipeline.tracks.tracks
    removal = next(r for r in results if 2 in r.removed_track_ids)
    assert removal.frame_index > 9
    assert ids_per_frame(results[-5:]) == [[1]] * 5


def test_tracker_carries_undetected_object_until_keep_alive_runs_out():
    obj = ScriptedObject("box", static(10, 10, 30, 30), detected=lambda f: f < 5)
    _, _, results = run([obj], 20, **{"tracking.keep_alive": 8})
    visible = [bool(r.instances) for r in results]
    last_visible = max(i for i, v in enumerate(visible) if v)
    assert all(visible[: last_visible + 1])
    assert 5 < last_visible < 14
    assert any(1 in r.removed_track_ids for r in results)


def test_concepts_are_kept_apart_and_removal_drops_their_tracks():
    cup = ScriptedObject("cup", static(2, 2, 20, 20))
    box = ScriptedObject("box", static(2, 2, 20, 20))  # same pixels, other concept
    pipeline, scene, results = run([cup, box], 4, phrases=("cup", "box"))
    assert {(i.concept_id, i.track_id) for i in results[-1].instances} == {("cup", 1), ("box", 2)}
    pipeline.remove_concept("cup")
    after = pipeline.step(scene.image())
    assert after.removed_track_ids == [1]
    assert [i.track_id for i in after.instances] == [2]


def test_threshold_change_keeps_tracks_but_new_phrase_drops_them():
    box = ScriptedObject("box", static(2, 2, 20, 20), score=0.9)
    pipeline, scene, _ = run([box], 3)
    pipeline.upsert_concept(make_concept("box", "box", score_threshold=0.6))
    assert [i.track_id for i in pipeline.step(scene.image()).instances] == [1]
    pipeline.upsert_concept(make_concept("box", "crate"))
    assert pipeline.step(scene.image()).removed_track_ids == [1]


def test_tracks_with_the_same_memory_layout_share_one_tracker_call():
    objects = [ScriptedObject("box", static(12 * i, 2, 12 * i + 8, 10)) for i in range(4)]
    _, scene, _ = run(objects, 30)
    assert scene.tracker_calls[-1] == 4


def test_memory_per_track_stays_bounded():
    obj = ScriptedObject("box", moving(2, 2, 10, dx=0.1))
    pipeline, _, _ = run([obj], 120, **{"tracking.recondition_every": 4, "tracking.recondition_iou": 0.5})
    memory = pipeline.stream().memories[1]
    assert len(memory.conditioning) == pipeline.config.memory.max_cond_frames
    spatial, pointers = memory.select(pipeline.frame_index)
    assert len(spatial) <= pipeline.config.memory.max_cond_frames + pipeline.geometry.num_maskmem - 1
    assert len(pointers) <= pipeline.config.memory.max_cond_frames + pipeline.config.memory.max_object_pointers - 1


# -- TrackManager rules on hand-made observations ------------------------------------------------------------

def manager(**overrides):
    config = PipelineConfig().updated(overrides)
    return TrackManager(config.tracking, config.detection)


def observe(m, frame, concepts, scores, iou, visible=None):
    n_trk = len(m.live_ids)
    visible = np.ones(n_trk, bool) if visible is None else np.asarray(visible)
    return m.update(Observations(frame, concepts, np.asarray(scores, float), m.live_ids,
                                 np.asarray(iou, float).reshape(len(scores), n_trk), visible, np.eye(n_trk)))


def test_detection_of_another_concept_never_matches_a_track():
    m = manager()
    births = observe(m, 0, ["cup"], [0.9], np.zeros((1, 0))).births
    assert list(births) == [1]
    decisions = observe(m, 1, ["box"], [0.9], [[1.0]])
    assert decisions.matched == {} and list(decisions.births) == [2]


def test_one_detection_matches_one_track_and_blocks_births_nearby():
    m = manager()
    observe(m, 0, ["cup", "cup"], [0.9, 0.9], np.zeros((2, 0)))
    decisions = observe(m, 1, ["cup", "cup"], [0.9, 0.8], [[0.9, 0.6], [0.7, 0.2]])
    assert decisions.matched == {1: 0, 2: 1} or decisions.matched == {1: 0}
    assert decisions.births == {}


def test_low_scoring_detection_never_starts_a_track():
    m = manager(**{"detection.new_track_threshold": 0.7})
    assert observe(m, 0, ["cup"], [0.69], np.zeros((1, 0))).births == {}


def test_observations_must_follow_manager_order():
    m = manager()
    observe(m, 0, ["cup", "cup"], [0.9, 0.9], np.zeros((2, 0)))
    with pytest.raises(ValueError):
        m.update(Observations(1, [], np.zeros(0), [2, 1], np.zeros((0, 2)), np.ones(2, bool), np.eye(2)))
