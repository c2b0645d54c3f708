"""Frame sources for the offline runner: video files, image folders and rosbag2/rosbag1 recordings.

A source is an iterable of ``Frame``; every iteration starts from the first frame. ``index`` is
the frame's position in the source, so a skipped input leaves a gap. Constructors check that the
input is usable and raise ``SourceError`` with the reason when it is not.
"""
from __future__ import annotations

import abc
import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import cv2
import numpy as np
from rosbags.highlevel import AnyReader

from ..core.image_encoding import UnsupportedImage, compressed_to_rgb, image_to_rgb
from .ros_types import typestore

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
BAG_SUFFIXES = (".mcap", ".db3", ".bag")  # storage files rosbags opens on their own
IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DEFAULT_FPS = 30.0

Warn = Callable[[str], None]
_log = logging.getLogger(__name__)


class SourceError(Exception):
    """A source that cannot be read; the message says why."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One input frame. ``index``: its position in the source (a skipped frame leaves a gap; in
    a recording of several cameras, its position in its camera's topic); ``name``: the image file it
    came from, for image folders (None otherwise); ``camera``: the camera it comes from in a
    recording of several cameras ("" otherwise)."""

    index: int
    stamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    frame_id: str
    name: str | None = None
    camera: str = ""


class FrameSource(abc.ABC):
    """An iterable of Frames that may know how many it holds."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]: ...

    fps: float | None = None  # frames per second when the source knows it (a video's, an image folder's)

    def frame_count(self) -> int | None:
        """Number of frames when cheaply known (a container's estimate for videos), else None."""
        return None

    def __length_hint__(self) -> int:
        return self.frame_count() or 0


class VideoFileSource(FrameSource):
    """Frames of a video file, stamped with the decoder's position (or index / fps)."""

    def __init__(self, path: str | Path, frame_id: str = "camera"):
        self.path = Path(path)
        self.frame_id = frame_id
        capture = self._open()
        try:
            ok, _ = capture.read()
            if not ok:
                raise SourceError(f"{self.path}: OpenCV opened the video but could not decode a frame")
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = fps if fps > 0 else DEFAULT_FPS
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self._count = count if count > 0 else None
        finally:
            capture.release()

    def _open(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"{self.path}: OpenCV cannot open this file as a video")
        return capture

    def frame_count(self) -> int | None:
        return self._count

    def __iter__(self) -> Iterator[Frame]:
        capture = self._open()
        try:
            last_stamp = -1
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                # Some backends report no position (0 or repeats): fall back to index / fps.
                stamp = round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
                if stamp <= last_stamp:
                    stamp = max(round(index * 1e9 / self.fps), last_stamp + 1)
                last_stamp = stamp
                yield Frame(index, stamp, np.ascontiguousarray(bgr[..., ::-1]), self.frame_id)
                index += 1
        finally:
            capture.release()


class ImageFolderSource(FrameSource):
    """Image files of a folder in natural order ("2.png" before "10.png"), stamped index / fps."""

    def __init__(self, path: str | Path, fps: float = DEFAULT_FPS, frame_id: str = "camera",
                 on_warning: Warn | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} does not exist")
        if fps <= 0:
            raise SourceError(f"fps must be positive, got {fps}")
        images = (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = sorted(images, key=lambda p: natural_key(p.name))
        if not self.files:
            raise SourceError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = fps
        self.frame_id = frame_id
        self.on_warning = on_warning or _log.warning

    def frame_count(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            try:
                rgb = compressed_to_rgb(file.suffix.lstrip("."), file.read_bytes())
            except (OSError, UnsupportedImage) as err:
                self.on_warning(f"skipping {file}: {err}")
                continue
            yield Frame(index, round(index * 1e9 / self.fps), rgb, self.frame_id, file.name)


class RosbagSource(FrameSource):
    """sensor_msgs/Image or CompressedImage messages of one topic of a recording, or of one topic
    per camera (``cameras``: camera name -> topic).

    Reads rosbag2 directories (MCAP or sqlite3), bare .mcap/.db3 files and rosbag1 .bag files.
    Frames are stamped with the message header (the recording time when the header stamp is 0).
    ``topic`` may be omitted when the recording has exactly one image topic. Several cameras'
    frames come merged in recording order, each with its camera. ``fps`` is None: the rate is in
    the stamps (OverlayVideoWriter measures it there).
    """

    def __init__(self, path: str | Path, topic: str | None = None, on_warning: Warn | None = None,
                 cameras: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.on_warning = on_warning or _log.warning
        with self._open_reader() as reader:
            counts: dict[str, int] = {}
            types: dict[str, str] = {}
            for conn in reader.connections:
                types[conn.topic] = conn.msgtype
                if conn.msgtype in IMAGE_MSGTYPES:
                    counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
        available = ", ".join(sorted(counts)) or "none"
        if topic is None and not cameras:
            if len(counts) != 1:
                raise SourceError(f"{self.path}: choose an image topic; image topics: {available}")
            topic = next(iter(counts))
        self.cameras = dict(cameras) if cameras else {"": topic}  # "": the one camera of a single-topic source
        for wanted in self.cameras.values():
            if wanted not in counts:
                carries = f": it carries {types[wanted]}" if wanted in types else ""
                raise SourceError(f"{self.path} has no image topic {wanted!r}{carries}; image topics: {available}")
        self.topic = topic
        self._counts = {camera: counts[wanted] for camera, wanted in self.cameras.items()}

    @contextlib.contextmanager
    def _open_reader(self) -> Iterator[AnyReader]:
        if not self.path.exists():
            raise SourceError(f"recording {self.path} does not exist")
        try:
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
        except Exception as err:  # rosbags raises several error types for unreadable bags
            raise SourceError(f"{self.path}: cannot read the recording: {err}{_repair_hint(err)}") from err
        try:
            yield reader
        finally:
            reader.close()

    def frame_count(self) -> int:
        return sum(self._counts.values())

    def camera_frame_count(self, camera: str) -> int:
        """Messages on that camera's topic."""
        return self._counts[camera]

    def __iter__(self) -> Iterator[Frame]:
        camera_of = {topic: camera for camera, topic in self.cameras.items()}
        with self._open_reader() as reader:
            connections = [c for c in reader.connections if c.topic in camera_of]
            indices = dict.fromkeys(self.cameras, 0)
            for conn, recorded_ns, raw in reader.messages(connections=connections):
                camera = camera_of[conn.topic]
                index, indices[camera] = indices[camera], indices[camera] + 1
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                    rgb = _message_rgb(msg, conn.msgtype)
                except Exception as err:  # one bad message must not end the recording
                    self.on_warning(f"skipping message {index} on {conn.topic}: {err}")
                    continue
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                yield Frame(index, stamp or recorded_ns, rgb, msg.header.frame_id, camera=camera)


def open_source(path: str | Path, image_topic: str | None = None, on_warning: Warn | None = None,
                cameras: Mapping[str, str] | None = None) -> FrameSource:
    """The source for a path, chosen by what it is:

    - a directory with metadata.yaml: a rosbag2 recording;
    - a directory without one holding a single .mcap or .db3 file: that storage file;
    - a directory of images: an ImageFolderSource;
    - a .mcap, .db3 or .bag file: a recording; any other file: a video.

    ``cameras`` (camera name -> image topic) reads one topic per camera: recordings only.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if path.is_file() and path.suffix in BAG_SUFFIXES or (path / "metadata.yaml").exists():
        return RosbagSource(path, image_topic, on_warning, cameras)
    storage = [p for p in path.iterdir() if p.suffix in (".mcap", ".db3")] if path.is_dir() else []
    if len(storage) > 1:
        raise SourceError(f"{path} has several bag files but no metadata.yaml; open one of them")
    if storage:
        return RosbagSource(storage[0], image_topic, on_warning, cameras)
    if cameras:
        raise SourceError(f"{path} is not a rosbag2 recording: an image topic per camera (--image-topic given "
                          "several times, or NAME=TOPIC) needs one")
    if path.is_file():
        return VideoFileSource(path)
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        return ImageFolderSource(path, on_warning=on_warning)
    raise SourceError(f"{path} is neither a rosbag2 recording nor a folder of images")


def _message_rgb(msg: Any, msgtype: str) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return compressed_to_rgb(msg.format, msg.data)
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: "img2" < "img10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _repair_hint(err: Exception) -> str:
    """What to try when a bag cannot be opened: recordings cut short (power loss) are common."""
    text = str(err).lower()
    if "end magic" in text:
        return " (the MCAP file is cut short, e.g. the recording was interrupted: `mcap recover` rebuilds it)"
    if "malformed" in text or "not a database" in text:
        return " (the sqlite3 file is damaged: sqlite3's `.recover` may salvage it)"
    return ""
