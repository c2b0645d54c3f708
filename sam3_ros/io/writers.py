"""Writers of offline results: a rosbag2 MCAP bag, results.json and an overlay video.

Each is a context manager that finalises its file on exit, also when the block raised, so
whatever was written before an error stays readable.
"""
from __future__ import annotations

import abc
import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Callable, Mapping, Sequence, TypeVar

import cv2
import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer

from ..core.results import FrameResult
from . import messages
from .ros_types import RosbagsTypes

_log = logging.getLogger(__name__)


def result_topic(name: str, camera: str = "") -> str:
    """A bag topic of results: /sam3/instances, or /sam3/NAME/instances for camera NAME."""
    return "/".join(("/sam3", *([camera] if camera else []), name))


INSTANCES_TOPIC = result_topic("instances")
DETECTIONS_TOPIC = result_topic("detections")

_Self = TypeVar("_Self", bound="_ResultsFile")


class _ResultsFile(abc.ABC):
    """Closes on exit from a ``with`` block, telling ``close`` about the error that ended it."""

    @abc.abstractmethod
    def close(self, error: BaseException | None = None) -> None:
        """Finalise the file; safe to call more than once."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(exc)


class McapResultsWriter(_ResultsFile):
    """A rosbag2 bag (MCAP storage) with one InstanceArray and one Detection2DArray per frame.

    Messages are logged at the frame's stamp, on each camera's topics (``result_topic``; the
    single camera "" has /sam3/instances and /sam3/detections). The bag stores each topic's full
    message definition (with every nested type) and RIHS01 type hash, so custom types are readable
    without sam3_ros installed; ``ros2 bag play`` still needs the interfaces built to publish.
    """

    def __init__(self, path: str | Path, frame_id: str = "camera", cameras: Sequence[str] = ("",)):
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; a rosbag2 bag is never overwritten")
        self.frame_id = frame_id
        self._types = RosbagsTypes()
        self._writer: Writer | None = Writer(self.path, version=Writer.VERSION_LATEST,
                                             storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        convert: dict[str, tuple[str, Callable[..., Any]]] = {
            "instances": ("sam3_ros_interfaces/msg/InstanceArray", messages.instance_array),
            "detections": ("vision_msgs/msg/Detection2DArray", messages.detection2d_array),
        }
        self._topics = {camera: [
            (self._writer.add_connection(result_topic(name, camera), msgtype, typestore=self._types.store), to_msg)
            for name, (msgtype, to_msg) in convert.items()
        ] for camera in cameras}

    def write(self, result: FrameResult) -> None:
        """Write a frame's results on its camera's topics, with ``frame_id`` in the headers."""
        if self._writer is None:
            raise ValueError(f"{self.path} is closed")
        if result.stamp_ns is None:
            raise ValueError(f"frame {result.frame_index} has no stamp_ns; bag messages need one")
        if result.camera not in self._topics:
            raise ValueError(f"{self.path} has no topics for camera {result.camera!r}")
        header = messages.header(result.stamp_ns, self.frame_id, self._types)
        for connection, to_msg in self._topics[result.camera]:
            data = self._types.store.serialize_cdr(to_msg(result, header, self._types), connection.msgtype)
            self._writer.write(connection, result.stamp_ns, data)

    def close(self, error: BaseException | None = None) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            self._name_storage_file()

    def _name_storage_file(self) -> None:
        """rosbags names the storage file after the folder (results.mcap/results.mcap.mcap); give it
        ros2 bag's name, <bag>_0.mcap. Crash-safe: the file has both names while metadata.yaml is
        replaced, so the bag is readable after a kill at any step."""
        metadata_path = self.path / "metadata.yaml"
        metadata = yaml.safe_load(metadata_path.read_text())
        info = metadata["rosbag2_bagfile_information"]
        (old_name,) = info["relative_file_paths"]
        new_name = f"{self.path.stem}_0.mcap"
        if old_name == new_name:
            return
        os.link(self.path / old_name, self.path / new_name)
        info["relative_file_paths"] = [new_name]
        for file in info.get("files", []):
            if file.get("path") == old_name:
                file["path"] = new_name
        temporary = metadata_path.with_suffix(".yaml.tmp")
        temporary.write_text(yaml.safe_dump(metadata, sort_keys=False))
        os.replace(temporary, metadata_path)
        (self.path / old_name).unlink()


class JsonResultsWriter(_ResultsFile):
    """results.json: {"header": {source, prompts, model, ...}, "frames": [...], "complete", "frames_written", "error"}.

    Frames are appended and flushed one at a time, one a line; closing writes the tail, so the file
    is valid JSON after an error or a stop signal too, with "complete": false, the frames written and
    the reason in "error" (e.g. "stopped by SIGTERM after 12 frames").
    """

    def __init__(self, path: str | Path, source: str = "", prompts: Sequence[Any] = (),
                 model: Mapping[str, Any] | str | None = None, **header: Any):
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")
        head = {"source": source, "prompts": list(prompts), "model": model, **header}
        self._file.write(f'{{"header": {json.dumps(head)},\n"frames": [')
        self._frames = 0

    def write(self, result: FrameResult, **about: Any) -> None:
        """Append one frame; ``about`` adds keys to its entry (e.g. the input file it came from)."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        text = json.dumps({**result.to_json(), **about}, allow_nan=False)  # NaN would make the file invalid JSON
        self._file.write(("\n" if self._frames == 0 else ",\n") + text)
        self._file.flush()
        self._frames += 1

    def close(self, error: BaseException | None = None) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        message = None if error is None else _describe_error(error, self._frames)
        file.write(f'\n],\n"complete": {json.dumps(error is None)},\n"frames_written": {self._frames},\n'
                   f'"error": {json.dumps(message)}}}\n')
        file.close()


def _describe_error(error: BaseException, frames: int) -> str:
    """What stopped a run and how far it got, e.g. "stopped by SIGTERM after 12 frames"."""
    if isinstance(error, KeyboardInterrupt):
        reason = str(error) or "stopped by Ctrl-C"
        return f"{reason} after {frames} frame{'s' * (frames != 1)}"
    return f"{type(error).__name__}: {error}"


MIN_FPS, MAX_FPS = 1.0, 1000.0  # a rate measured from stamps outside these is not a camera's (the video gets 30)


class OverlayVideoWriter(_ResultsFile):
    """An MP4 (mp4v) video of RGB frames, the first frame's size, at the input's rate.

    ``fps`` None: the rate is measured from the stamps of the first ``FPS_PROBE_FRAMES`` frames
    (a rosbag's camera rate), which are held until then. A frame of another size than the first
    (an image folder of mixed sizes) is scaled to fit, keeping its aspect ratio, with one warning:
    results.json and the bag keep every frame at its own size. MPEG-4 needs even sizes: an odd
    height or width gets one more row or column, repeating the edge.
    """

    FPS_PROBE_FRAMES = 8

    def __init__(self, path: str | Path, fps: float | None,
                 on_warning: Callable[[str], None] | None = None):
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.frames_written = 0
        self._on_warning = on_warning or _log.warning
        self._pending: list[tuple[np.ndarray, int | None]] = []  # held while the rate is measured
        self._video: cv2.VideoWriter | None = None  # opened by the first frame
        self._size: tuple[int, int] | None = None
        self._resized = False
        self._closed = False

    def write(self, rgb: np.ndarray, stamp_ns: int | None = None) -> None:
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        if self.fps is None:
            self._pending.append((rgb, stamp_ns))
            if len(self._pending) >= self.FPS_PROBE_FRAMES:
                self._write_pending()
            return
        self._write(rgb)

    def _write_pending(self) -> None:
        if self.fps is None:
            measured = fps_from_stamps([stamp for _, stamp in self._pending])
            self.fps = measured if MIN_FPS <= measured <= MAX_FPS else 30.0
            if self.fps != measured:
                self._on_warning(f"{self.path.name}: the frame stamps say {measured:g} frames per second; "
                                 f"the video plays at {self.fps:g}")
        pending, self._pending = self._pending, []
        for rgb, _ in pending:
            self._write(rgb)

    def _write(self, rgb: np.ndarray) -> None:
        height, width = rgb.shape[:2]
        if self._video is None:
            self._open((width, height))
        if (width, height) != self._size:
            if not self._resized:
                self._on_warning(f"{self.path.name}: frame {self.frames_written} is {width}x{height}, the video is "
                                 f"{self._size[0]}x{self._size[1]}: frames of another size are scaled to fit "
                                 "(results.json and the bag keep their own size)")
                self._resized = True
            rgb = _fit(rgb, self._size)
            height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        self._video.write(cv2.copyMakeBorder(bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE))
        self.frames_written += 1

    def _open(self, size: tuple[int, int]) -> None:
        even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, even)
        if not video.isOpened():
            raise OSError(f"OpenCV cannot write an mp4v video to {self.path}")
        self._video, self._size = video, size

    def close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending:  # a short input: its rate comes from the frames there are
                self._write_pending()
        finally:
            if self._video is not None:
                video, self._video = self._video, None
                video.release()


def fps_from_stamps(stamps: Sequence[int | None], default: float = 30.0) -> float:
    """Frames per second from frame stamps (ns): one over the median positive step; ``default``
    when the stamps do not tell (fewer than two, or not increasing)."""
    known = [s for s in stamps if s is not None]
    steps = sorted(b - a for a, b in zip(known, known[1:]) if b > a)
    if not steps:
        return default
    return round(1e9 / steps[len(steps) // 2], 3)


def _fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` scaled into a (width, height) ``size`` frame, aspect kept, black bars around."""
    width, height = size
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    new_w, new_h = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
    scaled = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = scaled
    return out
