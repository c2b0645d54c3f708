"""Recordings generated for the fleet tests: clips, image folders, rosbag2 bags, broken ones."""
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from sam3_ros.demo_clip import demo_frame
from sam3_ros.io.ros_types import typestore
from test_cli_run import write_clip

CAMERA_TOPIC = "/camera/color/image_raw"
# Random weights score low: lower the bars so the outputs hold instances worth comparing.
LOW_BARS = ["--set", "detection.score_threshold=0.2", "--set", "detection.new_track_threshold=0.2"]
PROMPTS = ["--prompt", "red ball", "--prompt", "blue box"]


def image_folder(path: Path, frames: int) -> Path:
    path.mkdir(parents=True)
    for i in range(frames):
        cv2.imwrite(str(path / f"{i}.png"), demo_frame(i, frames)[:, :, ::-1])
    return path


def image_bag(path: Path, frames: int, topic: str = CAMERA_TOPIC) -> Path:
    """A rosbag2 (MCAP) with bgr8 sensor_msgs/Image frames on ``topic``."""
    store = typestore()
    Image, Header, Time = (store.types[t] for t in (
        "sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
        for i in range(frames):
            bgr = np.ascontiguousarray(demo_frame(i, frames)[:, :, ::-1])
            msg = Image(Header(Time(10, i * 1000), "camera"), 240, 320, "bgr8", 0, 960, bgr.reshape(-1))
            writer.write(conn, 10**10 + i * 1000, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


def corrupt_bag(path: Path, frames: int) -> Path:
    """A rosbag2 whose MCAP file was cut in half, as by a recorder that lost power."""
    image_bag(path, frames)
    storage = next(path.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    return path


def empty_video(path: Path) -> Path:
    """An MP4 container with no frames in it."""
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240)).release()
    return path


__all__ = ["write_clip", "image_folder", "image_bag", "corrupt_bag", "empty_video"]
