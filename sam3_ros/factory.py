"""Build a ready pipeline from configuration: weights or exported graphs, backend, pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .backends import BACKENDS
from .backends.base import Sam3Components
from .core.config import PipelineConfig
from .core.pipeline import Sam3Pipeline
from .model.loading import LoadedSam3, load_sam3, load_tiny, resolve_device

RANDOM_NOTE = "RANDOM WEIGHTS (tiny test model, outputs are meaningless)"


@dataclass
class LoadedPipeline:
    """A pipeline with what its owner needs to know and do about the model behind it."""

    pipeline: Sam3Pipeline
    description: str
    random_weights: bool
    weights: LoadedSam3 | None = None  # the PyTorch weights, when the backend runs them

    def fresh(self) -> Sam3Pipeline:
        """A new pipeline (no tracks, IDs from 1, same settings) on the already loaded model."""
        old = self.pipeline
        return Sam3Pipeline(old.components, old.tokenizer, old.config)

    def offload(self) -> None:
        """Move PyTorch weights to host memory (frees the GPU); a no-op for exported backends."""
        if self.weights is not None:
            self.weights.model.to("cpu")

    def restore(self) -> None:
        if self.weights is not None:
            self.weights.model.to(self.weights.device)


def load_model(config: PipelineConfig) -> LoadedSam3:
    model = config.model
    if model.tiny:
        return load_tiny(device=model.device, dtype=model.dtype)
    return load_sam3(model.checkpoint, device=model.device, dtype=model.dtype)


def build_pipeline(config: PipelineConfig, loaded: LoadedSam3 | None = None) -> Sam3Pipeline:
    """A torch-backend pipeline (loads the weights unless given)."""
    return load_pipeline(config, loaded).pipeline


def load_pipeline(config: PipelineConfig, loaded: LoadedSam3 | None = None) -> LoadedPipeline:
    backend = config.model.backend
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        from .backends.torch_backend import torch_components

        loaded = loaded or load_model(config)
        if config.model.compile:
            from .backends.torch_fast import compile_components

            components = compile_components(torch_components(loaded))
        else:
            components = torch_components(loaded)
        return LoadedPipeline(Sam3Pipeline(components, loaded.tokenizer, config), loaded.describe(),
                              loaded.random_weights, loaded)
    return _exported_pipeline(config, backend)


def _exported_pipeline(config: PipelineConfig, backend: str) -> LoadedPipeline:
    from transformers import AutoTokenizer

    from .backends.manifest import read_manifest

    export_dir = Path(config.model.engines_dir)
    manifest = read_manifest(export_dir, _expected_fingerprint(config))
    device = resolve_device(config.model.device)
    components: Sam3Components
    if backend == "onnxruntime":
        from .backends.onnx_backend import onnxruntime_components

        components = onnxruntime_components(export_dir, device)
    else:
        from .backends.trt_runtime import tensorrt_components, trt_precision

        components = tensorrt_components(export_dir, manifest, device, trt_precision(config.model.dtype), config)
    tokenizer = AutoTokenizer.from_pretrained(export_dir / manifest["tokenizer"], local_files_only=True)
    random_weights = manifest["model"]["random_weights"]
    description = (f"SAM 3 graphs exported from {manifest['model']['source']} (model {manifest['model']['fingerprint']})"
                   f" on {device} via {backend}: {RANDOM_NOTE if random_weights else 'trained weights'}")
    return LoadedPipeline(Sam3Pipeline(components, tokenizer, config), description, random_weights)


def _expected_fingerprint(config: PipelineConfig) -> str | None:
    """The configured model's fingerprint, to refuse graphs exported from another model."""
    if config.model.tiny:
        return load_tiny(device="cpu").fingerprint
    if config.model.checkpoint:
        from .model.loading import check_checkpoint_dir, fingerprint_files

        return fingerprint_files(check_checkpoint_dir(config.model.checkpoint))
    return None
