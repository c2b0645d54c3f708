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


@dataclass
class ModelConfig:
    checkpoint: str = ""          # local HF-format SAM 3 directory (e.g. a facebook/sam3 download)
    tiny: bool = False            # random-init tiny model of the real architecture (tests, demos)
    backend: str = "torch"        # torch | onnxruntime | tensorrt
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    dtype: str = "auto"           # auto | float32 | bfloat16 | float16
    engines_dir: str = "engines"  # ONNX / TensorRT artefacts
    compile: bool = False         # torch.compile the heavy torch components


@dataclass
class DetectionConfig:
    score_threshold: float = 0.5      # per-concept default; score = P(class) * P(presence)
    nms_iou: float = 0.1              # mask-IoU NMS within a concept (Meta: det_nms_thresh)
    new_track_threshold: float = 0.7  # a detection starts a track only above this (new_det_thresh)


@dataclass
class TrackingConfig:
    assoc_iou: float = 0.1            # a detection this close to a track never starts a new one
    match_iou: float = 0.5            # a track counts as matched at this mask IoU
    confirm_hits: int = 3             # matched frames before a track is confirmed
    tentative_max_age: int = 15       # frames a track may stay tentative (Meta: hotstart_delay)
    tentative_max_misses: int = 8     # unmatched frames that kill a tentative track
    duplicate_iou: float = 0.7        # same-concept tracks overlapping this much are duplicates
    duplicate_frames: int = 8         # frames of overlap before the younger confirmed duplicate goes
    keep_alive: int = 30              # keep-alive budget: +1 per match, -1 per miss, removed at 0
    reacquire_iou: float = 0.5        # match a lost track's last mask to re-acquire it
    recondition_every: int = 16       # frames between re-conditioning from confident detections
    recondition_score: float = 0.8
    recondition_iou: float = 0.8
    recondition_with_detection: bool = False  # False: keep tracker mask, mark frame as conditioning
    max_tracks: int = 50              # cap on live tracks; lowest-scoring births are dropped


@dataclass
class MemoryConfig:
    max_cond_frames: int = 4          # conditioning frames kept per track (max_cond_frames_in_attn)
    max_object_pointers: int = 16     # object pointers attended to (max_obj_ptrs)
    # Recent non-conditioning frames come from the checkpoint (num_maskmem - 1).


@dataclass
class OutputConfig:
    publish_tentative: bool = True    # False: only confirmed tracks are reported
    text_cache_size: int = 256        # phrases whose text features stay cached


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
            setattr(section, key, _coerce(dotted, value, current))
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


def _coerce(name: str, value: Any, current: Any) -> Any:
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
    raise ValueError(f"configuration key {name!r} expects {kind.__name__}, got {value!r}")
