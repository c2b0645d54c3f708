"""A generated clip for the demo: a red ball and a blue box crossing a floor, one hiding the other."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 15


def demo_frame(index: int, frames: int) -> np.ndarray:
    """RGB frame ``index`` of ``frames``: the box slides right, the ball rolls left across it."""
    y = np.linspace(60, 200, HEIGHT, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 30, WIDTH, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(y + x, (HEIGHT, WIDTH, 3)).astype(np.uint8).copy()
    t = index / max(frames - 1, 1)
    box_x = int(40 + 120 * t)
    cv2.rectangle(image, (box_x, 110), (box_x + 70, 180), (40, 70, 200), thickness=-1)
    ball_x = int(280 - 220 * t)
    cv2.circle(image, (ball_x, 150), 26, (210, 40, 35), thickness=-1)
    return image


def write_demo_clip(path: str | Path, frames: int = 48) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write the demo clip to {path}")
    try:
        for index in range(frames):
            writer.write(cv2.cvtColor(demo_frame(index, frames), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
