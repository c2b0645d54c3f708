"""Each SAM 3 component as an ``nn.Module`` with tensor-only inputs and outputs, for export.

The graphs call the torch components (so an exported graph computes exactly what the torch
backend computes) and name every input and output. ``GRAPHS`` lists them with example inputs
and their dynamic axes, derived from the model geometry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..model.loading import LoadedSam3
from .base import MemoryBatch, ModelGeometry, PromptFeatures, VisionFeatures
from .torch_backend import torch_components

VISION_OUTPUTS = ("det_fpn0", "det_fpn1", "det_fpn2", "det_pos0", "det_pos1", "det_pos2",
                  "trk_hr0", "trk_hr1", "trk_feat", "trk_pos")


def vision_features(named: dict[str, torch.Tensor]) -> VisionFeatures:
    return VisionFeatures(
        det_fpn=(named["det_fpn0"], named["det_fpn1"], named["det_fpn2"]),
        det_fpn_pos=(named["det_pos0"], named["det_pos1"], named["det_pos2"]),
        trk_high_res=(named["trk_hr0"], named["trk_hr1"]),
        trk_feat=named["trk_feat"],
        trk_pos=named["trk_pos"],
    )


def vision_tensors(vision: VisionFeatures) -> dict[str, torch.Tensor]:
    values = (*vision.det_fpn, *vision.det_fpn_pos, *vision.trk_high_res, vision.trk_feat, vision.trk_pos)
    return dict(zip(VISION_OUTPUTS, values))


class _Graph(torch.nn.Module):
    def __init__(self, loaded: LoadedSam3):
        super().__init__()
        self.model = loaded.model  # registers the weights with the exported module
        self.components = torch_components(loaded)


class VisionGraph(_Graph):
    def forward(self, pixel_values):
        return tuple(vision_tensors(self.components.vision(pixel_values)).values())


class TextGraph(_Graph):
    def forward(self, input_ids, attention_mask):
        return self.components.text(input_ids, attention_mask).features


class ExemplarGraph(_Graph):
    def forward(self, det_fpn2, det_pos2, boxes_cxcywh, labels):
        # The geometry encoder reads only the last (s x s) level; the others are placeholders.
        vision = VisionFeatures((det_fpn2,) * 3, (det_pos2,) * 3, (det_fpn2, det_fpn2), det_fpn2, det_pos2)
        out = self.components.exemplars(vision, boxes_cxcywh, labels)
        return out.features, out.mask


class DetectorGraph(_Graph):
    def forward(self, det_fpn0, det_fpn1, det_fpn2, det_pos2, prompt_features, prompt_mask):
        vision = VisionFeatures((det_fpn0, det_fpn1, det_fpn2), (det_pos2, det_pos2, det_pos2),
                                (det_fpn0, det_fpn1), det_fpn2, det_pos2)
        out = self.components.detector(vision, PromptFeatures(prompt_features, prompt_mask))
        return out.scores, out.boxes_xyxy, out.mask_logits


class TrackerGraph(_Graph):
    def forward(self, trk_hr0, trk_hr1, trk_feat, trk_pos, spatial, spatial_slot, pointers, pointer_offsets):
        vision = _tracker_vision(trk_hr0, trk_hr1, trk_feat, trk_pos)
        out = self.components.tracker(vision, MemoryBatch(spatial, spatial_slot, pointers, pointer_offsets))
        return out.mask_logits, out.object_logits, out.pointers


class MaskPrompterGraph(_Graph):
    def forward(self, trk_hr0, trk_hr1, trk_feat, masks):
        out = self.components.mask_prompter(_tracker_vision(trk_hr0, trk_hr1, trk_feat, trk_feat), masks)
        return out.mask_logits, out.object_logits, out.pointers


class MemoryEncoderGraph(_Graph):
    def forward(self, trk_feat, mask_logits, object_logits):
        vision = _tracker_vision(trk_feat, trk_feat, trk_feat, trk_feat)
        return self.components.memory_encoder(vision, mask_logits, object_logits).float()  # stored as bf16


def _tracker_vision(hr0, hr1, feat, pos) -> VisionFeatures:
    return VisionFeatures((feat,) * 3, (pos,) * 3, (hr0, hr1), feat, pos)


@dataclass(frozen=True)
class GraphSpec:
    """One exportable component: its module, named example inputs, outputs and dynamic axes."""

    name: str
    module: type[_Graph]
    inputs: Callable[[ModelGeometry, torch.dtype, dict[str, int]], dict[str, torch.Tensor]]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: symbolic dimension name}

    def example(self, g: ModelGeometry, dtype: torch.dtype, seed: int = 0, **dims: int) -> dict[str, torch.Tensor]:
        """Random inputs; symbolic dimensions default to EXPORT_DIMS unless given."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.inputs(g, dtype, {**EXPORT_DIMS, **dims})


# Sizes of the dynamic dimensions in the traced examples (not 0 or 1: torch.export specialises those).
EXPORT_DIMS = {"concepts": 2, "prompt_tokens": 34, "boxes": 2, "tracks": 3, "memories": 4, "pointer_tokens": 5}


def _level(g: ModelGeometry, scale: int, channels: int, dtype) -> torch.Tensor:
    return torch.randn(1, channels, g.grid * scale, g.grid * scale, dtype=dtype)


def _vision_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(1, 3, g.image_size, g.image_size, dtype=dtype)}


def _text_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    ids = torch.randint(2, 200, (d["concepts"], 32))
    mask = torch.ones(d["concepts"], 32, dtype=torch.long)
    mask[:, torch.randint(4, 32, (1,)).item():] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _exemplar_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    n = d["boxes"]
    centres = torch.rand(1, n, 2) * 0.5 + 0.25
    sizes = torch.rand(1, n, 2) * 0.2 + 0.05
    return {"det_fpn2": _level(g, 1, g.hidden, dtype), "det_pos2": _level(g, 1, g.hidden, dtype),
            "boxes_cxcywh": torch.cat([centres, sizes], dim=2).to(dtype),
            "labels": torch.randint(0, 2, (1, n))}


def _detector_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    k, length = d["concepts"], d["prompt_tokens"]
    mask = torch.ones(k, length, dtype=torch.bool)
    mask[0, length // 2:] = False
    return {"det_fpn0": _level(g, 4, g.hidden, dtype), "det_fpn1": _level(g, 2, g.hidden, dtype),
            "det_fpn2": _level(g, 1, g.hidden, dtype), "det_pos2": _level(g, 1, g.hidden, dtype),
            "prompt_features": torch.randn(k, length, g.hidden, dtype=dtype), "prompt_mask": mask}


def _tracker_vision_inputs(g: ModelGeometry, dtype) -> dict[str, torch.Tensor]:
    return {"trk_hr0": _level(g, 4, g.hidden // 8, dtype), "trk_hr1": _level(g, 2, g.hidden // 4, dtype),
            "trk_feat": _level(g, 1, g.hidden, dtype)}


def _tracker_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    b, m, p = d["tracks"], d["memories"], d["pointer_tokens"]
    return {**_tracker_vision_inputs(g, dtype), "trk_pos": _level(g, 1, g.hidden, dtype),
            "spatial": torch.randn(b, m, g.grid * g.grid, g.memory_dim, dtype=dtype),
            "spatial_slot": torch.randint(0, g.num_maskmem, (b, m)),
            "pointers": torch.randn(b, p, g.hidden, dtype=dtype),
            "pointer_offsets": torch.randint(1, g.max_object_pointers, (b, p)).float()}


def _prompter_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    b, size = d["tracks"], g.mask_size
    masks = torch.zeros(b, size, size, dtype=torch.bool)
    for i in range(b - 1):  # the last one stays empty: an invisible object
        x, y = torch.randint(0, size // 2, (2,)).tolist()
        masks[i, y:y + size // 3, x:x + size // 4] = True
    return {**_tracker_vision_inputs(g, dtype), "masks": masks}


def _memory_inputs(g: ModelGeometry, dtype, d) -> dict[str, torch.Tensor]:
    b = d["tracks"]
    logits = torch.randn(b, g.mask_size, g.mask_size, dtype=dtype) * 10
    return {"trk_feat": _level(g, 1, g.hidden, dtype), "mask_logits": logits,
            "object_logits": torch.where(torch.rand(b) > 0.3, 10.0, -10.0).to(dtype)}


GRAPHS: tuple[GraphSpec, ...] = (
    GraphSpec("vision", VisionGraph, _vision_inputs, VISION_OUTPUTS, {}),
    GraphSpec("text", TextGraph, _text_inputs, ("prompt_features",),
              {"input_ids": {0: "concepts"}, "attention_mask": {0: "concepts"}}),
    GraphSpec("exemplars", ExemplarGraph, _exemplar_inputs, ("exemplar_features", "exemplar_mask"),
              {"boxes_cxcywh": {1: "boxes"}, "labels": {1: "boxes"}}),
    GraphSpec("detector", DetectorGraph, _detector_inputs, ("scores", "boxes_xyxy", "mask_logits"),
              {"prompt_features": {0: "concepts", 1: "prompt_tokens"}, "prompt_mask": {0: "concepts", 1: "prompt_tokens"}}),
    GraphSpec("tracker", TrackerGraph, _tracker_inputs, ("mask_logits", "object_logits", "object_pointers"),
              {"spatial": {0: "tracks", 1: "memories"}, "spatial_slot": {0: "tracks", 1: "memories"},
               "pointers": {0: "tracks", 1: "pointer_tokens"}, "pointer_offsets": {0: "tracks", 1: "pointer_tokens"}}),
    GraphSpec("mask_prompter", MaskPrompterGraph, _prompter_inputs, ("mask_logits", "object_logits", "object_pointers"),
              {"masks": {0: "tracks"}}),
    GraphSpec("memory_encoder", MemoryEncoderGraph, _memory_inputs, ("memory_features",),
              {"mask_logits": {0: "tracks"}, "object_logits": {0: "tracks"}}),
)
