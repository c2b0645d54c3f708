"""Latency of a pipeline with exactly N live tracks, on synthetic frames (``sam3-ros bench``).

Every query becomes a detection (thresholds ~0, no NMS), births fill the track cap N on the first
frame, and no rule ever removes a track, so the tracker carries N tracks on every frame.
"""
from __future__ import annotations

import statistics

import numpy as np

from .core.config import PipelineConfig
from .core.pipeline import Sam3Pipeline
from .core.prompts import make_concept

# IoU thresholds at 1.0, the most the settings allow: only identical masks would associate or
# count as duplicates, which distinct detector queries do not produce.
HOLD_TRACKS = {
    "detection.score_threshold": 1e-6, "detection.nms_iou": 1.0, "detection.new_track_threshold": 1e-6,
    "tracking.assoc_iou": 1.0, "tracking.duplicate_iou": 1.0, "tracking.keep_alive": 10**9,
    "tracking.tentative_max_age": 10**9, "tracking.tentative_max_misses": 10**9,
}
STAGES = ("preprocess", "vision", "detector", "tracker", "association", "memory", "postprocess")


def holding_tracks(config: PipelineConfig, tracks: int) -> PipelineConfig:
    return config.updated({**HOLD_TRACKS, "tracking.max_tracks": tracks})


def synthetic_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    base = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    return [np.roll(base, 7 * i, axis=1) for i in range(count)]


def median_stage_ms(pipeline: Sam3Pipeline, images: list[np.ndarray], warmup: int, tracks: int) -> dict[str, float]:
    """Median per-stage milliseconds over the frames after ``warmup``; checks N tracks were held."""
    pipeline.set_concepts([make_concept(None, "object")])
    stages: dict[str, list[float]] = {}
    for i, image in enumerate(images):
        result = pipeline.step(image)
        if i >= warmup:
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
    held = len(pipeline.tracks.live_ids)
    if held != tracks:
        raise RuntimeError(f"held {held} live tracks instead of {tracks} (too few detector queries?)")
    return {stage: statistics.median(values) for stage, values in stages.items()}


def describe(tracks: int, stages: dict[str, float]) -> str:
    total = stages["total"]
    return (f"tracks {tracks:3d}: total {total:8.2f} ms ({1000 / total:6.1f} fps) | "
            + " ".join(f"{s} {stages[s]:.2f}" for s in STAGES))
