"""Backends implement the SAM 3 components (see base.py): torch, onnxruntime, tensorrt."""
from ..core.config import BACKENDS  # noqa: F401  (declared with the model.backend setting)
