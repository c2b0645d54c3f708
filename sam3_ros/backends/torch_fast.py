"""The fast PyTorch path: torch.compile of the heavy components.

The vision encoder always sees one shape (the model's input size), so on CUDA it is compiled
with ``mode="reduce-overhead"``, which replays it as a CUDA graph. Its outputs are only used
within the frame, so the graph's reused output buffers are safe. Detector, tracker and memory
encoder see varying numbers of concepts and tracks, and their outputs (memory features) are
kept across frames, so they are compiled without CUDA graphs and with dynamic shapes.
The other levers of the fast path live elsewhere: bfloat16 weights (model.dtype auto on GPU),
preprocessing on the GPU from pinned host memory (model/preprocess.py), and all live tracks of
one memory layout in one tracker call (core/pipeline.py).
"""
from __future__ import annotations

import dataclasses

import torch

from .base import Sam3Components


def compile_components(components: Sam3Components) -> Sam3Components:
    on_gpu = components.device.type == "cuda"
    static = dict(mode="reduce-overhead", dynamic=False) if on_gpu else dict(dynamic=False)
    dynamic = dict(dynamic=True)
    return dataclasses.replace(
        components,
        name=f"{components.name}+compile",
        vision=torch.compile(components.vision.__call__, **static),
        detector=torch.compile(components.detector.__call__, **dynamic),
        tracker=torch.compile(components.tracker.__call__, **dynamic),
        memory_encoder=torch.compile(components.memory_encoder.__call__, **dynamic),
    )
