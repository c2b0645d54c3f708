"""Binary masks as COCO run-length encoding (RLE), plus the mask geometry we publish.

COCO "uncompressed" RLE: ``counts`` are alternating run lengths of 0s and 1s over the
mask flattened in column-major (Fortran) order, always starting with a run of 0s
(possibly of length 0). ``size`` is ``[height, width]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RleMask:
    """A lossless binary mask of an image of ``height`` x ``width`` pixels."""

    height: int
    width: int
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if sum(self.counts) != self.height * self.width:
            raise ValueError(
                f"RLE counts sum to {sum(self.counts)}, expected {self.height}x{self.width}"
            )

    @classmethod
    def from_array(cls, mask: np.ndarray | torch.Tensor) -> "RleMask":
        """Encode an (H, W) boolean mask (numpy array or torch tensor on any device)."""
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(np.ascontiguousarray(mask))
        if mask.ndim != 2:
            raise ValueError(f"expected an (H, W) mask, got shape {tuple(mask.shape)}")
        height, width = mask.shape
        return cls(int(height), int(width), _run_lengths(mask.bool().t().reshape(-1)))

    @classmethod
    def from_coco(cls, rle: dict) -> "RleMask":
        height, width = rle["size"]
        return cls(int(height), int(width), tuple(int(c) for c in rle["counts"]))

    def to_coco(self) -> dict:
        return {"size": [self.height, self.width], "counts": list(self.counts)}

    def to_array(self) -> np.ndarray:
        """Decode to an (H, W) boolean numpy array."""
        values = np.zeros(len(self.counts), dtype=bool)
        values[1::2] = True
        flat = np.repeat(values, self.counts)
        return flat.reshape(self.width, self.height).T

    @property
    def area(self) -> int:
        return int(sum(self.counts[1::2]))

    def bbox_xyxy(self) -> tuple[float, float, float, float] | None:
        """Tight box around the mask in pixel-edge coordinates, or None if empty."""
        if self.area == 0:
            return None
        mask = self.to_array()
        return mask_bbox_xyxy(mask)


def mask_bbox_xyxy(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x1, y1, x2, y2) with x2/y2 exclusive pixel edges; None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def masks_bbox_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of a batch of (N, H, W) boolean masks; empty masks give all zeros."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros(0, 4, device=masks.device)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    row_idx = torch.arange(height, device=masks.device)
    col_idx = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    y1 = torch.where(rows, row_idx, big).amin(dim=1)
    y2 = torch.where(rows, row_idx, -1).amax(dim=1) + 1
    x1 = torch.where(cols, col_idx, big).amin(dim=1)
    x2 = torch.where(cols, col_idx, -1).amax(dim=1) + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return torch.where(rows.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))


def _run_lengths(flat: torch.Tensor) -> tuple[int, ...]:
    """Run lengths of a flat boolean tensor, starting with a (possibly empty) run of 0s."""
    total = flat.numel()
    if total == 0:
        return (0,)
    change = torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1
    edges = np.concatenate(([0], change.cpu().numpy(), [total]))
    counts = np.diff(edges).tolist()
    if bool(flat[0]):
        counts.insert(0, 0)
    return tuple(int(c) for c in counts)
