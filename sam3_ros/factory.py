"""Build a ready pipeline from configuration: weights, backend, pipeline."""
from __future__ import annotations

from .backends import create_components
from .core.config import PipelineConfig
from .core.pipeline import Sam3Pipeline
from .model.loading import LoadedSam3, load_sam3, load_tiny


def load_model(config: PipelineConfig) -> LoadedSam3:
    model = config.model
    if model.tiny:
        return load_tiny(device=model.device, dtype=model.dtype)
    return load_sam3(model.checkpoint, device=model.device, dtype=model.dtype)


def build_pipeline(config: PipelineConfig, loaded: LoadedSam3 | None = None) -> Sam3Pipeline:
    loaded = loaded or load_model(config)
    return Sam3Pipeline(create_components(loaded, config.model), loaded.tokenizer, config)


def load_pipeline(config: PipelineConfig) -> tuple[Sam3Pipeline, LoadedSam3]:
    """Load the weights and build the pipeline; the loaded model comes along (device, description)."""
    loaded = load_model(config)
    return build_pipeline(config, loaded), loaded
