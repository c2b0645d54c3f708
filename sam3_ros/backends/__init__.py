"""Backends implement the SAM 3 components (see base.py); pick one by name."""
from __future__ import annotations

from ..core.config import ModelConfig
from ..model.loading import LoadedSam3
from .base import Sam3Components

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_components(loaded: LoadedSam3, model: ModelConfig) -> Sam3Components:
    if model.backend == "torch":
        from .torch_backend import torch_components

        return torch_components(loaded)
    raise ValueError(f"backend {model.backend!r} is not available; choose one of {', '.join(BACKENDS)}")
