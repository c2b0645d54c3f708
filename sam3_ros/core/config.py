"""Typed pipeline configuration with defaults, loadable from YAML.

Defaults follow Meta's ``build_sam3_video_model`` where SAM 3 defines one; the streaming
track life cycle (confirmation, keep-alive, caps) is ours. ``config/sam3.yaml`` mirrors
these defaults and a test keeps them equal.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Check:
    """The values a setting accepts: an interval, a list of choices, or a pattern.

    One check per setting, declared with it: the same checks serve `--set`, YAML files, ROS
    parameters at start-up and ``ros2 param set``; ``describe()`` is the range the README, the
    YAML and ``ros2 param describe`` (``additional_constraints``) show.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is refused
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole value must match
    words: str = ""  # how ``pattern`` reads

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern:
            return self.words
        if self.low is not None and self.high is not None:
            return f"{_num(self.low)} {'<' if self.low_open else '<='} x <= {_num(self.high)}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return ""

    def refusal(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not accepted for ``name``, or None."""
        if self.choices and value not in self.choices:
            near = [c for c in self.choices if str(value) and c.startswith(str(value))] or \
                difflib.get_close_matches(str(value), self.choices, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            return f"{name} must be {self.describe()}; got {value!r}{hint}"
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            return f"{name} must be {self.describe()}; got {value!r}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            too_high = self.high is not None and value > self.high
            if too_low or too_high or value != value:  # NaN
                return f"{name} must be {self.describe()}; got {value!r}"
        return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


FRACTION = Check(0.0, 1.0)  # a score or an IoU
COUNT = Check(1)  # a positive whole number
NONNEGATIVE = Check(0)
POSITIVE = Check(0, low_open=True)


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    """A configuration field with its description (shown as the ROS parameter's description) and
    the values it accepts."""
    metadata = {"help": help, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_fields(instance: Any, prefix: str = "") -> None:
    """ValueError naming every field of a settings dataclass whose value its Check refuses."""
    refusals = [refusal for item in dataclasses.fields(instance)
                if item.metadata.get("check") is not None
                and (refusal := item.metadata["check"].refusal(prefix + item.name, getattr(instance, item.name)))]
    if refusals:
        raise ValueError("; ".join(refusals))


def checks_of(settings_class: type) -> dict[str, Check]:
    """Field name -> Check of a settings dataclass (fields without one are left out)."""
    return {f.name: f.metadata["check"] for f in dataclasses.fields(settings_class) if f.metadata.get("check")}


@dataclass
class ModelConfig:
    checkpoint: str = setting("", "local SAM 3 checkpoint directory (hf download facebook/sam3)")
    tiny: bool = setting(False, "random-init tiny model of the real architecture: smoke tests only")
    backend: str = setting("torch", "torch | onnxruntime | tensorrt", Check(choices=BACKENDS))
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", Check(pattern=r"auto|cpu|cuda(:\d+)?", words="auto, cpu, cuda or cuda:N"))
    dtype: str = setting("auto", "auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16", Check(choices=DTYPES))
    engines_dir: str = setting("engines", "folder of exported ONNX files and TensorRT engines")
    compile: bool = setting(False, "torch.compile the heavy torch components")


@dataclass
class DetectionConfig:
    score_threshold: float = setting(0.5, "default per-concept threshold on P(class) * P(presence)", FRACTION)
    nms_iou: float = setting(0.1, "mask-IoU NMS within one concept (SAM 3: det_nms_thresh)", FRACTION)
    new_track_threshold: float = setting(0.7, "only detections above this start tracks (new_det_thresh)", FRACTION)


@dataclass
class TrackingConfig:
    assoc_iou: float = setting(0.1, "a detection this close to a visible track never starts another", FRACTION)
    match_iou: float = setting(0.5, "mask IoU at which a detection matches a track", FRACTION)
    confirm_hits: int = setting(3, "matched frames before a track is confirmed (at most tentative_max_age)", COUNT)
    tentative_max_age: int = setting(15, "frames a track may stay tentative (SAM 3: hotstart_delay)", COUNT)
    tentative_max_misses: int = setting(8, "unmatched frames that remove a tentative track", COUNT)
    duplicate_iou: float = setting(0.7, "same-concept tracks overlapping this much are duplicates", FRACTION)
    duplicate_frames: int = setting(8, "frames of overlap before the younger confirmed duplicate is removed", COUNT)
    keep_alive: int = setting(30, "keep-alive budget: +1 per matched frame (capped), -1 per miss; removed at 0", COUNT)
    reacquire_iou: float = setting(0.5, "IoU of a detection with a lost track's last mask that re-acquires it", FRACTION)
    recondition_every: int = setting(16, "frames between re-conditioning tracks from confident detections", COUNT)
    recondition_score: float = setting(0.8, "detection score needed to re-condition a track", FRACTION)
    recondition_iou: float = setting(0.8, "mask IoU needed to re-condition a track", FRACTION)
    recondition_with_detection: bool = setting(
        False, "re-condition with the detection's mask (true) or the tracker's own mask (false)")
    max_tracks: int = setting(50, "cap on live tracks (per camera); the weakest new detections are dropped", COUNT)


@dataclass
class MemoryConfig:
    # Recent non-conditioning frames come from the checkpoint (num_maskmem - 1).
    max_cond_frames: int = setting(4, "conditioning frames kept per track (max_cond_frames_in_attn)", COUNT)
    max_object_pointers: int = setting(16, "object pointers attended to per track (max_obj_ptrs)", COUNT)


@dataclass
class OutputConfig:
    publish_tentative: bool = setting(True, "report tentative tracks too (false: confirmed only)")
    text_cache_size: int = setting(256, "phrases whose text features stay cached", COUNT)


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
                near = difflib.get_close_matches(dotted, list(self.flat()), n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"unknown configuration key {dotted!r}{hint}")
            current = getattr(section, key)
            setattr(section, key, coerce_value(dotted, value, current))
        config.check()
        return config

    def check(self) -> None:
        """ValueError saying every value out of its range, and every pair that does not fit together."""
        refusals = []
        for section in dataclasses.fields(self):
            try:
                check_fields(getattr(self, section.name), section.name + ".")
            except ValueError as err:
                refusals.append(str(err))
        if self.tracking.confirm_hits > self.tracking.tentative_max_age:
            refusals.append(f"tracking.confirm_hits ({self.tracking.confirm_hits}) must be at most "
                            f"tracking.tentative_max_age ({self.tracking.tentative_max_age}): a track could never "
                            "be confirmed")
        if refusals:
            raise ValueError("; ".join(refusals))

    def ranges(self) -> dict[str, str]:
        """Dotted name -> the values it accepts, in words ("0 <= x <= 1"); empty for free values."""
        return {
            f"{section.name}.{item.name}": item.metadata["check"].describe() if item.metadata.get("check") else ""
            for section in dataclasses.fields(self)
            for item in dataclasses.fields(getattr(self, section.name))
        }


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then a YAML file (plain, or a ROS parameter file), then overrides.

    A missing, unreadable or malformed file, an unknown key and a value out of range raise
    ValueError saying which file and key.
    """
    config = PipelineConfig()
    if path is not None:
        path = Path(path).expanduser()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"configuration file {path} does not exist (try config/sam3.yaml)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"configuration file {path} cannot be read: {err}") from None
        except yaml.YAMLError as err:
            raise ValueError(f"configuration file {path} is not valid YAML: {err}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"configuration file {path} must hold a mapping of settings, not a {type(data).__name__}")
        try:
            config = config.updated(_strip_ros_nesting(data))
        except ValueError as err:
            raise ValueError(f"configuration file {path}: {err}") from None
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
