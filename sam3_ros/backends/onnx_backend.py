"""The onnxruntime backend: every component runs its exported ONNX graph.

It needs only the export directory (ONNX files, manifest, tokenizer), not the PyTorch weights.
Tensors pass through host memory, also on CUDA: this backend is the portable reference for the
exported graphs; TensorRT is the fast path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import ModelGeometry, Sam3Components
from .graph_components import components_from_graphs
from .manifest import read_manifest


class OrtGraph:
    """One ONNX graph: named torch tensors in, torch tensors (on ``device``) out."""

    def __init__(self, path: Path, device: torch.device):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.device = device

    def __call__(self, **named: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: _numpy(named[name]) for name in self.inputs}
        return [torch.from_numpy(np.ascontiguousarray(out)).to(self.device) for out in self.session.run(None, feed)]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.cpu().numpy()


def onnxruntime_components(export_dir: str | Path, device: torch.device, fingerprint: str | None = None
                           ) -> Sam3Components:
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir, fingerprint)
    graphs = {name: OrtGraph(export_dir / entry["file"], device) for name, entry in manifest["components"].items()}
    return components_from_graphs("onnxruntime", graphs, ModelGeometry(**manifest["geometry"]), device)
