"""One frame's masks at camera resolution, made once, batched, on the model's device.

``upsample_masks`` is the single owner of per-pixel mask work. From the instances' low-res mask
logits (N, h, w) it:

1. finds each instance's region at image resolution: the pixels whose bilinear interpolation can
   read one of the instance's positive low-res pixels;
2. groups instances by region size (padding a group to its largest region wastes at most half)
   and interpolates each group's regions in two batched passes of whole-row copies and blends
   (along x, then y, as ``F.interpolate(mode="bilinear", align_corners=False)`` does; never the
   full frame), then thresholds at 0;
3. finds the RLE edges (column-major, full-frame positions) of every region in one pass;
4. brings the regions (4 integers per instance), then the whole batch (edges and region bits) to
   the host: two transfers per frame, whatever the number of instances.

On the host each instance gets its tight box (from its edges) and an ``RleMask`` that carries its
tight crop, so 3D, the ID image, the overlay, focus and the offline runner read pixels without
decoding RLE. Host work is a few numpy slices per instance.

A region's values equal the full-frame interpolation's up to float rounding (same operations and
order; the blend may fuse a multiply-add), so a pixel whose logit is within a few ulps of 0 may
fall on the other side of the threshold. test/test_host_path.py bounds that.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .masks import MaskCrop, RleMask

PADDING_LIMIT = 1.5  # a group of regions padded to one size holds at most this many times their pixels


@dataclass(frozen=True)
class UpsampledMasks:
    """Masks of N instances at image resolution. ``masks[i]`` is None where instance i has no
    pixel left at image resolution; ``boxes[i]`` is its tight (x1, y1, x2, y2), pixel edges."""

    masks: list[RleMask | None]
    boxes: list[tuple[float, float, float, float] | None]


def upsample_masks(logits: torch.Tensor, image_size: tuple[int, int]) -> UpsampledMasks:
    """(N, h, w) mask logits on any device -> RLE masks with crops and tight boxes at ``image_size``."""
    height, width = image_size
    n = logits.shape[0]
    if n == 0:
        return UpsampledMasks([], [])
    logits = logits.float()
    rows = _axis_sampling(logits.shape[1], height, str(logits.device))
    cols = _axis_sampling(logits.shape[2], width, str(logits.device))
    regions = _regions(logits, rows, cols).cpu().numpy()  # transfer 1: (N, 4) y1, y2, x1, x2
    parts, layout = [], []
    for members in _buckets(regions):
        bits, edges = _bucket_masks(logits, regions[members], members, rows, cols, height, width)
        parts += [edges.flatten(), _as_int32(bits)]
        layout.append((members, tuple(bits.shape), len(edges)))
    if not parts:
        return UpsampledMasks([None] * n, [None] * n)
    batch = torch.cat([p.int() for p in parts]).cpu().numpy()  # transfer 2: the whole batch
    return _on_host(batch, layout, regions, n, height, width)


# -- device side -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _AxisSampling:
    """Bilinear sampling along one axis of ``F.interpolate(..., align_corners=False)``: output
    index i reads source indices ``low[i]`` and ``high[i]`` with weights 1 - ``frac[i]``, ``frac[i]``."""

    low: torch.Tensor
    high: torch.Tensor
    frac: torch.Tensor
    low_host: np.ndarray
    high_host: np.ndarray


@lru_cache(maxsize=16)
def _axis_sampling(source: int, output: int, device: str) -> _AxisSampling:
    scale = np.float32(source) / np.float32(output)
    src = (np.arange(output, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    low = src.astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    frac = src - low.astype(np.float32)
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return _AxisSampling(as_tensor(low), as_tensor(high), as_tensor(frac), low, high)


def _regions(logits: torch.Tensor, rows: _AxisSampling, cols: _AxisSampling) -> torch.Tensor:
    """(N, 4) long: y1, y2, x1, x2 of the output pixels that read a positive low-res pixel."""
    y1, y2 = _span(logits.amax(dim=2) > 0, rows)
    x1, x2 = _span(logits.amax(dim=1) > 0, cols)
    return torch.stack([y1, y2, x1, x2], dim=1)


def _span(any_positive: torch.Tensor, axis: _AxisSampling) -> tuple[torch.Tensor, torch.Tensor]:
    """Output index range [start, stop) whose two source taps reach a positive source index."""
    n, source = any_positive.shape
    index = torch.arange(source, device=any_positive.device)
    first = torch.where(any_positive, index, source).amin(dim=1)
    last = torch.where(any_positive, index, -1).amax(dim=1)
    # Output i reads low[i] and high[i] = low[i] + 1 (clamped): it can be positive only if
    # first - 1 <= low[i] <= last. low is non-decreasing, so that is one index range.
    start = torch.searchsorted(axis.low, first - 1)
    stop = torch.searchsorted(axis.low, last, right=True)
    empty = last < 0
    return torch.where(empty, 0, start), torch.where(empty, 0, stop)


def _buckets(regions: np.ndarray) -> list[list[int]]:
    """Instances grouped so that padding each group's regions to its largest wastes little:
    largest first, a group closes when padded pixels would exceed PADDING_LIMIT x its real ones."""
    heights, widths = regions[:, 1] - regions[:, 0], regions[:, 3] - regions[:, 2]
    areas = heights * widths
    buckets: list[list[int]] = []
    current: list[int] = []
    max_h = max_w = total = 0
    for i in np.argsort(-areas, kind="stable"):
        if areas[i] == 0:
            break  # nothing positive: no mask
        grown_h, grown_w = max(max_h, heights[i]), max(max_w, widths[i])
        if current and (len(current) + 1) * grown_h * grown_w > PADDING_LIMIT * (total + areas[i]):
            buckets.append(current)
            current, grown_h, grown_w, total = [], heights[i], widths[i], 0
        current.append(int(i))
        max_h, max_w, total = grown_h, grown_w, total + areas[i]
    return buckets + [current] if current else buckets


def _bucket_masks(logits: torch.Tensor, regions: np.ndarray, members: list[int], rows: _AxisSampling,
                  cols: _AxisSampling, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One group's regions, padded to a common size: column-major bits (n, Wb, Hb) and RLE edges
    (E, 2) as (slot, full-frame position)."""
    device = logits.device
    n, low_h, low_w = len(members), logits.shape[1], logits.shape[2]
    region_h, region_w = regions[:, 1] - regions[:, 0], regions[:, 3] - regions[:, 2]
    pad_h, pad_w = int(region_h.max()), int(region_w.max())
    first_low_row = rows.low_host[regions[:, 0]]
    low_rows = int((rows.high_host[regions[:, 1] - 1] - first_low_row).max()) + 1
    r = torch.from_numpy(np.concatenate([regions, first_low_row[:, None]], axis=1)).to(device)
    y1, x1, first_low = r[:, 0:1], r[:, 2:3], r[:, 4:5]
    ys = (y1 + torch.arange(pad_h, device=device)).clamp(max=height - 1)  # (n, Hb) output rows
    xs = (x1 + torch.arange(pad_w, device=device)).clamp(max=width - 1)   # (n, Wb) output columns

    # Bilinear as F.interpolate computes it: along x on the low-res rows the region reads, then along
    # y; each pass picks whole rows (index_select), which copies contiguous memory.
    slot = torch.arange(n, device=device)[:, None]
    member = torch.tensor(members, device=device)[:, None]
    source_rows = (first_low + torch.arange(low_rows, device=device)).clamp(max=low_h - 1) + member * low_h
    picked = logits.reshape(-1, low_w).index_select(0, source_rows.flatten()).view(n, low_rows, low_w)
    by_column = picked.transpose(1, 2).reshape(n * low_w, low_rows)                  # (n w, Lh)
    across = _blend_rows(by_column, cols.low[xs] + slot * low_w, cols.high[xs] + slot * low_w, cols.frac[xs])
    by_row = across.view(n, pad_w, low_rows).transpose(1, 2).reshape(n * low_rows, pad_w)  # (n Lh, Wb)
    top = (rows.low[ys] - first_low).clamp(0, low_rows - 1) + slot * low_rows
    bottom = (rows.high[ys] - first_low).clamp(0, low_rows - 1) + slot * low_rows
    values = _blend_rows(by_row, top, bottom, rows.frac[ys]).view(n, pad_h, pad_w)
    bits = (values > 0).transpose(1, 2).contiguous()                                  # (n, Wb, Hb)
    if (region_h < pad_h).any() or (region_w < pad_w).any():  # padding must stay empty
        bits &= (torch.arange(pad_w, device=device) < r[:, 3:4] - x1)[:, :, None]
        bits &= (torch.arange(pad_h, device=device) < r[:, 1:2] - y1)[:, None, :]
    return bits, _rle_edges(bits, x1[:, 0], y1[:, 0], height, width)


def _blend_rows(source: torch.Tensor, low: torch.Tensor, high: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """source[low] * (1 - frac) + source[high] * frac, row by row: (n, k) indices into the rows of
    ``source`` and weights -> (n k, row length)."""
    out = source.index_select(0, low.flatten()).mul_((1 - frac).reshape(-1, 1))
    return out.addcmul_(source.index_select(0, high.flatten()), frac.reshape(-1, 1))


def _rle_edges(bits: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(E, 2) long: (slot, position) where each region's mask changes value, in full-frame
    column-major positions, in order. A run of 1s over positions a .. b - 1 gives edges a and b."""
    pad_h = bits.shape[2]
    changes = (bits[:, :, 1:] ^ bits[:, :, :-1]).nonzero()   # between rows y and y + 1 of column x
    starts = bits[:, :, 0].nonzero()                          # a run from the region's top row
    ends = bits[:, :, -1].nonzero()                           # a run to the region's bottom row
    slots = torch.cat([changes[:, 0], starts[:, 0], ends[:, 0]])
    column = torch.cat([changes[:, 1], starts[:, 1], ends[:, 1]])
    row = torch.cat([changes[:, 2] + 1, starts.new_zeros(len(starts)), starts.new_full((len(ends),), pad_h)])
    positions = (x1[slots] + column) * height + y1[slots] + row
    keys = slots * (height * width + 1) + positions
    keys, order = torch.sort(keys)
    slots, positions = slots[order], positions[order]
    # A region spanning whole columns ends one column where it starts the next: the run goes on.
    same = keys[1:] == keys[:-1]
    keep = positions < height * width  # a run reaching the last pixel needs no closing edge
    keep[1:] &= ~same
    keep[:-1] &= ~same
    return torch.stack([slots[keep], positions[keep]], dim=1)


def _as_int32(bits: torch.Tensor) -> torch.Tensor:
    flat = bits.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 4)])
    return flat.view(torch.int32)


# -- host side ------------------------------------------------------------------------------------------

def _on_host(batch: np.ndarray, layout, regions: np.ndarray, n: int, height: int, width: int) -> UpsampledMasks:
    masks: list[RleMask | None] = [None] * n
    boxes: list[tuple[float, float, float, float] | None] = [None] * n
    end = np.array([height * width], dtype=np.int64)
    offset = 0
    for members, (count, pad_w, pad_h), num_edges in layout:
        edges = batch[offset: offset + 2 * num_edges].reshape(num_edges, 2)
        offset += 2 * num_edges
        num_bits = count * pad_w * pad_h
        bits = batch[offset:].view(np.uint8)[:num_bits].view(bool).reshape(count, pad_w, pad_h)
        offset += (num_bits + 3) // 4
        per_slot = np.split(edges[:, 1].astype(np.int64), np.cumsum(np.bincount(edges[:, 0], minlength=count))[:-1])
        for slot, i in enumerate(members):
            if per_slot[slot].size == 0:
                continue  # nothing positive at image resolution
            bx1, by1, bx2, by2 = _box_of_runs(per_slot[slot], height, width)
            y1, x1 = int(regions[i, 0]), int(regions[i, 2])
            crop = MaskCrop(bx1, by1, bits[slot, bx1 - x1: bx2 - x1, by1 - y1: by2 - y1].T)
            counts = np.diff(np.concatenate(([0], per_slot[slot], end)))
            masks[i] = RleMask(height, width, tuple(counts.tolist()), crop)
            boxes[i] = (float(bx1), float(by1), float(bx2), float(by2))
    return UpsampledMasks(masks, boxes)


def _box_of_runs(edges: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Tight x1, y1, x2, y2 of a mask from its run edges (column-major positions)."""
    starts = edges[0::2]
    stops = np.append(edges[1::2], height * width) if len(edges) % 2 else edges[1::2]
    first_col, last_col = starts // height, (stops - 1) // height
    one_column = first_col == last_col  # runs that wrap into the next column cover every row
    top = (starts % height)[one_column].min(initial=height) if one_column.all() else 0
    bottom = ((stops - 1) % height)[one_column].max(initial=-1) if one_column.all() else height - 1
    return int(first_col[0]), int(top), int(last_col[-1]) + 1, int(bottom) + 1
