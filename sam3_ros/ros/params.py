"""The node's own parameters (topics, QoS, outputs, timing); the pipeline's are in core/config.py.

Both sets are declared as ROS parameters with these defaults and descriptions; their default
values also live in config/sam3.yaml, kept equal by a test.

Several cameras: ``cameras: [head, wrist]`` gives each camera its inputs (``NAME/image``,
``NAME/camera_info``, ``NAME/depth``, relative names) and per-camera keys ``NAME.<key>``
(``CAMERA_KEYS``): its inputs, and node settings it overrides (unset: the node's value).
``CameraSettings`` is one camera's resolved view.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..core.config import (COUNT, NONNEGATIVE, POSITIVE, Check, PipelineConfig, check_fields, checks_of,
                           coerce_value, setting)

RELIABILITIES = ("best_effort", "reliable")
# A ROS topic name, relative or absolute (`~/x`, `/ns/x`, `x`): tokens of letters, digits and _,
# not starting with a digit, separated by single slashes.
_TOPIC = r"(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*"
TOPIC = Check(pattern=_TOPIC, words="a ROS topic name (e.g. image, /camera/color/image_raw)")
OPTIONAL_TOPIC = Check(pattern=f"({_TOPIC})?", words="a ROS topic name, or empty for none")
_CAMERA_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# Names that would clash with the pipeline's parameter sections (NAME.key) or the node's own outputs.
_RESERVED_CAMERA_NAMES = {f.name for f in dataclasses.fields(PipelineConfig)} | {"focus", "qos_overrides"}


@dataclass(frozen=True)
class CameraNames:
    """The check of ``cameras``: distinct names, each one ROS name token, none reserved."""

    def describe(self) -> str:
        return "distinct names of letters, digits and _, not starting with a digit"

    def refusal(self, name: str, value: Any) -> str | None:
        bad = [v for v in value if not re.fullmatch(_CAMERA_NAME, str(v))]
        reserved = sorted(set(value) & _RESERVED_CAMERA_NAMES)
        repeated = sorted({v for v in value if list(value).count(v) > 1})
        problems = ([f"{bad} are not names of letters, digits and _ (not starting with a digit)"] * bool(bad)
                    + [f"{reserved} are reserved (parameter sections, ~/focus)"] * bool(reserved)
                    + [f"{repeated} appear more than once"] * bool(repeated))
        return f"{name} must be {self.describe()}; got {list(value)!r}: " + "; ".join(problems) if problems else None


@dataclass
class NodeParams:
    image_topic: str = setting("image", "camera image (sensor_msgs/Image, or CompressedImage if the name ends in /compressed)",
                               TOPIC)
    camera_info_topic: str = setting("camera_info", "camera info of the image, for 3D; empty: none", OPTIONAL_TOPIC)
    depth_topic: str = setting("", "depth aligned to the image (16UC1 millimetres or 32FC1 metres); empty: no 3D",
                               OPTIONAL_TOPIC)
    reliability: str = setting("best_effort", "subscription reliability: best_effort (SensorDataQoS) | reliable",
                               Check(choices=RELIABILITIES))
    queue_depth: int = setting(5, "subscription queue depth", COUNT)
    sync_slop_s: float = setting(0.05, "largest stamp difference between image, camera info and depth", NONNEGATIVE)
    prompts: list = setting([], "noun phrases active at start-up (the prompt services change them)")
    cameras: list = setting([], "camera names: each NAME subscribes NAME/image, NAME/camera_info (NAME/depth) and "
                            "publishes under ~/NAME/, all on one model; empty: one camera on image_topic",
                            CameraNames())
    target_frame: str = setting("", "TF frame for 3D positions; empty: the camera's frame")
    publish_overlay: bool = setting(True, "publish the overlay image for RViz")
    publish_id_image: bool = setting(True, "publish the mono16 instance-ID image and its LabelInfo")
    publish_markers: bool = setting(True, "publish text markers at 3D centroids")
    marker_lifetime_s: float = setting(0.5, "marker lifetime in seconds (0: until replaced)", NONNEGATIVE)
    publish_instance_points: bool = setting(False, "publish ~/instance_points (PointCloud2 per instance; needs depth)")
    instance_points_max: int = setting(500, "points per instance in ~/instance_points at most (0: all)", NONNEGATIVE)
    max_frame_age_s: float = setting(0.0, "drop frames older than this when their turn comes; 0: never", NONNEGATIVE)
    camera_timeout_s: float = setting(2.0, "no image for this long while active: diagnostics warn", POSITIVE)
    diagnostics_period_s: float = setting(1.0, "diagnostics publishing period in seconds", POSITIVE)
    offload_on_deactivate: bool = setting(True, "move the model to host memory on deactivate (frees GPU memory)")
    warmup_frames: int = setting(2, "frames run through the model at configure time", NONNEGATIVE)
    # Per-camera keys as given ({"head.depth": True}); not a ROS parameter itself (see CAMERA_KEYS).
    per_camera: dict = field(default_factory=dict, metadata={"ros": False})

    def __post_init__(self) -> None:
        check_fields(self)
        self.camera_settings()  # every per-camera value checked here too, before any model loads

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "NodeParams":
        """From ROS parameter values by name; ``NAME.key`` names go to ``per_camera``."""
        defaults = cls()
        known = set(cls().flat())
        per_camera = {k: v for k, v in values.items() if "." in k and v is not None}
        unknown = set(values) - known - set(per_camera) - {k for k, v in values.items() if v is None}
        if unknown:
            raise ValueError(f"unknown node parameters: {sorted(unknown)}")
        return cls(**{k: coerce_value(k, v, getattr(defaults, k)) for k, v in values.items() if k in known},
                   per_camera=per_camera)

    def camera_settings(self) -> list[CameraSettings]:
        """Each camera's settings, in ``cameras`` order; with no cameras, the single camera "" on the node's
        topics. ValueError names every bad or unknown per-camera key."""
        if not self.cameras:
            if self.per_camera:
                raise ValueError(f"per-camera parameters {sorted(self.per_camera)} but cameras is empty")
            return [CameraSettings("", self.image_topic, self.camera_info_topic, self.depth_topic,
                                   **{key: getattr(self, key) for key in CAMERA_OVERRIDES})]
        problems = [r for key in sorted(self.per_camera) if (r := _camera_key_refusal(key, self.cameras))]
        cameras = []
        for name in self.cameras:
            try:
                cameras.append(self._camera(name))
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("; ".join(problems))
        return cameras

    def _camera(self, name: str) -> CameraSettings:
        given = {key: self.per_camera[f"{name}.{key}"] for key in CAMERA_KEYS if f"{name}.{key}" in self.per_camera}
        inputs = {key: coerce_value(f"{name}.{key}", given.get(key, default), default)
                  for key, (default, _) in CAMERA_INPUTS.items()}
        overrides = {key: coerce_value(f"{name}.{key}", given.get(key, getattr(self, key)), getattr(self, key))
                     for key in CAMERA_OVERRIDES}
        checks = checks_of(NodeParams)
        refusals = [r for key, value in overrides.items()
                    if key in checks and (r := checks[key].refusal(f"{name}.{key}", value))]
        if refusals:
            raise ValueError("; ".join(refusals))
        image = f"{name}/image" + "/compressed" * inputs["compressed"]
        return CameraSettings(name, image, f"{name}/camera_info" if inputs["camera_info"] else "",
                              f"{name}/depth" if inputs["depth"] else "", **overrides)

    def flat(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in _ros_fields(self)}

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in _ros_fields(cls)}

    @classmethod
    def ranges(cls) -> dict[str, str]:
        return {f.name: f.metadata["check"].describe() if f.metadata.get("check") else "" for f in _ros_fields(cls)}


def _ros_fields(params) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(params) if f.metadata.get("ros", True)]


# Per-camera keys NAME.<key>: the camera's inputs (default, description) ...
CAMERA_INPUTS: dict[str, tuple[bool, str]] = {
    "compressed": (False, "subscribe NAME/image/compressed (sensor_msgs/CompressedImage) instead of NAME/image"),
    "camera_info": (True, "subscribe NAME/camera_info and pair images with it by stamp (needed for 3D)"),
    "depth": (False, "subscribe NAME/depth, aligned to the image (16UC1 mm or 32FC1 m), for 3D"),
}
# ... and the node settings a camera may override (unset: the node's value).
CAMERA_OVERRIDES = ("reliability", "queue_depth", "sync_slop_s", "target_frame", "max_frame_age_s",
                    "camera_timeout_s")
CAMERA_KEYS = (*CAMERA_INPUTS, *CAMERA_OVERRIDES)


@dataclass(frozen=True)
class CameraSettings:
    """One camera's inputs and settings, resolved: the node's values where it overrides none.

    ``name`` is "" for the single camera of a node with an empty ``cameras``, whose topics are the
    node's ``image_topic``, ... and whose outputs are ``~/...``; a named camera's are ``~/NAME/...``.
    """

    name: str
    image_topic: str
    camera_info_topic: str
    depth_topic: str
    reliability: str
    queue_depth: int
    sync_slop_s: float
    target_frame: str
    max_frame_age_s: float
    camera_timeout_s: float

    @property
    def output_prefix(self) -> str:
        """Where this camera's outputs go: ``~/`` or ``~/NAME/``."""
        return f"~/{self.name}/" if self.name else "~/"

    @property
    def compressed(self) -> bool:
        return self.image_topic.rstrip("/").endswith("compressed")


def camera_parameters(name: str) -> dict[str, tuple[Any, str]]:
    """The ROS parameters ``NAME.<key>`` of camera ``name``: name -> (default, description); an override's
    default is None (unset: the node's value)."""
    params = {f"{name}.{key}": (default, help) for key, (default, help) in CAMERA_INPUTS.items()}
    node = NodeParams.descriptions()
    params.update({f"{name}.{key}": (None, f"this camera's {key} (unset: the node's): {node[key]}")
                   for key in CAMERA_OVERRIDES})
    return params


def camera_keys_given(names: Iterable[str]) -> list[str]:
    """The names among ``names`` (e.g. a node's parameter overrides) that look like per-camera keys: a dot,
    and no pipeline section before it. Unknown ones among them are refused at configure."""
    sections = {f.name for f in dataclasses.fields(PipelineConfig)} | {"qos_overrides"}
    return [n for n in names if "." in n and n.split(".")[0] not in sections]


def _camera_key_refusal(key: str, cameras: list[str]) -> str | None:
    camera, _, name = key.partition(".")
    if camera not in cameras:
        return f"{key}: {camera!r} is not one of cameras {cameras}"
    if name not in CAMERA_KEYS:
        near = difflib.get_close_matches(name, CAMERA_KEYS, n=1)
        hint = f" (did you mean {camera}.{near[0]}?)" if near else ""
        return f"{key}: unknown per-camera key{hint}; known: {', '.join(CAMERA_KEYS)}"
    return None


def parameter_ranges() -> dict[str, str]:
    """Every ROS parameter's accepted values in words ("0 <= x <= 1"; "" when any value of its type is)."""
    return {**PipelineConfig().ranges(), **NodeParams.ranges()}


def all_parameters() -> dict[str, tuple[Any, str]]:
    """Every ROS parameter the node declares: name -> (default, description)."""
    pipeline = PipelineConfig()
    params = {name: (value, pipeline.descriptions()[name]) for name, value in pipeline.flat().items()}
    node = NodeParams()
    params.update({name: (value, NodeParams.descriptions()[name]) for name, value in node.flat().items()})
    return params


def split_parameters(values: dict[str, Any]) -> tuple[NodeParams, PipelineConfig]:
    """ROS parameter values (by name) -> the node's parameters and the pipeline configuration."""
    pipeline_keys = set(PipelineConfig().flat())
    node = NodeParams.from_values({k: v for k, v in values.items() if k not in pipeline_keys})
    config = PipelineConfig().updated({k: v for k, v in values.items() if k in pipeline_keys})
    return node, config


def parameter_change_refusal(current: dict[str, Any], changes: dict[str, Any]) -> str | None:
    """Why a set_parameters request is invalid, or None. Valid changes apply at the next configure."""
    unknown = sorted(set(changes) - set(current))
    if unknown:
        return f"unknown parameters: {unknown}"
    proposed = {**current, **changes}
    for name, default in ((n, d) for n, (d, _) in all_parameters().items() if n in changes):
        if isinstance(default, list):
            proposed[name] = [str(v) for v in (proposed[name] or [])]
    cameras = proposed.get("cameras") or []
    for name in camera_keys_given(current):  # a camera taken out of cameras leaves its keys unused, not wrong
        if name.split(".")[0] not in cameras and name not in changes:
            del proposed[name]
    try:
        split_parameters(proposed)
    except (TypeError, ValueError) as err:
        return str(err)
    return None
