"""Our component split of SAM 3 computes what transformers' own models compute.

With identical random weights, the detector path (vision -> text -> detector head, and the
exemplar path) matches ``Sam3Model``; the tracker's memory assembly from our bounded memory
bank matches ``Sam3TrackerVideoModel._prepare_memory_conditioned_features`` fed the same history.
"""
import numpy as np
import pytest
import torch
from transformers import Sam3Model
from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

from sam3_ros.backends.base import PromptFeatures
from sam3_ros.core.memory_bank import MemoryEntry, TrackMemory, batch_memories
from sam3_ros.model.preprocess import image_to_pixel_values, tokenize

TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def reference_detector(tiny):
    model = Sam3Model(tiny.model.config.detector_config).eval()
    model.load_state_dict(tiny.model.detector_model.state_dict())
    return model


def random_image(seed, height=150, width=200):
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 255).astype(np.uint8)


def test_preprocessing_matches_sam3_image_processor(tiny_components):
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    image = random_image(1)
    size = tiny_components.geometry.image_size
    ours = image_to_pixel_values(image, size, torch.device("cpu"), torch.float32)
    reference = Sam3ImageProcessor(size={"height": size, "width": size})(images=image, return_tensors="pt").pixel_values
    # The processor resizes uint8 and rounds; we resize in float: at most one grey level apart.
    assert (ours - reference).abs().max().item() <= 1.01 * 2 / 255


@pytest.mark.parametrize("seed", [0, 1])
def test_text_prompt_detections_match_sam3model(tiny, tiny_components, reference_detector, seed):
    c = tiny_components
    torch.manual_seed(seed)
    pixels = torch.randn(1, 3, c.geometry.image_size, c.geometry.image_size)
    ids, mask, _ = tokenize(tiny.tokenizer, ["yellow forklift"])
    ours = c.detector(c.vision(pixels), c.text(ids, mask))
    with torch.no_grad():
        ref = reference_detector(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    ref_scores = ref.pred_logits.sigmoid() * ref.presence_logits.sigmoid()
    torch.testing.assert_close(ours.scores, ref_scores, **TOL)
    torch.testing.assert_close(ours.boxes_xyxy, ref.pred_boxes, **TOL)
    torch.testing.assert_close(ours.mask_logits, ref.pred_masks, **TOL)


def test_exemplar_prompt_detections_match_sam3model(tiny, tiny_components, reference_detector):
    c = tiny_components
    torch.manual_seed(3)
    pixels = torch.randn(1, 3, c.geometry.image_size, c.geometry.image_size)
    ids, mask, _ = tokenize(tiny.tokenizer, ["visual"])
    boxes = torch.tensor([[[0.4, 0.5, 0.3, 0.2], [0.7, 0.3, 0.1, 0.2]]])  # cx, cy, w, h
    labels = torch.tensor([[1, 0]])
    vision = c.vision(pixels)
    text = c.text(ids, mask)
    exemplars = c.exemplars(vision, boxes, labels)
    prompt = PromptFeatures(torch.cat([text.features, exemplars.features], 1), torch.cat([text.mask, exemplars.mask], 1))
    ours = c.detector(vision, prompt)
    with torch.no_grad():
        ref = reference_detector(pixel_values=pixels, input_ids=ids, attention_mask=mask,
                                 input_boxes=boxes, input_boxes_labels=labels)
    torch.testing.assert_close(ours.scores, ref.pred_logits.sigmoid() * ref.presence_logits.sigmoid(), **TOL)
    torch.testing.assert_close(ours.mask_logits, ref.pred_masks, **TOL)


def test_concepts_batched_in_one_call_equal_separate_calls(tiny, tiny_components):
    c = tiny_components
    vision = c.vision(torch.randn(1, 3, c.geometry.image_size, c.geometry.image_size))
    ids, mask, _ = tokenize(tiny.tokenizer, ["cup", "red box", "person"])
    together = c.detector(vision, c.text(ids, mask))
    for k in range(3):
        alone = c.detector(vision, c.text(ids[k:k + 1], mask[k:k + 1]))
        torch.testing.assert_close(together.scores[k:k + 1], alone.scores, **TOL)
        torch.testing.assert_close(together.mask_logits[k:k + 1], alone.mask_logits, **TOL)


def _history(c, frames, recondition_at, seed=0):
    g = c.geometry
    gen = torch.Generator().manual_seed(seed)
    entries = []
    for f in range(frames):
        entries.append(MemoryEntry(
            frame_index=f,
            features=torch.randn(g.grid * g.grid, g.memory_dim, generator=gen).to(torch.bfloat16),
            pointer=torch.randn(g.hidden, generator=gen),
            conditioning=f == 0 or f in recondition_at,
        ))
    return entries


@pytest.mark.parametrize("frames, recondition_at", [(1, ()), (4, ()), (12, (5,)), (30, (8, 16, 24))])
def test_memory_attention_matches_transformers_session(tiny, tiny_components, frames, recondition_at):
    c = tiny_components
    g = c.geometry
    trk = tiny.model.tracker_model
    entries = _history(c, frames, recondition_at)
    memory = TrackMemory(g.num_maskmem, max_cond_frames=4, max_object_pointers=g.max_object_pointers)
    for e in entries:
        memory.add(e)
    vision = c.vision(torch.randn(1, 3, g.image_size, g.image_size))
    ours = c.tracker.condition_on_memory(vision, batch_memories([memory], frames))

    session = Sam3TrackerVideoInferenceSession(dtype=torch.float32)
    session.obj_id_to_idx(1)
    pos = c.tracker.memory_pos[:, None, :]
    for e in entries:
        key = "cond_frame_outputs" if e.conditioning else "non_cond_frame_outputs"
        session.output_dict_per_obj[0][key][e.frame_index] = {
            "maskmem_features": e.features[:, None, :], "maskmem_pos_enc": pos, "object_pointer": e.pointer[None]}
    seq_first = lambda t: t.flatten(2).permute(2, 0, 1)
    with torch.no_grad():
        ref = trk._prepare_memory_conditioned_features(
            inference_session=session, frame_idx=frames, obj_idx=0, is_initial_conditioning_frame=False,
            current_vision_features=seq_first(vision.trk_feat), current_vision_positional_embeddings=seq_first(vision.trk_pos),
            num_total_frames=None, track_in_reverse_time=False, streaming=True)
    torch.testing.assert_close(ours, ref, **TOL)


def test_tracker_batch_equals_one_track_at_a_time_and_transformers_decoder(tiny, tiny_components):
    c = tiny_components
    g = c.geometry
    vision = c.vision(torch.randn(1, 3, g.image_size, g.image_size))
    memories = []
    for seed in range(3):
        m = TrackMemory(g.num_maskmem, 4, g.max_object_pointers)
        for e in _history(c, 5, (), seed=seed):
            m.add(e)
        memories.append(m)
    together = c.tracker(vision, batch_memories(memories, 5))
    for b, m in enumerate(memories):
        batch = batch_memories([m], 5)
        alone = c.tracker(vision, batch)
        torch.testing.assert_close(together.mask_logits[b:b + 1], alone.mask_logits, **TOL)
        torch.testing.assert_close(together.pointers[b:b + 1], alone.pointers, **TOL)
        with torch.no_grad():
            pix = c.tracker.condition_on_memory(vision, batch)
            ref = tiny.model.tracker_model._single_frame_forward(
                image_embeddings=list(vision.trk_high_res) + [pix], multimask_output=c.tracker.multimask)
        torch.testing.assert_close(alone.mask_logits, ref.pred_masks.reshape(1, g.mask_size, g.mask_size), **TOL)
        torch.testing.assert_close(alone.pointers, ref.object_pointer.reshape(1, -1), **TOL)


def test_mask_prompter_matches_use_mask_as_output(tiny, tiny_components):
    c = tiny_components
    g = c.geometry
    vision = c.vision(torch.randn(1, 3, g.image_size, g.image_size))
    masks = torch.zeros(3, g.mask_size, g.mask_size, dtype=torch.bool)
    masks[0, 5:30, 10:40] = True
    masks[1, 40:60, 2:20] = True  # masks[2] stays empty: an invisible object
    ours = c.mask_prompter(vision, masks)
    for b in range(3):
        with torch.no_grad():
            ref = tiny.model.tracker_model._use_mask_as_output(
                backbone_features=vision.trk_feat, high_res_features=list(vision.trk_high_res),
                mask_inputs=masks[b][None, None])
        torch.testing.assert_close(ours.pointers[b:b + 1], ref.object_pointer.reshape(1, -1), **TOL)
        assert float(ours.object_logits[b]) == float(ref.object_score_logits.flatten()[0])
