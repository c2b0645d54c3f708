"""The reference backend: every component runs the transformers SAM 3 modules in PyTorch.

Nothing here re-implements the network: each component calls the Hugging Face submodules
in the order ``Sam3Model`` / ``Sam3TrackerVideoModel`` do, but with batch layouts chosen for
streaming (all concepts in one detector call, all tracks of one memory layout in one tracker
call) and with the memory bank kept by our pipeline instead of an inference session.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import NO_OBJ_SCORE, get_1d_sine_pe

from ..model.loading import LoadedSam3
from .base import (
    DetectorOutput,
    MemoryBatch,
    ModelGeometry,
    PromptFeatures,
    Sam3Components,
    TrackerOutput,
    VisionFeatures,
    broadcast_rows,
)


# Mask logits that stand for a given binary mask: sigmoid(+-50) is 0/1 in float32.
MASK_PROMPT_LOGIT = 50.0


def geometry_of(loaded: LoadedSam3) -> ModelGeometry:
    video = loaded.model
    tracker = video.tracker_model
    grid = tracker.prompt_encoder.image_embedding_size[0]
    return ModelGeometry(
        image_size=int(tracker.image_size),
        grid=int(grid),
        mask_size=int(video.low_res_mask_size),
        hidden=int(tracker.hidden_dim),
        memory_dim=int(tracker.mem_dim),
        num_maskmem=int(tracker.num_maskmem),
        max_object_pointers=int(tracker.config.max_object_pointers_in_encoder),
        num_queries=int(video.detector_model.config.detr_decoder_config.num_queries),
    )


class TorchVision:
    """Backbone + detector FPN + tracker FPN, once per frame."""

    def __init__(self, loaded: LoadedSam3):
        self.video = loaded.model
        self.grid = geometry_of(loaded).grid

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor) -> VisionFeatures:
        video = self.video
        out = video.detector_model.vision_encoder(pixel_values)
        hidden = out.last_hidden_state
        spatial = hidden.view(hidden.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)
        trk_fpn, trk_pos = video.tracker_neck(spatial)
        decoder = video.tracker_model.mask_decoder
        return VisionFeatures(
            det_fpn=tuple(out.fpn_hidden_states[:-1]),
            det_fpn_pos=tuple(out.fpn_position_encoding[:-1]),
            trk_high_res=(decoder.conv_s0(trk_fpn[0]), decoder.conv_s1(trk_fpn[1])),
            trk_feat=trk_fpn[2],
            trk_pos=trk_pos[2],
        )


class TorchText:
    def __init__(self, loaded: LoadedSam3):
        self.detector = loaded.model.detector_model

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptFeatures:
        out = self.detector.get_text_features(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return PromptFeatures(out.pooler_output, attention_mask.bool())


class TorchExemplars:
    """Geometry encoder: exemplar boxes pooled from one frame's features into prompt tokens."""

    def __init__(self, loaded: LoadedSam3):
        self.detector = loaded.model.detector_model

    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, boxes_cxcywh: torch.Tensor, labels: torch.Tensor) -> PromptFeatures:
        out = self.detector.geometry_encoder(
            box_embeddings=boxes_cxcywh.to(vision.det_fpn[-1].dtype),
            box_mask=torch.ones_like(labels, dtype=torch.bool),
            box_labels=labels.long(),
            img_feats=vision.det_fpn,
            img_pos_embeds=vision.det_fpn_pos,
        )
        return PromptFeatures(out.last_hidden_state, out.attention_mask.bool())


class TorchDetector:
    """DETR encoder/decoder, presence token, scoring and mask head for K concepts at once."""

    def __init__(self, loaded: LoadedSam3):
        self.detector = loaded.model.detector_model

    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, prompts: PromptFeatures) -> DetectorOutput:
        from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

        det = self.detector
        k = prompts.features.shape[0]
        fpn = [broadcast_rows(f, k) for f in vision.det_fpn]
        pos = [broadcast_rows(p, k) for p in vision.det_fpn_pos]
        enc = det.detr_encoder(
            vision_features=[fpn[-1]], text_features=prompts.features, vision_pos_embeds=[pos[-1]],
            text_mask=prompts.mask,
        )
        dec = det.detr_decoder(
            vision_features=enc.last_hidden_state, text_features=enc.text_features,
            vision_pos_encoding=enc.pos_embeds_flattened, text_mask=prompts.mask, spatial_shapes=enc.spatial_shapes,
        )
        queries = dec.intermediate_hidden_states[-1]
        boxes = (inverse_sigmoid(dec.reference_boxes[-1]) + det.detr_decoder.box_head(queries)).sigmoid()
        logits = det.dot_product_scoring(
            decoder_hidden_states=queries.unsqueeze(0), text_features=enc.text_features, text_mask=prompts.mask,
        )[0, ..., 0]
        presence = dec.presence_logits[-1]
        masks = det.mask_decoder(
            decoder_queries=queries, backbone_features=fpn, encoder_hidden_states=enc.last_hidden_state,
            prompt_features=prompts.features, prompt_mask=prompts.mask,
        ).pred_masks
        scores = logits.float().sigmoid() * presence.float().sigmoid()
        return DetectorOutput(scores=scores, boxes_xyxy=box_cxcywh_to_xyxy(boxes).float(), mask_logits=masks)


class _TrackerParts:
    """Shared access to the tracker's modules, and its mask decoder run on B tracks at once.

    ``Sam3TrackerVideoModel._single_frame_forward`` assumes one object per call (its multimask
    selection broadcasts wrongly for B > 1), so ``decode`` repeats its steps with batch-safe
    indexing, calling the same prompt encoder, mask decoder and pointer projection.
    """

    def __init__(self, loaded: LoadedSam3):
        self.tracker = loaded.model.tracker_model
        self.geometry = geometry_of(loaded)
        self.dtype = loaded.dtype

    @staticmethod
    def seq_first(t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (H*W, B, C), the tracker's internal layout."""
        return t.flatten(2).permute(2, 0, 1)

    def decode(self, vision: VisionFeatures, pix_feat: torch.Tensor, multimask: bool,
               mask_prompt: torch.Tensor | None = None, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None) -> TrackerOutput:
        """SAM mask decoder for B tracks. Points (B, 1, N, 2) and boxes (B, 1, 4) are in model pixels."""
        trk, g = self.tracker, self.geometry
        b = pix_feat.shape[0]
        if points is None and boxes is None:
            points = torch.zeros(b, 1, 1, 2, dtype=pix_feat.dtype, device=pix_feat.device)
            point_labels = -torch.ones(b, 1, 1, dtype=torch.int32, device=pix_feat.device)
        if mask_prompt is not None and mask_prompt.shape[-2:] != trk.prompt_encoder.mask_input_size:
            mask_prompt = F.interpolate(mask_prompt.float(), size=trk.prompt_encoder.mask_input_size,
                                        mode="bilinear", align_corners=False, antialias=True).to(mask_prompt.dtype)
        sparse, dense = trk.prompt_encoder(
            input_points=points, input_labels=point_labels, input_boxes=boxes, input_masks=mask_prompt)
        masks, iou, tokens, object_logits = trk.mask_decoder(
            image_embeddings=pix_feat,
            image_positional_embeddings=trk.get_image_wide_positional_embeddings().repeat(b, 1, 1, 1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=[broadcast_rows(f, b) for f in vision.trk_high_res],
        )
        masks, iou, tokens = masks[:, 0], iou[:, 0], tokens[:, 0]
        best = iou.argmax(dim=-1) if multimask else torch.zeros(b, dtype=torch.long, device=iou.device)
        rows = torch.arange(b, device=iou.device)
        object_logits = object_logits.reshape(b)
        visible = object_logits > 0
        low_res = torch.where(visible[:, None, None], masks[rows, best], NO_OBJ_SCORE)
        pointers = trk.object_pointer_proj(tokens[rows, best])
        weight = visible.to(pointers.dtype)[:, None]
        pointers = weight * pointers + (1 - weight) * trk.no_object_pointer
        return TrackerOutput(mask_logits=low_res.reshape(b, g.mask_size, g.mask_size),
                             object_logits=object_logits.float(), pointers=pointers)


class TorchTrackerStep(_TrackerParts):
    """Memory attention over each track's memory, then the SAM mask decoder, B tracks at once."""

    def __init__(self, loaded: LoadedSam3):
        super().__init__(loaded)
        g = self.geometry
        self.memory_pos = self.tracker.memory_encoder.position_encoding(
            (1, g.memory_dim, g.grid, g.grid), loaded.device, loaded.dtype
        ).flatten(2)[0].t()  # (s*s, Cm)
        self.multimask = self.tracker._use_multimask(False, None)

    def condition_on_memory(self, vision: VisionFeatures, memory: MemoryBatch) -> torch.Tensor:
        """Memory attention: (B, C, s, s) current features conditioned on each track's memory."""
        trk, g = self.tracker, self.geometry
        b, m, hw, cm = memory.spatial.shape
        p = memory.pointers.shape[1]
        dtype = self.dtype
        # Spatial memories; temporal slot 0 (conditioning) takes the last temporal encoding, as in SAM 2/3.
        temporal = trk.memory_temporal_positional_encoding[:, 0, 0, :]
        slot_enc = temporal[(memory.spatial_slot - 1) % g.num_maskmem]  # (B, M, Cm)
        spatial = memory.spatial.to(dtype).permute(1, 2, 0, 3).reshape(m * hw, b, cm)
        memory_pos = self.memory_pos.to(slot_enc.device)  # the model may have moved (offload on deactivate)
        spatial_pos = (memory_pos[None, None] + slot_enc[:, :, None, :]).permute(1, 2, 0, 3)
        spatial_pos = spatial_pos.reshape(m * hw, b, cm)
        # Object pointers, split into memory-width tokens, with a temporal sine encoding.
        splits = g.hidden // cm
        sine = get_1d_sine_pe(memory.pointer_offsets.float() / float(g.max_object_pointers - 1), dim=g.hidden)
        pointer_pos = trk.temporal_positional_encoding_projection_layer(sine.to(dtype)).permute(1, 0, 2)
        pointers = memory.pointers.to(dtype).permute(1, 0, 2).reshape(p, b, splits, cm)
        pointers = pointers.permute(0, 2, 1, 3).reshape(p * splits, b, cm)
        pointer_pos = pointer_pos.repeat_interleave(splits, dim=0)

        fused = trk.memory_attention(
            current_vision_features=self.seq_first(broadcast_rows(vision.trk_feat, b)),
            current_vision_position_embeddings=self.seq_first(broadcast_rows(vision.trk_pos, b)),
            memory=torch.cat([spatial, pointers], dim=0),
            memory_posision_embeddings=torch.cat([spatial_pos, pointer_pos], dim=0),
            num_object_pointer_tokens=p * splits,
        )  # (1, B, H*W, C)
        return fused.reshape(b, hw, g.hidden).transpose(1, 2).reshape(b, g.hidden, g.grid, g.grid)

    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, memory: MemoryBatch) -> TrackerOutput:
        return self.decode(vision, self.condition_on_memory(vision, memory), self.multimask)


class TorchRefiner(TorchTrackerStep):
    """Clicks and/or a box on top of a track's memory; multimask for a single click, as SAM 2 does."""

    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, memory: MemoryBatch, points: torch.Tensor | None,
                 point_labels: torch.Tensor | None, box: torch.Tensor | None) -> TrackerOutput:
        num_points = 0 if points is None else points.shape[2]
        cfg = self.tracker.config
        multimask = cfg.multimask_output_in_sam and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num
        dtype = self.dtype
        return self.decode(
            vision, self.condition_on_memory(vision, memory), multimask,
            points=None if points is None else points.to(dtype),
            point_labels=None if point_labels is None else point_labels.int(),
            boxes=None if box is None else box.to(dtype),
        )


class TorchMaskPrompter(_TrackerParts):
    """A track's conditioning frame from a mask: the mask is the output, the decoder makes the pointer.

    Mirrors ``Sam3TrackerVideoModel._use_mask_as_output`` for B masks at once.
    """

    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, masks: torch.Tensor) -> TrackerOutput:
        g = self.geometry
        b = masks.shape[0]
        size = (g.image_size, g.image_size)
        high_res = F.interpolate(masks.reshape(b, 1, g.mask_size, g.mask_size).float(), size=size,
                                 mode="bilinear", align_corners=False, antialias=True) > 0
        prompt = self.tracker.mask_downsample(high_res.to(self.dtype))
        out = self.decode(vision, broadcast_rows(vision.trk_feat, b), multimask=True, mask_prompt=prompt)
        visible = masks.reshape(b, -1).any(dim=1)
        weight = visible.to(out.pointers.dtype)[:, None]
        pointers = weight * out.pointers + (1 - weight) * self.tracker.no_object_pointer
        logits = torch.where(masks.reshape(b, g.mask_size, g.mask_size), MASK_PROMPT_LOGIT, -MASK_PROMPT_LOGIT)
        return TrackerOutput(mask_logits=logits, object_logits=torch.where(visible, 10.0, -10.0), pointers=pointers)


class TorchMemoryEncoder(_TrackerParts):
    @torch.no_grad()
    def __call__(self, vision: VisionFeatures, mask_logits: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
        b = mask_logits.shape[0]
        features, _ = self.tracker._encode_new_memory(
            current_vision_feats=self.seq_first(broadcast_rows(vision.trk_feat, b)),
            pred_masks_high_res=mask_logits.to(self.dtype).unsqueeze(1),
            object_score_logits=object_logits.to(self.dtype).reshape(b, 1, 1),
            is_mask_from_pts=False,
        )
        return features.permute(1, 0, 2)  # (B, s*s, Cm)


def torch_components(loaded: LoadedSam3) -> Sam3Components:
    return Sam3Components(
        name="torch",
        geometry=geometry_of(loaded),
        device=loaded.device,
        dtype=loaded.dtype,
        vision=TorchVision(loaded),
        text=TorchText(loaded),
        exemplars=TorchExemplars(loaded),
        detector=TorchDetector(loaded),
        tracker=TorchTrackerStep(loaded),
        mask_prompter=TorchMaskPrompter(loaded),
        memory_encoder=TorchMemoryEncoder(loaded),
        refiner=TorchRefiner(loaded),
        mixes_cameras=True,
    )
