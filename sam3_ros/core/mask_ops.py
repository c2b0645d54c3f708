"""Batched operations on low-resolution mask logits, on whatever device the masks live."""
from __future__ import annotations

import torch

SUPPRESSED_LOGIT = -10.0  # Meta's "no object here" logit (sigmoid = 4.5e-5)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, H, W) x (M, H, W) boolean masks -> (N, M) IoU; empty-vs-empty is 0."""
    a_flat = a.flatten(1).float()
    b_flat = b.flatten(1).float()
    inter = a_flat @ b_flat.t()
    union = a_flat.sum(1)[:, None] + b_flat.sum(1)[None, :] - inter
    return inter / union.clamp(min=1.0)


def mask_nms(scores: torch.Tensor, masks: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS by mask IoU. Returns kept indices, highest score first."""
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.argsort(scores, descending=True)
    iou = mask_iou(masks[order], masks[order]).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


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
        winner = logits.argmax(dim=0, keepdim=True) == torch.arange(len(idx), device=logits.device)[:, None, None]
        area_before = (logits > 0).sum(dim=(1, 2)).clamp(min=1)
        area_after = ((logits > 0) & winner).sum(dim=(1, 2))
        shrunk = area_after / area_before < shrink_threshold
        out[idx] = torch.where(shrunk[:, None, None], logits.clamp(max=SUPPRESSED_LOGIT), logits)
    return out
