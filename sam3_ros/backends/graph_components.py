"""Sam3Components over exported graphs (onnxruntime sessions or TensorRT engines).

A graph is any callable taking named torch tensors and returning its outputs as a list of
torch tensors, in the order of graphs.GRAPHS. Memory features are stored as bfloat16, like
the torch backend stores them.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import DetectorOutput, MemoryBatch, ModelGeometry, PromptFeatures, Sam3Components, TrackerOutput, VisionFeatures
from .graphs import GRAPHS, VISION_OUTPUTS, vision_features

Graph = Callable[..., list[torch.Tensor]]
REQUIRED = tuple(spec.name for spec in GRAPHS)


class MissingComponentError(RuntimeError):
    pass


def components_from_graphs(name: str, graphs: dict[str, Graph], geometry: ModelGeometry,
                           device: torch.device) -> Sam3Components:
    missing = set(REQUIRED) - set(graphs)
    if missing:
        raise MissingComponentError(f"the {name} backend lacks components {sorted(missing)}: export them")
    g = graphs

    def vision(pixel_values) -> VisionFeatures:
        return vision_features(dict(zip(VISION_OUTPUTS, g["vision"](pixel_values=pixel_values))))

    def text(input_ids, attention_mask) -> PromptFeatures:
        (features,) = g["text"](input_ids=input_ids, attention_mask=attention_mask)
        return PromptFeatures(features, attention_mask.bool().to(features.device))

    def exemplars(v: VisionFeatures, boxes_cxcywh, labels) -> PromptFeatures:
        features, mask = g["exemplars"](det_fpn2=v.det_fpn[-1], det_pos2=v.det_fpn_pos[-1],
                                        boxes_cxcywh=boxes_cxcywh, labels=labels)
        return PromptFeatures(features, mask.bool())

    def detector(v: VisionFeatures, prompts: PromptFeatures) -> DetectorOutput:
        scores, boxes, masks = g["detector"](det_fpn0=v.det_fpn[0], det_fpn1=v.det_fpn[1], det_fpn2=v.det_fpn[2],
                                             det_pos2=v.det_fpn_pos[2], prompt_features=prompts.features,
                                             prompt_mask=prompts.mask)
        return DetectorOutput(scores=scores, boxes_xyxy=boxes, mask_logits=masks)

    def tracker(v: VisionFeatures, memory: MemoryBatch) -> TrackerOutput:
        return TrackerOutput(*g["tracker"](**_tracker_vision(v), trk_pos=v.trk_pos, spatial=memory.spatial,
                                           spatial_slot=memory.spatial_slot, pointers=memory.pointers,
                                           pointer_offsets=memory.pointer_offsets))

    def mask_prompter(v: VisionFeatures, masks) -> TrackerOutput:
        return TrackerOutput(*g["mask_prompter"](**_tracker_vision(v), masks=masks))

    def memory_encoder(v: VisionFeatures, mask_logits, object_logits) -> torch.Tensor:
        (features,) = g["memory_encoder"](trk_feat=v.trk_feat, mask_logits=mask_logits, object_logits=object_logits)
        return features.to(torch.bfloat16)

    return Sam3Components(name=name, geometry=geometry, device=device, dtype=torch.float32, vision=vision,
                          text=text, exemplars=exemplars, detector=detector, tracker=tracker,
                          mask_prompter=mask_prompter, memory_encoder=memory_encoder)


def _tracker_vision(v: VisionFeatures) -> dict[str, torch.Tensor]:
    return {"trk_hr0": v.trk_high_res[0], "trk_hr1": v.trk_high_res[1], "trk_feat": v.trk_feat}
