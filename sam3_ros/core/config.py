"""Typed pipeline configuration with defaults, loadable from YAML.

Defaults follow Meta's ``build_sam3_video_model`` where SAM 3 defines one; the streaming
track life cycle (confirmation, keep-alive, caps) is ours. ``config/sam3.yaml`` mirrors
these defaults and a test keeps them equal.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def setting(default: Any, help: str) -> Any:
    """A configuration field with its description (shown as the ROS parameter's description)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    checkpoint: str = setting("", "local SAM 3 checkpoint directory (hf download facebook/sam3)")
    tiny: bool = setting(False, "random-init tiny model of the real architecture: smoke tests only")
    backend: str = setting("torch", "torch | onnxruntime | tensorrt")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = setting("auto", "auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16")
    engines_dir: str = setting("engines", "folder of exported ONNX files and TensorRT engines")
    compile: bool = setting(False, "torch.compile the heavy torch components")


@dataclass
class DetectionConfig:
    score_threshold: float = setting(0.5, "default per-concept threshold on P(class) * P(presence)")
    nms_iou: float = setting(0.1, "mask-IoU NMS within one concept (SAM 3: det_nms_thresh)")
    new_track_threshold: float = setting(0.7, "only detections above this start tracks (new_det_thresh)")


@dataclass
class TrackingConfig:
    assoc_iou: float = setting(0.1, "a detection this close to a visible track never starts another")
    match_iou: float = setting(0.5, "mask IoU at which a detection matches a track")
    confirm_hits: int = setting(3, "matched frames before a track is confirmed")
    tentative_max_age: int = setting(15, "frames a track may stay tentative (SAM 3: hotstart_delay)")
    tentative_max_misses: int = setting(8, "unmatched frames that remove a tentative track")
    duplicate_iou: float = setting(0.7, "same-concept tracks overlapping this much are duplicates")
    duplicate_frames: int = setting(8, "frames of overlap before the younger confirmed duplicate is removed")
    keep_alive: int = setting(30, "keep-alive budget: +1 per matched frame (capped), -1 per miss; removed at 0")
    reacquire_iou: float = setting(0.5, "IoU of a detection with a lost track's last mask that re-acquires it")
    recondition_every: int = setting(16, "frames between re-conditioning tracks from confident detections")
    recondition_score: float = setting(0.8, "detection score needed to re-condition a track")
    recondition_iou: float = setting(0.8, "mask IoU needed to re-condition a track")
    recondition_with_detection: bool = setting(
        False, "re-condition with the detection's mask (true) or the tracker's own mask (false)")
    max_tracks: int = setting(50, "cap on live tracks; the weakest new detections are dropped")


@dataclass
class MemoryConfig:
    # Recent non-conditioning frames come from the checkpoint (num_maskmem - 1).
    max_cond_frames: int = setting(4, "conditioning frames kept per track (max_cond_frames_in_attn)")
    max_object_pointers: int = setting(16, "object pointers attended to per track (max_obj_ptrs)")


@dataclass
class OutputConfig:
    publish_tentative: bool = setting(True, "report tentative tracks too (false: confirmed only)")
    text_cache_size: int = setting(256, "phrases whose text features stay cached")


@dataclass
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def flat(self) -> dict[str, Any]:
        """Dotted-name view, e.g. {'tracking.keep_alive': 30}; used for ROS parameters."""
        return {
            f"{section.name}.{item.name}": getattr(getattr(self, section.name), item.name)
            for section in dataclasses.fields(self)
            for item in dataclasses.fields(getattr(self, section.name))
        }

    def descriptions(self) -> dict[str, str]:
        """Dotted name -> description of every setting."""
        return {
            f"{section.name}.{item.name}": item.metadata["help"]
            for section in dataclasses.fields(self)
            for item in dataclasses.fields(getattr(self, section.name))
        }

    def updated(self, values: dict[str, Any]) -> "PipelineConfig":
        """A copy with nested ({'tracking': {...}}) or dotted ('tracking.x') values applied."""
        config = dataclasses.replace(
            self, **{s.name: dataclasses.replace(getattr(self, s.name)) for s in dataclasses.fields(self)}
        )
        for dotted, value in _flatten(values).items():
            section_name, _, key = dotted.partition(".")
            section = getattr(config, section_name, None)
            if section is None or not key or key not in {f.name for f in dataclasses.fields(section)}:
                raise ValueError(f"unknown configuration key {dotted!r}")
            current = getattr(section, key)
            setattr(section, key, coerce_value(dotted, value, current))
        return config


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then a YAML file (plain, or a ROS parameter file), then overrides."""
    config = PipelineConfig()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        config = config.updated(_strip_ros_nesting(data))
    return config.updated(overrides or {})


def _strip_ros_nesting(data: dict) -> dict:
    """Accept ``node_name: {ros__parameters: {...}}`` as written for ROS 2 parameter files."""
    if len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and "ros__parameters" in inner:
            params = dict(inner["ros__parameters"])
            # Node-level parameters (topics, QoS, ...) live beside the pipeline sections.
            return {k: v for k, v in params.items() if k.split(".")[0] in _SECTIONS}
    return data


_SECTIONS = {f.name for f in dataclasses.fields(PipelineConfig)}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def coerce_value(name: str, value: Any, current: Any) -> Any:
    """``value`` as the type of ``current`` (as YAML or ROS parameters may give it), or ValueError."""
    kind = type(current)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif kind is str and isinstance(value, str):
        return value
    elif kind is list and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"configuration key {name!r} expects {kind.__name__}, got {value!r}")
