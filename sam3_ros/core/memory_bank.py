"""Bounded per-track memory for the SAM 3 tracker.

The tracker attends to (as in SAM 2/3 streaming): the most recent conditioning frames
(slot 0), the non-conditioning frames of the last ``num_maskmem - 1`` frames (slot k = k
frames ago), and object pointers of conditioning frames and of the last
``max_object_pointers - 1`` frames. Everything older is dropped, so a track's memory has a
fixed upper size however long it lives; nothing accumulates per frame.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..backends.base import MemoryBatch


@dataclass(frozen=True)
class MemoryEntry:
    frame_index: int
    features: torch.Tensor  # (s*s, Cm) encoded mask memory
    pointer: torch.Tensor   # (C,) object pointer
    conditioning: bool


class TrackMemory:
    def __init__(self, num_maskmem: int, max_cond_frames: int, max_object_pointers: int):
        self.recent_frames = num_maskmem - 1
        self.recent_pointers = max_object_pointers - 1
        self.conditioning: deque[MemoryEntry] = deque(maxlen=max_cond_frames)
        self.recent: deque[MemoryEntry] = deque(maxlen=max(self.recent_frames, self.recent_pointers))

    def add(self, entry: MemoryEntry) -> None:
        if self.recent and entry.frame_index <= self.recent[-1].frame_index:
            raise ValueError("memory entries must be added in increasing frame order")
        self.recent.append(entry)
        if entry.conditioning:
            self.conditioning.append(entry)

    def __len__(self) -> int:
        return len({id(e) for e in (*self.recent, *self.conditioning)})

    def select(self, frame_index: int) -> tuple[list[tuple[int, MemoryEntry]], list[tuple[int, MemoryEntry]]]:
        """Memory for ``frame_index``: (slot, entry) spatial memories and (offset, entry) pointers."""
        if not self.conditioning:
            raise RuntimeError("a track needs a conditioning frame before it can be propagated")
        conditioning = list(self.conditioning)
        by_frame = {e.frame_index: e for e in self.recent}
        spatial = [(0, e) for e in conditioning]
        for offset in range(self.recent_frames, 0, -1):
            entry = by_frame.get(frame_index - offset)
            if entry is not None and not entry.conditioning:
                spatial.append((offset, entry))
        pointers = [(frame_index - e.frame_index, e) for e in conditioning]
        for offset in range(1, self.recent_pointers + 1):
            entry = by_frame.get(frame_index - offset)
            if entry is not None and not entry.conditioning:
                pointers.append((offset, entry))
        return spatial, pointers


def layout_key(memory: TrackMemory, frame_index: int) -> tuple[int, int]:
    spatial, pointers = memory.select(frame_index)
    return len(spatial), len(pointers)


def batch_memories(memories: list[TrackMemory], frame_index: int | Sequence[int]) -> MemoryBatch:
    """Stack the memories of tracks that share a layout into one MemoryBatch. ``frame_index`` is the
    current frame of every track, or one per track (tracks of cameras at different frame counts)."""
    frames = [frame_index] * len(memories) if isinstance(frame_index, int) else list(frame_index)
    selections = [m.select(frame) for m, frame in zip(memories, frames, strict=True)]
    if len({(len(s), len(p)) for s, p in selections}) != 1:
        raise ValueError("tracks batched together must have the same memory layout")
    device = selections[0][0][0][1].features.device
    return MemoryBatch(
        spatial=torch.stack([torch.stack([e.features for _, e in s]) for s, _ in selections]),
        spatial_slot=torch.tensor([[slot for slot, _ in s] for s, _ in selections], device=device),
        pointers=torch.stack([torch.stack([e.pointer for _, e in p]) for _, p in selections]),
        pointer_offsets=torch.tensor([[float(o) for o, _ in p] for _, p in selections], device=device),
    )
