"""One camera's tracking state inside a pipeline that may serve several cameras.

The model, the concepts and their encoded prompts are shared by every camera; what follows the
objects one camera sees is kept here: its tracks, their memory, its frame count and the requests
(resets, corrections) waiting for its next frame. Track IDs come from one allocator shared by all
cameras, so an ID names one object across the whole pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import PipelineConfig
from .memory_bank import TrackMemory
from .tracking import TrackIds, TrackManager

SINGLE_CAMERA = ""  # the camera of the single-stream API (Sam3Pipeline.step)


@dataclass(frozen=True)
class CameraFrame:
    """One camera's frame for a batched step."""

    image: np.ndarray          # (H, W, 3) uint8 RGB
    stamp_ns: int | None = None


@dataclass(frozen=True)
class RefineRequest:
    """A correction of one track, in image pixels: a box (x1, y1, x2, y2) and/or clicks (x, y, positive)."""

    track_id: int
    box_xyxy: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float, bool], ...] = ()


class CameraStream:
    def __init__(self, name: str, config: PipelineConfig, ids: TrackIds):
        self.name = name
        self.tracks = TrackManager(config.tracking, config.detection, ids)
        self.frame_index = 0
        self.image_size: tuple[int, int] | None = None  # (height, width) of its last frame
        self.memories: dict[int, TrackMemory] = {}
        self.last_visible_mask: dict[int, torch.Tensor] = {}  # low-res, for matching hidden tracks
        self.pending_removed: list[int] = []  # ended outside association: reported with the next frame
        self.pending_refines: list[RefineRequest] = []  # guarded by the pipeline's lock
        self.reset_requested = False                    # guarded by the pipeline's lock

    def forget(self, track_ids: list[int]) -> None:
        """Drop tracks removed outside association (prompt edits, resets); reported next frame."""
        self.drop_memory(track_ids)
        self.pending_removed.extend(track_ids)

    def drop_memory(self, track_ids) -> None:
        for tid in track_ids:
            self.memories.pop(tid, None)
            self.last_visible_mask.pop(tid, None)

    def take_removed(self, removed_now) -> list[int]:
        removed, self.pending_removed = self.pending_removed + list(removed_now), []
        return removed

    def recover_from_failed_frame(self) -> list[str]:
        """A frame that raised half-way may leave tracks born without memory: end them."""
        orphans = [tid for tid in self.tracks.live_ids if tid not in self.memories]
        for tid in orphans:
            self.tracks.drop_track(tid)
        self.forget(orphans)
        return [f"tracks {orphans} ended: the previous frame failed before their memory was written"] if orphans else []

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor kept between frames (memory features, pointers, last masks)."""
        kept = [t for m in self.memories.values() for e in (*m.recent, *m.conditioning) for t in (e.features, e.pointer)]
        return kept + list(self.last_visible_mask.values())
