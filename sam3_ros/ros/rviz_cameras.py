"""An RViz config for a node with several cameras, made from the single-camera one (config/sam3.rviz).

Each display of a per-camera output (overlay, instance-ID image, markers, instance points) is
repeated once per camera, on ``/sam3/NAME/...`` and named "NAME: ..."; the rest (grid, TF, the
node's focus pose) stays once. rviz_start.py applies it when sam3.launch.py has cameras;
config/sam3_cameras.rviz is its output for ``[head, wrist]`` (a test keeps them equal):

    python -m sam3_ros.ros.rviz_cameras config/sam3.rviz head wrist > config/sam3_cameras.rviz
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

NODE_TOPIC = "/sam3/"
CAMERA_OUTPUTS = ("overlay", "instance_id_image", "markers", "instance_points")
HEADER = ("# RViz2 view of a sam3 node with cameras [{names}] (sam3.launch.py cameras:=... rviz:=true makes one\n"
          "# like it for the cameras given: sam3_ros/ros/rviz_cameras.py). Each camera's overlay, instance IDs,\n"
          "# markers and points; the focused track once. The Fixed Frame is set by the launch file.\n")


def cameras_config(text: str, cameras: list[str]) -> str:
    """The RViz config ``text`` with each per-camera display repeated for every camera in ``cameras``."""
    config = yaml.safe_load(text)
    manager = config["Visualization Manager"]
    displays = []
    for display in manager["Displays"]:
        output = _camera_output(display)
        if output is None:
            displays.append(display)
            continue
        for camera in cameras:
            copied = copy.deepcopy(display)
            copied["Name"] = f"{camera}: {display['Name']}"
            copied["Topic"]["Value"] = f"{NODE_TOPIC}{camera}/{output}"
            displays.append(copied)
    manager["Displays"] = displays
    return HEADER.format(names=", ".join(cameras)) + yaml.safe_dump(config, sort_keys=False)


def _camera_output(display: dict) -> str | None:
    """The per-camera output a display shows (``overlay``, ...), or None."""
    topic = str(display.get("Topic", {}).get("Value", ""))
    output = topic[len(NODE_TOPIC):] if topic.startswith(NODE_TOPIC) else ""
    return output if output in CAMERA_OUTPUTS else None


if __name__ == "__main__":
    sys.stdout.write(cameras_config(Path(sys.argv[1]).read_text(), sys.argv[2:]))
