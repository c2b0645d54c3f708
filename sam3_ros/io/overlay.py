"""Drawing a FrameResult onto its image: masks, contours, boxes and labels in per-track colours."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ..core.results import FrameResult, Instance, TrackState

_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per track; consecutive ids get well-separated hues
    (hue steps by the golden ratio, which never repeats and spreads evenly)."""
    hue = (track_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def instance_caption(instance: Instance) -> str:
    """Caption such as "cup #3 0.87"; a tentative track reads "cup #3? 0.87"."""
    unsure = "?" if instance.state == TrackState.TENTATIVE else ""
    return f"{instance.label} #{instance.track_id}{unsure} {instance.score:.2f}"


def draw_overlay(rgb: np.ndarray, result: FrameResult, alpha: float = 0.5) -> np.ndarray:
    """A copy of the (H, W, 3) uint8 RGB image with every visible instance drawn on it.

    Masks are painted from their crops into one index image and blended with a palette of track
    colours with ``alpha`` in one pass: each pixel shows the best-scoring instance covering it. Contours, boxes and labels follow, lower-scoring instances first, each
    from its mask's crop. LOST instances (not visible on this frame) are not drawn.
    """
    if rgb.shape[:2] != (result.image_height, result.image_width):
        raise ValueError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]} but the result is for "
            f"{result.image_width}x{result.image_height}"
        )
    canvas = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    visible = sorted((i for i in result.instances if i.state != TrackState.LOST), key=lambda i: i.score)
    if not visible:
        return canvas
    _blend_masks(canvas, visible, alpha)
    scale = max(0.4, min(canvas.shape[:2]) / 800)
    thickness = max(1, round(scale * 2))
    for inst in visible:
        colour = track_colour(inst.track_id)
        crop = inst.mask.crop()
        if crop is not None:
            contours, _ = cv2.findContours(crop.bits.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=(crop.x1, crop.y1))
            cv2.drawContours(canvas, contours, -1, colour, thickness)
        x1, y1, x2, y2 = (round(v) for v in inst.box_xyxy)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, thickness)
        _draw_label(canvas, instance_caption(inst), (x1, y1), colour, scale, thickness)
    return canvas


def _blend_masks(canvas: np.ndarray, visible: list[Instance], alpha: float) -> None:
    """Blend every visible instance's pixels with its track colour in one pass: an index image
    painted from the masks' crops (best-scoring instance on top) and a palette."""
    small = len(visible) < 256
    index = np.zeros(canvas.shape[:2], dtype=np.uint8 if small else np.uint16)
    palette = np.zeros((max(len(visible) + 1, 256), 3), dtype=np.uint8)
    for k, inst in enumerate(visible, start=1):  # ascending score: the best is painted last
        palette[k] = track_colour(inst.track_id)
        crop = inst.mask.crop()
        if crop is not None:
            crop.paste(index, k)
    colours = cv2.LUT(cv2.merge([index] * 3), palette[:256, None, :]) if small else palette[index]
    blended = cv2.addWeighted(canvas, 1 - alpha, colours, alpha, 0.0)
    cv2.copyTo(blended, (index > 0).view(np.uint8), canvas)


def _draw_label(canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int],
                scale: float, thickness: int) -> None:
    """Text on a filled tag above the box's top-left corner (below it at the image's top edge)."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    tag_height = height + baseline + 4
    x = min(max(corner[0], 0), max(canvas.shape[1] - width - 4, 0))
    y = corner[1] - tag_height if corner[1] >= tag_height else corner[1]
    y = min(max(y, 0), max(canvas.shape[0] - tag_height, 0))
    cv2.rectangle(canvas, (x, y), (x + width + 4, y + tag_height), colour, cv2.FILLED)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, y + height + 2), _FONT, scale, ink, thickness, cv2.LINE_AA)
