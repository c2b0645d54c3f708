"""The real pipeline on the tiny random-init SAM 3: invariants, prompt edits, refinement, bad input."""
import numpy as np
import pytest
import torch

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import RefineRequest, Sam3Pipeline
from sam3_ros.core.prompts import ExemplarBox, PromptError, make_concept
from sam3_ros.core.results import TrackState

# Random weights score everything low: lower the bars so tracks are born and the full path runs.
PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "tracking.max_tracks": 6}
STAGES = {"preprocess", "vision", "prompts", "detector", "tracker", "association", "memory", "postprocess", "total"}


def frames(n, height=96, width=128, seed=0):
    rng = np.random.default_rng(seed)
    base = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    for i in range(n):
        yield np.roll(base, 3 * i, axis=1)


@pytest.fixture
def pipeline(tiny, tiny_components):
    p = Sam3Pipeline(tiny_components, tiny.tokenizer, PipelineConfig().updated(PERMISSIVE))
    p.set_concepts([make_concept(None, "red cup"), make_concept("crate", "", [ExemplarBox(10, 10, 60, 50)])])
    return p


def test_every_frame_result_is_consistent(pipeline):
    seen_ids = set()
    for image in frames(6):
        result = pipeline.step(image)
        assert set(result.timings_ms) == STAGES
        ids = [i.track_id for i in result.instances]
        assert len(ids) == len(set(ids)) and all(i >= 1 for i in ids)
        for inst in result.instances:
            assert (inst.mask.height, inst.mask.width) == image.shape[:2]
            assert inst.mask.bbox_xyxy() == inst.box_xyxy
            assert 0.0 <= inst.score <= 1.0
            assert inst.concept_id in {"red_cup", "crate"}
            assert inst.label == {"red_cup": "red cup", "crate": "crate"}[inst.concept_id]
        seen_ids.update(ids)
        assert result.live_tracks <= PERMISSIVE["tracking.max_tracks"]
    assert seen_ids, "permissive thresholds should let the tiny model start tracks"


def test_removing_a_concept_reports_its_tracks_removed(pipeline):
    images = frames(4)
    result = None
    for image in images:
        result = pipeline.step(image)
    crate_tracks = {t.track_id for t in pipeline.tracks.tracks.values() if t.concept_id == "crate"}
    pipeline.remove_concept("crate")
    after = pipeline.step(next(frames(1, seed=1)))
    assert crate_tracks <= set(after.removed_track_ids)
    assert all(i.concept_id == "red_cup" for i in after.instances)


def test_refinement_confirms_the_track_and_conditions_its_memory(pipeline):
    for image in frames(2):
        pipeline.step(image)
    track_id = pipeline.tracks.live_ids[0]
    pipeline.request_refine(RefineRequest(track_id, box_xyxy=(20, 20, 70, 60), points=((40, 40, True),)))
    result = pipeline.step(next(frames(1, seed=2)))
    assert pipeline.tracks.tracks[track_id].state == TrackState.CONFIRMED
    newest = pipeline.stream().memories[track_id].recent[-1]
    assert newest.frame_index == result.frame_index and newest.conditioning


@pytest.mark.parametrize("request_, reason", [
    (RefineRequest(999, box_xyxy=(0, 0, 10, 10)), "not live"),
    (RefineRequest(1), "needs a box"),
])
def test_bad_refinements_are_refused(pipeline, request_, reason):
    pipeline.step(next(frames(1)))
    with pytest.raises(PromptError, match=reason):
        pipeline.request_refine(request_)


def test_bad_images_raise_clearly_and_the_pipeline_keeps_going(pipeline):
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((1, 0, 3), np.uint8)):
        with pytest.raises(ValueError):
            pipeline.step(bad)
    assert pipeline.step(next(frames(1))).frame_index == 0


def test_exemplar_box_outside_a_later_image_disables_only_that_concept(tiny, tiny_components):
    p = Sam3Pipeline(tiny_components, tiny.tokenizer, PipelineConfig().updated(PERMISSIVE))
    p.set_concepts([make_concept(None, "cup"), make_concept("far", "", [ExemplarBox(300, 300, 400, 400)])])
    result = p.step(next(frames(1)))
    assert any("far" in w and "outside" in w for w in result.warnings)
    assert {i.concept_id for i in result.instances} <= {"cup"}
    assert "far" in [c.id for c in p.active_concepts()]


def test_text_features_are_cached_per_phrase(tiny, tiny_components):
    calls = []
    text = tiny_components.text

    class CountingText:
        def __call__(self, ids, mask):
            calls.append(1)
            return text(ids, mask)

    from dataclasses import replace
    p = Sam3Pipeline(replace(tiny_components, text=CountingText()), tiny.tokenizer, PipelineConfig())
    p.set_concepts([make_concept("a", "cup")])
    p.step(next(frames(1)))
    p.set_concepts([make_concept("b", "cup"), make_concept("c", "box")])
    p.step(next(frames(1)))
    assert len(calls) == 2  # "cup" once, "box" once


def test_refiner_matches_transformers_decoder_with_clicks(tiny, tiny_components):
    from sam3_ros.core.memory_bank import MemoryEntry, TrackMemory, batch_memories

    c = tiny_components
    g = c.geometry
    vision = c.vision(torch.randn(1, 3, g.image_size, g.image_size))
    memory = TrackMemory(g.num_maskmem, 4, g.max_object_pointers)
    memory.add(MemoryEntry(0, torch.randn(g.grid * g.grid, g.memory_dim).bfloat16(), torch.randn(g.hidden), True))
    batch = batch_memories([memory], 1)
    points, labels = torch.tensor([[[[50.0, 60.0]]]]), torch.tensor([[[1]]])
    ours = c.refiner(vision, batch, points, labels, None)
    with torch.no_grad():
        pix = c.tracker.condition_on_memory(vision, batch)
        ref = tiny.model.tracker_model._single_frame_forward(
            image_embeddings=list(vision.trk_high_res) + [pix], input_points=points, input_labels=labels.int(),
            multimask_output=True)
    torch.testing.assert_close(ours.mask_logits, ref.pred_masks.reshape(1, g.mask_size, g.mask_size))


def test_a_frame_that_fails_half_way_does_not_break_the_next(tiny, tiny_components):
    from dataclasses import replace

    calls = {"n": 0}

    def flaky_memory_encoder(vision, logits, objects):
        calls["n"] += 1
        if calls["n"] == 1:  # the first frame, where the first tracks are born
            raise RuntimeError("CUDA out of memory (simulated)")
        return tiny_components.memory_encoder(vision, logits, objects)

    p = Sam3Pipeline(replace(tiny_components, memory_encoder=flaky_memory_encoder), tiny.tokenizer,
                     PipelineConfig().updated(PERMISSIVE))
    p.set_concepts([make_concept(None, "red cup")])
    images = frames(3)
    with pytest.raises(RuntimeError, match="simulated"):
        p.step(next(images))
    assert p.tracks.live_ids, "tracks were born before the failure"
    recovered = p.step(next(images))
    assert any("previous frame failed" in w for w in recovered.warnings)
    assert all(tid in p.stream().memories for tid in p.tracks.live_ids)
    assert recovered.frame_index == 0  # the failed frame was never completed
    assert p.step(next(images)).frame_index == 1
