"""Several cameras, one pipeline: the batched step on the tiny random-init SAM 3.

The reference for every camera is a separate single-camera pipeline fed the same frames: batching
cameras together must change nothing but the track IDs (one allocator for all cameras).
"""
import dataclasses

import numpy as np
import pytest
import torch

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import CameraFrame, RefineRequest, Sam3Pipeline
from sam3_ros.core.prompts import ExemplarBox, make_concept

PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 4}
SIZES = {"head": (96, 128), "wrist": (72, 88)}  # (height, width): cameras need not match


def camera_frames(steps, seed):
    """Per step, the cameras that have a frame: head every step, wrist every other step."""
    rng = np.random.default_rng(seed)
    bases = {name: (rng.random((*size, 3)) * 255).astype(np.uint8) for name, size in SIZES.items()}
    for i in range(steps):
        yield {name: np.roll(base, 3 * i, axis=1) for name, base in bases.items() if name == "head" or i % 2 == 0}


def new_pipeline(tiny, components):
    """Text concepts only: exemplar boxes are drawn on one camera's image (see the exemplar test)."""
    pipeline = Sam3Pipeline(components, tiny.tokenizer, PipelineConfig().updated(PERMISSIVE))
    pipeline.set_concepts([make_concept(None, "red cup"), make_concept("crate", "wooden crate")])
    return pipeline


class CountingCalls:
    """Counts calls of a real component (the component still runs)."""

    def __init__(self, component):
        self.component, self.calls, self.batch_sizes = component, 0, []

    def __call__(self, pixels, *args):
        self.calls += 1
        self.batch_sizes.append(pixels.shape[0])
        return self.component(pixels, *args)


def run_batched(pipeline, schedule):
    out = []
    for step in schedule:
        results = pipeline.step_cameras({name: CameraFrame(image, stamp_ns=i) for i, (name, image) in
                                         enumerate(step.items())})
        assert list(results) == list(step)
        out.append(results)
    return out


def assert_same_instances(batched, alone):
    """Same instances (concept, score, mask, box, state) in the same order; IDs may differ."""
    assert len(batched.instances) == len(alone.instances)
    for a, b in zip(batched.instances, alone.instances):
        assert (a.concept_id, a.state) == (b.concept_id, b.state)
        assert a.score == pytest.approx(b.score, abs=1e-4)
        ours, theirs = a.mask.to_array(), b.mask.to_array()
        assert (ours & theirs).sum() >= 0.99 * (ours | theirs).sum()


@pytest.fixture(scope="module")
def reference(tiny, tiny_components):
    """Each camera alone in its own pipeline, over the schedule."""
    alone = {name: new_pipeline(tiny, tiny_components) for name in SIZES}
    results = []
    for step in camera_frames(6, seed=3):
        results.append({name: alone[name].step(image) for name, image in step.items()})
    return results


@pytest.mark.parametrize("mixes_cameras", [True, False], ids=["one-call-for-all-cameras", "one-call-per-camera"])
def test_batched_cameras_match_each_camera_alone(tiny, tiny_components, reference, mixes_cameras):
    components = dataclasses.replace(tiny_components, mixes_cameras=mixes_cameras)
    vision = components.vision = CountingCalls(components.vision)
    pipeline = new_pipeline(tiny, components)
    batched = run_batched(pipeline, camera_frames(6, seed=3))

    seen = {name: set() for name in SIZES}
    for results, expected in zip(batched, reference):
        for name, result in results.items():
            assert result.camera == name and all(i.camera == name for i in result.instances)
            assert (result.image_height, result.image_width) == SIZES[name]
            assert result.frame_index == expected[name].frame_index  # a camera's frames count alone
            assert_same_instances(result, expected[name])
            seen[name] |= {i.track_id for i in result.instances}
    assert seen["head"] and seen["wrist"], "permissive thresholds should start tracks on both cameras"
    assert not seen["head"] & seen["wrist"], "a track ID names one object on one camera"
    steps = len(batched)
    if mixes_cameras:  # the backbone runs once per step, on every camera's frame
        assert vision.calls == steps and vision.batch_sizes == [len(r) for r in batched]
    else:
        assert vision.calls == sum(len(r) for r in batched) and set(vision.batch_sizes) == {1}


def test_track_ids_are_unique_across_cameras_and_never_reused(tiny, tiny_components):
    pipeline = new_pipeline(tiny, tiny_components)
    issued = []
    for results in run_batched(pipeline, camera_frames(3, seed=5)):
        issued += [i.track_id for r in results.values() for i in r.instances]
    head_tracks = set(pipeline.tracks_of("head").live_ids)
    wrist_tracks = set(pipeline.tracks_of("wrist").live_ids)
    assert head_tracks and wrist_tracks and not head_tracks & wrist_tracks
    assert all(pipeline.camera_of_track(t) == "head" for t in head_tracks)

    pipeline.request_reset("head")  # one camera's tracks end; the other's go on
    results = run_batched(pipeline, camera_frames(1, seed=6))[0]
    assert head_tracks <= set(results["head"].removed_track_ids)
    assert not set(results["wrist"].removed_track_ids) & wrist_tracks - set(results["wrist"].removed_track_ids)
    assert wrist_tracks & set(pipeline.tracks_of("wrist").live_ids), "the wrist camera's tracks survive a head reset"
    new_ids = set(pipeline.tracks_of("head").live_ids)
    assert new_ids and min(new_ids) > max(issued + list(wrist_tracks)), "IDs are never reused"


def test_concepts_apply_to_every_camera(tiny, tiny_components):
    pipeline = new_pipeline(tiny, tiny_components)
    run_batched(pipeline, camera_frames(2, seed=7))
    crates = {name: {t.track_id for t in pipeline.tracks_of(name).tracks.values() if t.concept_id == "crate"}
              for name in SIZES}
    assert crates["head"] and crates["wrist"]
    pipeline.remove_concept("crate")
    results = run_batched(pipeline, [next(camera_frames(1, seed=8))])[0]
    for name in SIZES:
        assert crates[name] <= set(results[name].removed_track_ids)
        assert all(i.concept_id == "red_cup" for i in results[name].instances)


def test_exemplar_boxes_are_read_on_their_own_camera(tiny, tiny_components):
    """A box that only fits the wrist image: drawn on the wrist camera it waits for a wrist frame and
    works; drawn on the default (first) camera, the head's smaller image disables it."""
    pipeline = Sam3Pipeline(tiny_components, tiny.tokenizer, PipelineConfig().updated(PERMISSIVE))
    small, large = np.zeros((40, 40, 3), np.uint8), np.full((90, 120, 3), 90, np.uint8)
    box = ExemplarBox(60, 50, 110, 85)
    pipeline.set_concepts([make_concept("on_wrist", "", [box], camera="wrist"),
                           make_concept("on_first", "", [box])])
    head_only = pipeline.step_cameras({"head": CameraFrame(small)})["head"]
    both = pipeline.step_cameras({"head": CameraFrame(small), "wrist": CameraFrame(large)})
    warnings = head_only.warnings + both["head"].warnings + both["wrist"].warnings
    assert any("'on_first' disabled" in w and "40x40" in w for w in head_only.warnings)
    assert not any("on_wrist" in w for w in warnings)


def test_a_bad_image_on_any_camera_changes_nothing(tiny, tiny_components):
    pipeline = new_pipeline(tiny, tiny_components)
    run_batched(pipeline, camera_frames(1, seed=9))
    before = {name: (pipeline.stream(name).frame_index, list(pipeline.tracks_of(name).live_ids)) for name in SIZES}
    with pytest.raises(ValueError, match="uint8 RGB"):
        pipeline.step_cameras({"head": CameraFrame(np.zeros((50, 50, 3), np.uint8)),
                               "wrist": CameraFrame(np.zeros((50, 50), np.uint8))})
    assert before == {name: (pipeline.stream(name).frame_index, list(pipeline.tracks_of(name).live_ids))
                      for name in SIZES}


def test_a_refinement_goes_to_the_camera_of_its_track(tiny, tiny_components):
    pipeline = new_pipeline(tiny, tiny_components)
    run_batched(pipeline, camera_frames(2, seed=10))
    track_id = pipeline.tracks_of("wrist").live_ids[0]
    pipeline.request_refine(RefineRequest(track_id, box_xyxy=(10, 10, 50, 40)))
    assert pipeline.stream("wrist").pending_refines and not pipeline.stream("head").pending_refines
    run_batched(pipeline, [next(camera_frames(1, seed=11))])
    newest = pipeline.stream("wrist").memories[track_id].recent[-1]
    assert newest.conditioning, "the corrected mask becomes a conditioning frame of the wrist track"


def test_forgetting_a_camera_ends_only_its_tracks(tiny, tiny_components):
    pipeline = new_pipeline(tiny, tiny_components)
    run_batched(pipeline, camera_frames(1, seed=12))
    wrist = set(pipeline.tracks_of("wrist").live_ids)
    head = set(pipeline.tracks_of("head").live_ids)
    assert set(pipeline.forget_camera("wrist")) == wrist
    assert pipeline.tracks_of("wrist").live_ids == [] and set(pipeline.tracks_of("head").live_ids) == head


def test_position_encodings_are_the_same_for_every_camera(tiny_components):
    """Mixed-camera calls keep position encodings batch 1 (base.SAME_FOR_EVERY_CAMERA): true of the
    real backbone for different images."""
    from sam3_ros.backends.base import SAME_FOR_EVERY_CAMERA
    from sam3_ros.model.preprocess import image_to_pixel_values

    rng = np.random.default_rng(0)
    images = [(rng.random((60, 80, 3)) * 255).astype(np.uint8) for _ in range(2)]
    pixels = torch.cat([image_to_pixel_values(i, tiny_components.geometry.image_size, tiny_components.device,
                                              tiny_components.dtype) for i in images])
    vision = tiny_components.vision(pixels)
    assert not torch.equal(vision.trk_feat[0], vision.trk_feat[1])
    for name in SAME_FOR_EVERY_CAMERA:
        value = getattr(vision, name)
        for level in value if isinstance(value, tuple) else (value,):
            assert torch.equal(level[0], level[1]), name
    gathered = vision.for_rows([1, 0, 1])
    assert torch.equal(gathered.trk_feat, vision.trk_feat[[1, 0, 1]]) and gathered.trk_pos.shape[0] == 1
