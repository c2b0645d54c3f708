"""The cameras of a recording, from the offline runner's ``--image-topic`` values.

A value is a topic (``/head/image``) or ``NAME=TOPIC``. An unnamed topic's camera is the topic's
namespace with ``_`` for ``/`` (``/head/image`` -> ``head``, ``/camera/color/image_raw`` ->
``camera_color``; a ``/compressed`` tail is left out first), or its own name in the root namespace
(``/image`` -> ``image``). A camera name starts with a letter and holds letters, digits and ``_``,
so that it can name topics (``/sam3/NAME/instances``) and files (``overlay_NAME.mp4``).
"""
from __future__ import annotations

import re
from typing import Sequence

CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def camera_name(topic: str) -> str:
    """The camera an image topic is named after (see the module's docstring)."""
    names = [name for name in topic.split("/") if name]
    if names[-1:] == ["compressed"]:
        names.pop()
    return "_".join(names[:-1] or names)


def camera_topics(values: Sequence[str]) -> dict[str, str] | None:
    """Camera name -> topic for ``--image-topic`` values; None for one unnamed topic or none (the
    single-camera run). ValueError when a topic is given twice, a name is not a camera name, or
    two topics make the same name."""
    if len(values) < 2 and not any("=" in value for value in values):
        return None
    cameras: dict[str, str] = {}
    for value in values:
        name, named, topic = value.partition("=") if "=" in value else (camera_name(value), False, value)
        if not topic:
            raise ValueError(f"--image-topic {value!r} names no topic")
        if topic in cameras.values():
            raise ValueError(f"--image-topic {topic} is given twice")
        if not CAMERA_NAME.fullmatch(name):
            how = "is" if named else f"made from {topic} is"
            raise ValueError(f"--image-topic {value}: the camera name {name!r} {how} not a name (a letter, then "
                             f"letters, digits and '_'); name it: --image-topic NAME={topic}")
        if name in cameras:
            raise ValueError(f"--image-topic: {cameras[name]} and {topic} are both camera {name!r}; name them, "
                             f"e.g. --image-topic {name}_2={topic}")
        cameras[name] = topic
    return cameras
