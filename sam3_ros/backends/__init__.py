"""Backends implement the SAM 3 components (see base.py): torch, onnxruntime, tensorrt."""
BACKENDS = ("torch", "onnxruntime", "tensorrt")
