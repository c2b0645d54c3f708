"""One camera of the node, without rclpy: its inputs, clock checks, 3D and messages.

A ``CameraSession`` owns what is per camera (tf2_ros's listener over a shared buffer is the
model): its settings, counters, stamp pairing, last stamp, last labels, image size, and the
building of its outputs from its ``FrameResult``. The shared pipeline, the concepts, the
lifecycle, find and focus stay in ``NodeCore`` (controller.py). ``LatestFrames`` is the mailbox
all sessions share: one slot per camera, one doorbell.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..core.depth import mask_points, position_of_points, transform_points
from ..core.image_encoding import UnsupportedImage, compressed_to_rgb, depth_to_metres, image_to_rgb
from ..core.point_cloud import instance_cloud
from ..core.results import FrameResult
from ..io import messages
from ..io.overlay import draw_overlay
from ..io.ros_types import MessageTypes
from .params import CameraSettings, NodeParams
from .stamp_sync import StampSynchronizer

log = logging.getLogger(__name__)

STAGE_WINDOW = 30          # frames averaged for FPS and latencies
ERROR_LOG_PERIOD_S = 5.0   # throttle for repeated input errors

# (target_frame, source_frame, stamp_ns) -> (3x3 rotation, 3-vector translation), or raises LookupError.
TransformLookup = Callable[[str, str, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class CameraInput:
    """One camera's paired messages (image, and camera info and depth when subscribed) and when they arrived."""

    image: Any
    info: Any = None
    depth: Any = None
    received_ns: int = 0


@dataclass
class DecodedFrame:
    """A frame that passed the clock and image checks: its input messages, RGB pixels and stamp."""

    item: CameraInput
    rgb: np.ndarray      # (H, W, 3) uint8
    stamp_ns: int
    restarted: bool      # stamps went backwards: this camera's tracks must end first


@dataclass
class FrameOutputs:
    """Messages to publish for one camera's frame; None means "do not publish"."""

    result: FrameResult
    instances: Any
    detections: Any
    detections_3d: Any = None
    id_image: Any = None
    label_info: Any = None
    overlay: Any = None
    markers: Any = None
    instance_points: Any = None
    focus_pose: Any = None
    focus_mask: Any = None
    focus_status: Any = None


@dataclass
class Counters:
    """One camera's frame counts and recent timings."""

    received: int = 0
    processed: int = 0
    dropped: int = 0        # replaced in the mailbox before their turn
    stale: int = 0          # older than max_frame_age_s when their turn came
    bad_images: int = 0     # unsupported encoding, empty, corrupt
    failed_frames: int = 0  # the pipeline, 3D or message building raised
    time_resets: int = 0    # camera clock went backwards (restart, bag loop): tracks reset
    last_image_ns: int | None = None      # last frame handed to the mailbox (image + partners)
    last_raw_image_ns: int | None = None  # last image received, paired or not
    stage_ms: deque = field(default_factory=lambda: deque(maxlen=STAGE_WINDOW))
    done_ns: deque = field(default_factory=lambda: deque(maxlen=STAGE_WINDOW))
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=STAGE_WINDOW))

    def fps(self) -> float:
        done = self.done_ns
        return (len(done) - 1) / ((done[-1] - done[0]) / 1e9) if len(done) > 1 and done[-1] > done[0] else 0.0


class LatestFrames:
    """The mailbox of every camera: one slot each (a new frame replaces an unprocessed one, which counts
    as dropped) and one doorbell, so a frame from any camera wakes the worker."""

    def __init__(self) -> None:
        self._items: dict[str, CameraInput] = {}
        self._ready = threading.Condition()

    def put(self, camera: str, item: CameraInput) -> bool:
        """True when it replaced an unprocessed frame of that camera."""
        with self._ready:
            replaced = camera in self._items
            self._items[camera] = item
            self._ready.notify()
            return replaced

    def take_all(self, timeout_s: float) -> dict[str, CameraInput]:
        """Every camera's pending frame (waiting up to ``timeout_s`` for the first); the slots empty."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout_s)
            items, self._items = self._items, {}
            return items

    def clear(self) -> None:
        with self._ready:
            self._items.clear()


class ThrottledLog:
    """Logs an error of one kind at most every ERROR_LOG_PERIOD_S."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._last: dict[str, float] = {}

    def error(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= ERROR_LOG_PERIOD_S:
            self._last[kind] = now
            log.error("%s%s", self._prefix, message)


class CameraSession:
    """One camera: settings (``CameraSettings``), counters, stamp pairing and outputs. Per camera, all
    of it; ``params`` are the node's (output switches shared by every camera); ``lookup_transform()``
    gives the node's TF lookup, or None when it has none.

    ``topic_names``: input role ("image", "camera_info", "depth") -> the topic as the node resolved it
    (set by the node on activate; diagnostics name these). ``subscribed(output)``: whether a
    ``FrameOutputs`` field has a subscriber on this camera's publisher (focus outputs: the node's);
    outputs nobody subscribes to are not built.
    """

    def __init__(self, settings: CameraSettings, params: NodeParams, types: MessageTypes, mailbox: LatestFrames,
                 now_ns: Callable[[], int], lookup_transform: Callable[[], TransformLookup | None] = lambda: None,
                 counters: Counters | None = None):
        self.settings = settings
        self.name = settings.name
        self.params = params
        self.types = types
        self.counters = counters or Counters()
        self.topic_names: dict[str, str] = {}
        self.subscribed: Callable[[str], bool] = lambda output: True
        self.image_size: tuple[int, int] | None = None  # (H, W) of the last frame: exemplar boxes check it
        self.active = False
        self._mailbox = mailbox
        self._now_ns = now_ns
        self._lookup_transform = lookup_transform
        self._sync: StampSynchronizer | None = None
        self._last_stamp_ns: int | None = None
        self._last_labels: dict[int, str] | None = None
        self._log = ThrottledLog(f"camera {self.name}: " if self.name else "")

    # -- inputs --------------------------------------------------------------------------------------
    def inputs(self) -> list[tuple[str, str]]:
        """(role, topic) of each subscription: the image, then camera info and depth when set."""
        s = self.settings
        return [(role, topic) for role, topic in (("image", s.image_topic), ("camera_info", s.camera_info_topic),
                                                  ("depth", s.depth_topic)) if topic]

    def callbacks(self) -> list[Callable[[Any], None]]:
        """Subscription callbacks in ``inputs()`` order. With more than one input, messages are paired by
        stamp before they reach ``on_camera``."""
        roles = [role for role, _ in self.inputs()]
        if len(roles) == 1:
            self._sync = None
            return [self._on_raw_image(self.on_camera)]

        def paired(image, *partners):
            parts = dict(zip(roles[1:], partners))
            self.on_camera(image, parts.get("camera_info"), parts.get("depth"))
        s = self.settings
        self._sync = StampSynchronizer(len(roles), int(s.sync_slop_s * 1e9), s.queue_depth, paired)
        image, *others = [self._sync.callback(i, header_stamp_ns) for i in range(len(roles))]
        return [self._on_raw_image(image), *others]

    def _on_raw_image(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def on_image(message) -> None:
            self.counters.last_raw_image_ns = self._now_ns()
            callback(message)
        return on_image

    def on_camera(self, image, info=None, depth=None) -> None:
        """A paired frame: keep only the newest."""
        if not self.active:
            return
        self.counters.received += 1
        self.counters.last_image_ns = self._now_ns()
        if self._mailbox.put(self.name, CameraInput(image, info, depth, self.counters.last_image_ns)):
            self.counters.dropped += 1

    def start(self) -> None:
        self.active, self.counters.last_image_ns = True, None

    def stop(self) -> None:
        self.active = False

    def forget_labels(self) -> None:
        """The next configure's latched label_info publisher starts empty."""
        self._last_labels = None

    # -- a frame's turn ----------------------------------------------------------------------------------
    def decode(self, item: CameraInput) -> DecodedFrame | None:
        """The frame's pixels, or None when it is stale or its image is bad (counted and logged)."""
        stamp = header_stamp_ns(item.image)
        max_age_s = self.settings.max_frame_age_s
        if max_age_s > 0 and (self._now_ns() - stamp) / 1e9 > max_age_s:
            self.counters.stale += 1
            return None
        try:
            rgb = _to_rgb(item.image)
        except UnsupportedImage as err:
            self.counters.bad_images += 1
            self._log.error("image", f"dropping image: {err}")
            return None
        restarted = self._last_stamp_ns is not None and stamp < self._last_stamp_ns
        if restarted:
            self.counters.time_resets += 1
            log.info("%simage stamps went backwards (camera restart or bag loop): resetting tracks",
                     f"camera {self.name}: " if self.name else "")
        self._last_stamp_ns = stamp
        self.image_size = rgb.shape[:2]
        return DecodedFrame(item, rgb, stamp, restarted)

    def failed(self, err: Exception) -> None:
        self.counters.failed_frames += 1
        self._log.error("pipeline", f"frame failed: {type(err).__name__}: {err}")

    def count(self, result: FrameResult, received_ns: int) -> None:
        c = self.counters
        c.processed += 1
        c.stage_ms.append(result.timings_ms)
        now = self._now_ns()
        c.done_ns.append(now)
        c.latency_ms.append((now - received_ns) / 1e6)

    # -- 3D ----------------------------------------------------------------------------------------------
    def with_positions(self, result: FrameResult, item: CameraInput) -> tuple[FrameResult, dict[int, np.ndarray]]:
        """Instances with 3D positions, and each located instance's points (in the positions' frame)."""
        try:
            depth = depth_to_metres(item.depth.height, item.depth.width, item.depth.encoding, item.depth.step,
                                    item.depth.data, item.depth.is_bigendian)
        except UnsupportedImage as err:
            self._log.error("depth", f"ignoring depth: {err}")
            return result, {}
        fx, _, cx, _, fy, cy = (float(v) for v in list(item.info.k)[:6]) if item.info is not None and \
            len(item.info.k) == 9 else (0.0,) * 6
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):  # NaN K used to raise in the 3D fit
            self._log.error("info", "depth without a valid camera_info (K missing, zero or not finite): no 3D")
            return result, {}
        frame_id = item.depth.header.frame_id or item.image.header.frame_id
        transform = self._transform(frame_id, header_stamp_ns(item.image))
        if transform is not None:
            frame_id = self.settings.target_frame
        instances, points_by_track = [], {}
        for inst in result.instances:
            points = mask_points(inst.mask, depth, fx, fy, cx, cy)
            position = None
            if points is not None:
                points = transform_points(points, *transform) if transform is not None else points
                points_by_track[inst.track_id] = points
                position = position_of_points(points, frame_id)
            instances.append(dataclasses.replace(inst, position_3d=position))
        return dataclasses.replace(result, instances=instances), points_by_track

    def _transform(self, source_frame: str, stamp_ns: int):
        target, lookup = self.settings.target_frame, self._lookup_transform()
        if not target or target == source_frame or lookup is None:
            return None
        try:
            return lookup(target, source_frame, stamp_ns)
        except LookupError as err:
            self._log.error("tf", f"no transform {source_frame} -> {target} ({err}); 3D stays in {source_frame}")
            return None

    # -- messages ------------------------------------------------------------------------------------------
    def outputs(self, result: FrameResult, rgb: np.ndarray, item: CameraInput,
                points: dict[int, np.ndarray]) -> FrameOutputs:
        """This camera's messages for one frame, in its image's frame and stamp; only what is subscribed."""
        types, p = self.types, self.params
        header = input_header(item, item.image.header.frame_id, types)
        outputs = FrameOutputs(
            result=result,
            instances=messages.instance_array(result, header, types),
            detections=messages.detection2d_array(result, header, types),
        )
        if item.depth is not None:
            outputs.detections_3d = messages.detection3d_array(result, header, types)
        wanted = self.subscribed
        if p.publish_id_image:
            if wanted("id_image"):
                outputs.id_image = messages.instance_id_image(result, header, types)
            labels = {inst.track_id: inst.label for inst in result.instances}
            if labels != self._last_labels:  # latched: built on every change, subscribers or not
                outputs.label_info = messages.label_info(labels, header, types)
                self._last_labels = labels
        if p.publish_overlay and wanted("overlay"):
            outputs.overlay = messages.overlay_image(draw_overlay(rgb, result), header, types)
        if p.publish_markers and item.depth is not None and wanted("markers"):
            outputs.markers = messages.marker_array(result, header, types, p.marker_lifetime_s)
        if p.publish_instance_points and item.depth is not None and wanted("instance_points"):
            frame_id = next(iter(i.position_3d.frame_id for i in result.instances if i.position_3d), None)
            cloud_header = input_header(item, frame_id or self._points_frame(item), types)
            outputs.instance_points = messages.point_cloud2(instance_cloud(points, p.instance_points_max),
                                                            cloud_header, types)
        return outputs

    def _points_frame(self, item: CameraInput) -> str:
        """The frame 3D output is in when no instance says: the target frame, else the depth's."""
        return self.settings.target_frame or item.depth.header.frame_id or item.image.header.frame_id

    # -- diagnostics ---------------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """This camera's diagnostics values."""
        c = self.counters
        return {
            "fps": c.fps(),
            "latency_ms (receive to result)": mean(c.latency_ms),
            "frames received": c.received,
            "frames processed": c.processed,
            "frames dropped (newer frame arrived)": c.dropped,
            "frames stale": c.stale,
            "bad images": c.bad_images,
            "failed frames": c.failed_frames,
            "camera restarts (stamps went backwards)": c.time_resets,
            "images without camera_info/depth partner": self._sync.unpaired_images if self._sync else 0,
        }

    def silence(self) -> str | None:
        """Why this active camera gives no frames (nothing, or images that never pair), or None."""
        s, now = self.settings, self._now_ns()
        recent = lambda ns: ns is not None and (now - ns) / 1e9 <= s.camera_timeout_s  # noqa: E731
        if recent(self.counters.last_image_ns):
            return None
        named = {role: self.topic_names.get(role, topic) for role, topic in self.inputs()}
        if recent(self.counters.last_raw_image_ns):
            partners = " and ".join(named[role] for role in ("camera_info", "depth") if role in named)
            return (f"images arrive on {named['image']} but none pairs with {partners} within "
                    f"sync_slop_s = {s.sync_slop_s:g} s for over {s.camera_timeout_s:g} s")
        return f"no image on {named['image']} for over {s.camera_timeout_s:g} s"


def header_stamp_ns(message) -> int:
    """A stamped message's header stamp in nanoseconds."""
    return int(message.header.stamp.sec) * 10**9 + int(message.header.stamp.nanosec)


def input_header(item: CameraInput, frame_id: str, types: MessageTypes) -> Any:
    """A header with the input image's stamp as it came (sec, nanosec): an out-of-range nanosec
    summed to ns used to give a sec that no longer fits int32, failing every output."""
    return types.new("std_msgs/msg/Header", stamp=item.image.header.stamp, frame_id=frame_id)


def _to_rgb(image) -> np.ndarray:
    if hasattr(image, "format"):  # sensor_msgs/CompressedImage
        return compressed_to_rgb(image.format, image.data)
    return image_to_rgb(image.height, image.width, image.encoding, image.step, image.data, image.is_bigendian)


def mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0
