"""A scripted stand-in for the SAM 3 network, for testing association and track life cycle.

ScriptedComponents implements every component interface of ``Sam3Components`` from a
scripted scene of moving rectangles: the "detector" reports the rectangles of a concept
that the script says are detected, and the "tracker" behaves like an ideal memory tracker
(it follows whichever object overlaps the mask stored in the track's memory, and reports it
invisible while it is occluded). The real pipeline, memory bank and track manager run on
top of it. This is a test double for the network only; nothing here ships.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from sam3_ros.backends.base import (
    DetectorOutput,
    MemoryBatch,
    ModelGeometry,
    PromptFeatures,
    Sam3Components,
    TrackerOutput,
    VisionFeatures,
)

GRID = 16
MASK = 64          # low-res mask side; images are MASK x MASK so masks map 1:1
QUERIES = 8
HIDDEN = 128
MEMORY_DIM = 64


@dataclass
class ScriptedObject:
    concept: str                                   # the phrase that finds it
    box_at: Callable[[int], tuple[int, int, int, int]]  # frame -> (x1, y1, x2, y2) in pixels
    score: float = 0.9
    occluded: Callable[[int], bool] = lambda frame: False
    detected: Callable[[int], bool] = lambda frame: True

    def mask(self, frame: int) -> np.ndarray:
        out = np.zeros((MASK, MASK), dtype=bool)
        if not self.occluded(frame):
            x1, y1, x2, y2 = self.box_at(frame)
            out[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
        return out


def static(x1: int, y1: int, x2: int, y2: int) -> Callable[[int], tuple[int, int, int, int]]:
    return lambda frame: (x1, y1, x2, y2)


def moving(x1: int, y1: int, size: int, dx: float) -> Callable[[int], tuple[int, int, int, int]]:
    return lambda frame: (int(x1 + dx * frame), y1, int(x1 + dx * frame) + size, y1 + size)


@dataclass
class ScriptedScene:
    objects: list[ScriptedObject]
    frame: int = -1
    tracker_calls: list[int] = field(default_factory=list)  # batch sizes of tracker calls

    def image(self) -> np.ndarray:
        return np.zeros((MASK, MASK, 3), dtype=np.uint8)


class ScriptedComponents:
    """Builds a Sam3Components whose components follow a ScriptedScene."""

    def __init__(self, scene: ScriptedScene, tokenizer, long_memory: bool = True):
        self.scene = scene
        self.tokenizer = tokenizer
        self.long_memory = long_memory  # False: only the newest memory entry, so occluded tracks are lost
        self.phrases: list[str] = []

    def components(self) -> Sam3Components:
        geometry = ModelGeometry(image_size=MASK, grid=GRID, mask_size=MASK, hidden=HIDDEN, memory_dim=MEMORY_DIM,
                                 num_maskmem=7, max_object_pointers=16, num_queries=QUERIES)
        return Sam3Components(
            name="scripted", geometry=geometry, device=torch.device("cpu"), dtype=torch.float32,
            vision=self.vision, text=self.text, exemplars=self.exemplars, detector=self.detector,
            tracker=self.tracker, mask_prompter=self.mask_prompter, memory_encoder=self.memory_encoder,
        )

    # -- components ---------------------------------------------------------------------------------------
    def vision(self, pixel_values: torch.Tensor) -> VisionFeatures:
        self.scene.frame += 1
        zero = torch.zeros(1, HIDDEN, GRID, GRID)
        return VisionFeatures((zero,) * 3, (zero,) * 3, (zero, zero), zero, zero)

    def text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptFeatures:
        phrase = self.tokenizer.decode(input_ids[0], skip_special_tokens=True).strip()
        if phrase not in self.phrases:
            self.phrases.append(phrase)
        features = torch.zeros(input_ids.shape[0], input_ids.shape[1], HIDDEN)
        features[:, 0, 0] = self.phrases.index(phrase)
        return PromptFeatures(features, attention_mask.bool())

    def exemplars(self, vision, boxes_cxcywh, labels) -> PromptFeatures:
        n = boxes_cxcywh.shape[1] + 1
        return PromptFeatures(torch.zeros(1, n, HIDDEN), torch.ones(1, n, dtype=torch.bool))

    def detector(self, vision: VisionFeatures, prompts: PromptFeatures) -> DetectorOutput:
        k = prompts.features.shape[0]
        scores = torch.zeros(k, QUERIES)
        masks = torch.full((k, QUERIES, MASK, MASK), -10.0)
        frame = self.scene.frame
        for row in range(k):
            phrase = self.phrases[int(prompts.features[row, 0, 0])]
            found = [o for o in self.scene.objects
                     if o.concept == phrase and o.detected(frame) and o.mask(frame).any()]
            for q, obj in enumerate(found[:QUERIES]):
                scores[row, q] = obj.score
                masks[row, q] = torch.where(torch.from_numpy(obj.mask(frame)), 10.0, -10.0)
        return DetectorOutput(scores=scores, boxes_xyxy=torch.zeros(k, QUERIES, 4), mask_logits=masks)

    def tracker(self, vision: VisionFeatures, memory: MemoryBatch) -> TrackerOutput:
        self.scene.tracker_calls.append(memory.spatial.shape[0])
        frame = self.scene.frame
        masks = []
        for b in range(memory.spatial.shape[0]):
            remembered = _remembered_mask(memory, b, self.long_memory)
            masks.append(self._follow(remembered, frame))
        masks = torch.stack(masks)
        visible = masks.flatten(1).any(dim=1)
        return TrackerOutput(mask_logits=torch.where(masks, 10.0, -10.0),
                             object_logits=torch.where(visible, 5.0, -5.0),
                             pointers=torch.zeros(len(masks), HIDDEN))

    def mask_prompter(self, vision: VisionFeatures, masks: torch.Tensor) -> TrackerOutput:
        visible = masks.flatten(1).any(dim=1)
        return TrackerOutput(mask_logits=torch.where(masks, 50.0, -50.0),
                             object_logits=torch.where(visible, 10.0, -10.0),
                             pointers=torch.zeros(len(masks), HIDDEN))

    def memory_encoder(self, vision: VisionFeatures, mask_logits: torch.Tensor, object_logits: torch.Tensor):
        """Stores each mask, max-pooled to the feature grid, in channel 0 of the memory."""
        pooled = torch.nn.functional.max_pool2d((mask_logits > 0).float()[:, None], MASK // GRID)[:, 0]
        features = torch.zeros(mask_logits.shape[0], GRID * GRID, MEMORY_DIM)
        features[:, :, 0] = pooled.flatten(1)
        return features

    # -- an ideal tracker -----------------------------------------------------------------------------------
    def _follow(self, remembered: torch.Tensor, frame: int) -> torch.Tensor:
        best, best_overlap = None, 0
        for obj in self.scene.objects:
            current = torch.from_numpy(obj.mask(frame))
            overlap = int((current & remembered).sum())
            if overlap > best_overlap:
                best, best_overlap = current, overlap
        return best if best is not None else torch.zeros(MASK, MASK, dtype=torch.bool)


def _remembered_mask(memory: MemoryBatch, b: int, long_memory: bool) -> torch.Tensor:
    """Newest non-empty remembered mask (or just the newest one).

    Conditioning entries (slot 0) come first in both the spatial and the pointer lists, so their
    ages are the first pointer offsets; other entries are ``slot`` frames old.
    """
    slots = memory.spatial_slot[b].tolist()
    offsets = memory.pointer_offsets[b].tolist()
    ages = [offsets[i] if slot == 0 else slot for i, slot in enumerate(slots)]
    newest_first = sorted(range(len(slots)), key=lambda i: ages[i])
    masks = [_decode(memory.spatial[b, i]) for i in newest_first]
    if not long_memory:
        return masks[0]
    return next((m for m in masks if m.any()), masks[0])


def _decode(features: torch.Tensor) -> torch.Tensor:
    grid = features[:, 0].reshape(GRID, GRID) > 0
    return grid.repeat_interleave(MASK // GRID, 0).repeat_interleave(MASK // GRID, 1)
