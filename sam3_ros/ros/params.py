"""The node's own parameters (topics, QoS, outputs, timing); the pipeline's are in core/config.py.

Both sets are declared as ROS parameters with these defaults and descriptions; their default
values also live in config/sam3.yaml, kept equal by a test.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..core.config import COUNT, NONNEGATIVE, POSITIVE, Check, PipelineConfig, check_fields, coerce_value, setting

RELIABILITIES = ("best_effort", "reliable")
# A ROS topic name, relative or absolute (`~/x`, `/ns/x`, `x`): tokens of letters, digits and _,
# not starting with a digit, separated by single slashes.
_TOPIC = r"(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*"
TOPIC = Check(pattern=_TOPIC, words="a ROS topic name (e.g. image, /camera/color/image_raw)")
OPTIONAL_TOPIC = Check(pattern=f"({_TOPIC})?", words="a ROS topic name, or empty for none")


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

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "NodeParams":
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown node parameters: {sorted(unknown)}")
        return cls(**{k: coerce_value(k, v, getattr(defaults, k)) for k, v in values.items()})

    def flat(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}

    @classmethod
    def ranges(cls) -> dict[str, str]:
        return {f.name: f.metadata["check"].describe() if f.metadata.get("check") else "" for f in dataclasses.fields(cls)}


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
    try:
        split_parameters(proposed)
    except (TypeError, ValueError) as err:
        return str(err)
    return None
