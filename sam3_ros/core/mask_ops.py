"""Batched operations on low-resolution mask logits, on whatever device the masks live."""
from __future__ import annotations

import numpy as np
import torch

SUPPRESSED_LOGIT = -10.0  # Meta's "no object here" logit (sigmoid = 4.5e-5)


def mask_iou(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H, W) x (M, H, W) boolean masks -> (N, M) IoU; empty-vs-empty is 0. Without ``b``: the
    masks against each other, from one product."""
    a_flat = a.flatten(1).float()
    b_flat = a_flat if b is None else b.flatten(1).float()
    inter = a_flat @ b_flat.t()
    area_a = a_flat.sum(1) if b is not None else torch.diagonal(inter)
    area_b = b_flat.sum(1) if b is not None else area_a
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1.0)


def association_ious(detections: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) detection and (M, H, W) track masks -> (N, M) detection-track IoU and (M, M)
    track-track IoU, each mask converted once (no detection-detection product)."""
    d, t = detections.flatten(1).float(), tracks.flatten(1).float()
    d_area, t_area = d.sum(1), t.sum(1)
    det_track, track_track = d @ t.t(), t @ t.t()
    return (det_track / (d_area[:, None] + t_area[None, :] - det_track).clamp(min=1.0),
            track_track / (t_area[:, None] + t_area[None, :] - track_track).clamp(min=1.0))


def mask_nms(scores: torch.Tensor, masks: torch.Tensor, iou_threshold: float,
             groups: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy NMS by mask IoU, within each group (default: one group), from one IoU matrix.

    Returns kept indices ordered by group, then by descending score (ties: input order)."""
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    groups = torch.zeros_like(scores, dtype=torch.long) if groups is None else groups
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_groups = groups[order].cpu().numpy()
    overlapping = (mask_iou(masks[order]).cpu().numpy() > iou_threshold) & \
        (sorted_groups[:, None] == sorted_groups[None, :])
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= ~overlapping[i, i + 1:]
    rank = np.flatnonzero(keep)
    rank = rank[np.argsort(sorted_groups[rank], kind="stable")]
    return order[torch.from_numpy(rank).to(order.device)]


def suppress_shrunk_overlaps(mask_logits: torch.Tensor, groups: list, shrink_threshold: float = 0.3) -> torch.Tensor:
    """Within each group, suppress masks that lose most of their area to higher-scoring neighbours.

    Meta applies this to tracker masks before memory encoding: where masks of the same concept
    overlap, each pixel belongs to the highest logit; a mask keeping under ``shrink_threshold``
    of its area is treated as a duplicate and encoded as "no object".
    """
    out = mask_logits.clone()
    for group in set(groups):
        idx = torch.tensor([i for i, g in enumerate(groups) if g == group], device=mask_logits.device)
        if idx.numel() < 2:
            continue
        logits = mask_logits[idx]
        if (logits > 0).sum(dim=0).max() <= 1:
            continue  # no pixel covered twice: nothing to suppress
        winner = logits.argmax(dim=0, keepdim=True) == torch.arange(len(idx), device=logits.device)[:, None, None]
        area_before = (logits > 0).sum(dim=(1, 2)).clamp(min=1)
        area_after = ((logits > 0) & winner).sum(dim=(1, 2))
        shrunk = area_after / area_before < shrink_threshold
        out[idx] = torch.where(shrunk[:, None, None], logits.clamp(max=SUPPRESSED_LOGIT), logits)
    return out
