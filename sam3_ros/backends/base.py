"""The SAM 3 components the pipeline calls, as backend-neutral interfaces.

Every tensor that crosses a component boundary is named here, with its layout, so that a
backend (torch, onnxruntime, TensorRT) can implement a component as one graph. Shapes use
S = model input size, s = S // 14 (feature grid), h = 4 * s (low-res masks), C = model width,
Cm = tracker memory width, K = concepts, Q = detector queries, B = tracks.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch


@dataclass
class ModelGeometry:
    """Sizes fixed by the checkpoint."""

    image_size: int            # S
    grid: int                  # s
    mask_size: int             # h, low-res mask side
    hidden: int                # C
    memory_dim: int            # Cm
    num_maskmem: int           # spatial memories attended to: 1 conditioning slot + recent frames
    max_object_pointers: int
    num_queries: int           # Q


@dataclass
class VisionFeatures:
    """One frame's image features, shared by the detector and the tracker."""

    det_fpn: tuple[torch.Tensor, ...]      # 3 levels (1, C, 4s, 4s), (1, C, 2s, 2s), (1, C, s, s)
    det_fpn_pos: tuple[torch.Tensor, ...]  # sine position encodings of the same shapes
    trk_high_res: tuple[torch.Tensor, ...] # (1, C/8, 4s, 4s), (1, C/4, 2s, 2s): tracker skip features
    trk_feat: torch.Tensor                 # (1, C, s, s): tracker top-level feature
    trk_pos: torch.Tensor                  # (1, C, s, s)

    # Several cameras' frames are one batch: row i of every tensor is camera i.
    @property
    def batch(self) -> int:
        return self.trk_feat.shape[0]

    def for_rows(self, cameras: list[int]) -> "VisionFeatures":
        """The features for a component call whose rows come from these cameras (batch rows).

        Rows of one camera get that camera's batch-1 features, which components broadcast; rows of
        several cameras get one gathered row each (only for components that mix cameras), gathered
        only for the fields the component reads.
        """
        first = cameras[0]
        if all(c == first for c in cameras):
            return self if self.batch == 1 else self._map(lambda t: t[first:first + 1])
        return GatheredRows(self, torch.tensor(cameras, device=self.trk_feat.device))

    @staticmethod
    def cat(parts: "list[VisionFeatures]") -> "VisionFeatures":
        """One batch from per-camera features."""
        if len(parts) == 1:
            return parts[0]
        return VisionFeatures(*(_cat_field([getattr(p, f.name) for p in parts]) for f in fields(VisionFeatures)))

    def _map(self, fn) -> "VisionFeatures":
        return VisionFeatures(*(_map_field(fn, getattr(self, f.name)) for f in fields(self)))


# Sine position encodings depend on the feature map's shape only: every camera's are the same.
SAME_FOR_EVERY_CAMERA = frozenset({"det_fpn_pos", "trk_pos"})


class GatheredRows:
    """VisionFeatures for rows of several cameras, each field gathered on first read (a detector call
    never reads the tracker's features, a memory-encoder call reads one field); position encodings
    stay batch 1, which components broadcast."""

    def __init__(self, source: VisionFeatures, index: torch.Tensor):
        self._source, self._index = source, index

    @property
    def batch(self) -> int:
        return len(self._index)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._source, name)
        if name in SAME_FOR_EVERY_CAMERA:
            gathered = _map_field(lambda t: t[:1], value)
        else:
            gathered = _map_field(lambda t: t.index_select(0, self._index), value)
        setattr(self, name, gathered)  # read once: later reads find the attribute
        return gathered


def _map_field(fn, value):
    return tuple(fn(t) for t in value) if isinstance(value, tuple) else fn(value)


def _cat_field(values: list):
    if isinstance(values[0], tuple):
        return tuple(torch.cat(level) for level in zip(*values))
    return torch.cat(values)


def broadcast_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """``t`` with ``rows`` rows: batch-1 features are expanded (no copy), per-row ones kept."""
    return t if t.shape[0] == rows else t.expand(rows, *t.shape[1:])


@dataclass
class PromptFeatures:
    """Concept tokens for the detector: text tokens, then exemplar tokens, padded per batch."""

    features: torch.Tensor  # (K, L, C)
    mask: torch.Tensor      # (K, L) bool, True = real token


@dataclass
class DetectorOutput:
    scores: torch.Tensor       # (K, Q) P(class) * P(presence)
    boxes_xyxy: torch.Tensor   # (K, Q, 4) normalised to [0, 1]
    mask_logits: torch.Tensor  # (K, Q, h, w)


@dataclass
class MemoryBatch:
    """Memory of B tracks with identical memory layout (same number of entries)."""

    spatial: torch.Tensor          # (B, M, s*s, Cm) encoded masks of earlier frames
    spatial_slot: torch.Tensor     # (B, M) long, temporal slot: 0 = conditioning, k = k frames ago
    pointers: torch.Tensor         # (B, P, C) object pointers
    pointer_offsets: torch.Tensor  # (B, P) float, frames between pointer and current frame


@dataclass
class TrackerOutput:
    mask_logits: torch.Tensor    # (B, h, w)
    object_logits: torch.Tensor  # (B,) > 0 means the object is visible
    pointers: torch.Tensor       # (B, C)


class VisionEncoder(Protocol):
    def __call__(self, pixel_values: torch.Tensor) -> VisionFeatures: ...


class TextEncoder(Protocol):
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PromptFeatures: ...


class ExemplarEncoder(Protocol):
    def __call__(self, vision: VisionFeatures, boxes_cxcywh: torch.Tensor, labels: torch.Tensor) -> PromptFeatures:
        """boxes (1, N, 4) normalised cx, cy, w, h; labels (1, N) long, 1 positive, 0 negative."""


class DetectorHead(Protocol):
    def __call__(self, vision: VisionFeatures, prompts: PromptFeatures) -> DetectorOutput: ...


class TrackerStep(Protocol):
    def __call__(self, vision: VisionFeatures, memory: MemoryBatch) -> TrackerOutput:
        """Memory attention + mask decoder for B tracks at once."""


class TrackRefiner(Protocol):
    def __call__(self, vision: VisionFeatures, memory: MemoryBatch, points: torch.Tensor | None,
                 point_labels: torch.Tensor | None, box: torch.Tensor | None) -> TrackerOutput:
        """One track's mask corrected by clicks (1, 1, N, 2) with labels (1, 1, N) and/or a box (1, 1, 4),
        in model-input pixels, on top of its memory (SAM 2 style interactive refinement)."""


class MaskPrompter(Protocol):
    def __call__(self, vision: VisionFeatures, masks: torch.Tensor) -> TrackerOutput:
        """Start (or restart) tracks from (B, h, w) bool masks; returns their pointers."""


class MemoryEncoder(Protocol):
    def __call__(self, vision: VisionFeatures, mask_logits: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
        """(B, h, w) mask logits -> (B, s*s, Cm) memory features (bfloat16)."""


@dataclass
class Sam3Components:
    """One backend's implementation of every component, plus what the pipeline must know."""

    name: str
    geometry: ModelGeometry
    device: torch.device
    dtype: torch.dtype
    vision: VisionEncoder
    text: TextEncoder
    exemplars: ExemplarEncoder
    detector: DetectorHead
    tracker: TrackerStep
    mask_prompter: MaskPrompter
    memory_encoder: MemoryEncoder
    refiner: TrackRefiner | None = None  # None: the backend cannot refine tracks interactively
    # True: the detector, tracker, mask prompter and memory encoder take vision features with one
    # row per call row, so one call serves several cameras. False (batch-1 graphs): one call per camera.
    mixes_cameras: bool = False
