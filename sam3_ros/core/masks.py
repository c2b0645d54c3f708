"""Binary masks as COCO run-length encoding (RLE), plus the mask geometry we publish.

COCO "uncompressed" RLE: ``counts`` are alternating run lengths of 0s and 1s over the
mask flattened in column-major (Fortran) order, always starting with a run of 0s
(possibly of length 0). ``size`` is ``[height, width]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class MaskCrop:
    """A mask's pixels inside its tight box: ``bits`` is (h, w) bool with its top-left pixel at
    (x1, y1) of the image; the box is (x1, y1, x1 + w, y1 + h) in pixel edges."""

    x1: int
    y1: int
    bits: np.ndarray

    @property
    def x2(self) -> int:
        return self.x1 + self.bits.shape[1]

    @property
    def y2(self) -> int:
        return self.y1 + self.bits.shape[0]

    def region(self, image: np.ndarray) -> np.ndarray:
        """The view of an (H, W, ...) image under the crop's box."""
        return image[self.y1:self.y2, self.x1:self.x2]

    def paste(self, image: np.ndarray, value) -> None:
        """Set the mask's pixels of ``image`` to ``value``."""
        self.region(image)[self.bits] = value

    def to_array(self, height: int, width: int) -> np.ndarray:
        """The full (height, width) boolean mask."""
        full = np.zeros((height, width), dtype=bool)
        self.paste(full, True)
        return full

    @classmethod
    def of(cls, mask: np.ndarray) -> "MaskCrop | None":
        """The tight crop of an (H, W) boolean array; None when it is empty."""
        box = mask_bbox_xyxy(mask)
        if box is None:
            return None
        x1, y1, x2, y2 = (int(v) for v in box)
        return cls(x1, y1, np.ascontiguousarray(mask[y1:y2, x1:x2], dtype=bool))


@dataclass(frozen=True)
class RleMask:
    """A lossless binary mask of an image of ``height`` x ``width`` pixels.

    It may carry its tight crop (``MaskCrop``), as the pipeline's masks do, so that consumers read
    pixels without decoding the RLE; ``crop()`` decodes only for a mask made without one.
    """

    height: int
    width: int
    counts: tuple[int, ...]
    _crop: MaskCrop | None = field(default=None, compare=False, repr=False)

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
        crop = MaskCrop.of(mask.cpu().numpy().astype(bool, copy=False))
        return cls(int(height), int(width), _run_lengths(mask.bool().t().reshape(-1)), crop)

    @classmethod
    def from_coco(cls, rle: dict) -> "RleMask":
        height, width = rle["size"]
        return cls(int(height), int(width), tuple(int(c) for c in rle["counts"]))

    def to_coco(self) -> dict:
        return {"size": [self.height, self.width], "counts": list(self.counts)}

    def crop(self) -> MaskCrop | None:
        """The mask inside its tight box (None when empty); decoded from the RLE only if missing."""
        if self._crop is None and self.area > 0:
            object.__setattr__(self, "_crop", MaskCrop.of(self._decode()))
        return self._crop

    def to_array(self) -> np.ndarray:
        """The full (H, W) boolean numpy array."""
        crop = self.crop()
        return crop.to_array(self.height, self.width) if crop is not None else \
            np.zeros((self.height, self.width), dtype=bool)

    def _decode(self) -> np.ndarray:
        values = np.zeros(len(self.counts), dtype=bool)
        values[1::2] = True
        flat = np.repeat(values, self.counts)
        return flat.reshape(self.width, self.height).T

    @property
    def area(self) -> int:
        return int(sum(self.counts[1::2]))

    def bbox_xyxy(self) -> tuple[float, float, float, float] | None:
        """Tight box around the mask in pixel-edge coordinates, or None if empty."""
        crop = self.crop()
        return None if crop is None else (float(crop.x1), float(crop.y1), float(crop.x2), float(crop.y2))


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
