"""ROS 2 message types without a ROS installation: the rosbags typestore and a message factory.

``typestore()`` is ROS 2 Jazzy plus vision_msgs and sam3_ros_interfaces, registered from the
definitions shipped in ``sam3_ros/msgdefs``. ``MessageTypes`` lets the converters in
``sam3_ros.io.messages`` build messages for whichever runtime provides the classes.
Actions (action/Find.action) are left out: rosbags parses .msg text only, and no offline tool
records or replays them; colcon generates them for the node.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from importlib import resources
from typing import Any, Iterator, Protocol

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACES_PACKAGE = "sam3_ros_interfaces"

# The line that separates a service's request from its response.
_SRV_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def packaged_definitions() -> Iterator[tuple[str, str]]:
    """(type name, definition text) of every .msg and .srv in sam3_ros/msgdefs, e.g.
    ("vision_msgs/msg/Point2D", "float64 x ..."), ("sam3_ros_interfaces/srv/AddConcept", "...")."""
    root = resources.files("sam3_ros").joinpath("msgdefs")
    for package in sorted(root.iterdir(), key=lambda p: p.name):
        for kind in ("msg", "srv"):
            folder = package.joinpath(kind)
            if not folder.is_dir():
                continue
            for file in sorted(folder.iterdir(), key=lambda p: p.name):
                if file.name.endswith(f".{kind}"):
                    yield f"{package.name}/{kind}/{file.name[: -len(kind) - 1]}", file.read_text("utf-8")


def packaged_types() -> dict[str, Any]:
    """rosbags type dictionaries of every packaged message and service request/response.

    rosbags parses .msg text only, so a service is split at its ``---`` line and each half is
    parsed as a message named ``pkg/msg/Name_Request`` (so relative type names resolve against
    the package's msg/), then renamed ``pkg/srv/Name_Request`` as ROS 2 names it.
    """
    types: dict[str, Any] = {}
    for name, text in packaged_definitions():
        package, kind, stem = name.split("/")
        if kind == "msg":
            types.update(get_types_from_msg(text, name))
            continue
        request, response = _SRV_SEPARATOR.split(text, maxsplit=1)
        for suffix, part in (("Request", request), ("Response", response)):
            parsed = get_types_from_msg(part, f"{package}/msg/{stem}_{suffix}")
            types[f"{package}/srv/{stem}_{suffix}"] = parsed.popitem()[1]
    return types


@functools.cache
def typestore() -> Typestore:
    """ROS 2 Jazzy types plus every packaged message and service type (built once)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(packaged_types())
    return store


class MessageTypes(Protocol):
    """Builds ROS 2 messages for one runtime (rosbags here; rclpy in sam3_ros.ros).

    Converters give every field of every message: rosbags classes have no defaults.
    """

    def new(self, typename: str, **fields: Any) -> Any:
        """A message of ``typename``, e.g. new("geometry_msgs/msg/Point", x=1.0, y=0.0, z=0.0).

        Sequences of messages and strings are plain lists; arrays and sequences of primitive
        values come from ``sequence``; ``byte`` fields from ``byte``.
        """

    def sequence(self, values: np.ndarray) -> Any:
        """A primitive array or sequence field (uint8[], uint32[], bool[], float64[36], ...)
        from a 1-D numpy array whose dtype is the field's element type."""

    def byte(self, value: int) -> Any:
        """A ``byte`` field (rosbags: int; rclpy: a bytes object of length 1)."""


class RosbagsTypes:
    """MessageTypes for rosbags message classes, checking that every field is given."""

    def __init__(self, store: Typestore | None = None):
        self.store = store if store is not None else typestore()

    def new(self, typename: str, **fields: Any) -> Any:
        try:
            cls = self.store.types[typename]
        except KeyError:
            raise KeyError(f"unknown message type {typename!r}") from None
        declared = dataclasses.fields(cls)
        required = {f.name for f in declared if f.default is dataclasses.MISSING}  # not __msgtype__
        if missing := required - fields.keys():
            raise TypeError(f"{typename}: missing fields {sorted(missing)}")
        if unknown := fields.keys() - required:
            raise TypeError(f"{typename}: unknown fields {sorted(unknown)}")
        return cls(**fields)

    def sequence(self, values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values)

    def byte(self, value: int) -> int:
        return int(value)
