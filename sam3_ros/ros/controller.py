"""Everything the ROS node does, as plain Python over the core (no rclpy here).

``NodeCore`` owns the concepts (kept and validated even before the model has loaded), the
model's life cycle, the latest-frame mailbox, frame processing into ready-to-publish messages,
the prompt-service handlers and the diagnostics. ``node.py`` only wires it to rclpy.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..core.config import PipelineConfig
from ..core.depth import mask_points, position_of_points, transform_points
from ..core.image_encoding import UnsupportedImage, compressed_to_rgb, depth_to_metres, image_to_rgb
from ..core.pipeline import RefineRequest, Sam3Pipeline
from ..core.point_cloud import instance_cloud
from ..core.prompts import Concept, PromptError, make_concept
from ..core.results import FrameResult
from ..factory import LoadedPipeline
from ..io import messages
from ..io.overlay import draw_overlay
from ..io.ros_types import MessageTypes
from .find import FindGoal, FindOutcome, FindProgress, FindReason, FindSession
from .focus import Focus
from .params import NodeParams
from .stamp_sync import StampSynchronizer

log = logging.getLogger(__name__)

STAGE_WINDOW = 30          # frames averaged for FPS and stage latencies
ERROR_LOG_PERIOD_S = 5.0   # throttle for repeated input errors
MAX_CONCEPTS = 100         # more would stall every frame (thousands used to take the node's memory)

# (target_frame, source_frame, stamp_ns) -> (3x3 rotation, 3-vector translation), or raises LookupError.
TransformLookup = Callable[[str, str, int], tuple[np.ndarray, np.ndarray]]


class NodeState(enum.Enum):
    UNCONFIGURED = "unconfigured"
    LOADING = "loading"
    INACTIVE = "inactive"
    ACTIVE = "active"
    FAILED = "failed"


@dataclass
class CameraInput:
    image: Any
    info: Any = None
    depth: Any = None
    received_ns: int = 0


@dataclass
class FrameOutputs:
    """Messages to publish for one frame; None means "do not publish"."""

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


class LatestFrame:
    """A one-slot mailbox: a new frame replaces an unprocessed one, which counts as dropped."""

    def __init__(self) -> None:
        self._item: CameraInput | None = None
        self._ready = threading.Condition()

    def put(self, item: CameraInput) -> bool:
        with self._ready:
            replaced = self._item is not None
            self._item = item
            self._ready.notify()
            return replaced

    def take(self, timeout_s: float) -> CameraInput | None:
        with self._ready:
            if self._item is None:
                self._ready.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._ready:
            self._item = None


@dataclass
class Counters:
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


class NodeCore:
    def __init__(self, params: NodeParams, config: PipelineConfig, types: MessageTypes,
                 pipeline_factory: Callable[[PipelineConfig], LoadedPipeline],
                 now_ns: Callable[[], int] = time.time_ns, lookup_transform: TransformLookup | None = None):
        self.params = params
        self.config = config
        self.types = types
        self._factory = pipeline_factory
        self._now_ns = now_ns
        self._lookup_transform = lookup_transform
        self.state = NodeState.UNCONFIGURED
        self.failure = ""
        self.pipeline: Sam3Pipeline | None = None
        self.model: LoadedPipeline | None = None
        self.counters = Counters()
        self.mailbox = LatestFrame()
        self._lock = threading.Lock()
        self._concepts: list[Concept] = _initial_concepts(params.prompts)
        self._last_stamp_ns: int | None = None
        self._last_labels: dict[int, str] | None = None
        self._last_error_log: dict[str, float] = {}
        self._image_size: tuple[int, int] | None = None
        self._sync: StampSynchronizer | None = None
        # Input role ("image", "camera_info", "depth") -> the topic name as the node resolved it
        # (namespace and remapping applied); diagnostics name these. Set by the node on activate.
        self.topic_names: dict[str, str] = {}
        # Whether an optional output (a FrameOutputs field) has a subscriber; the node asks its
        # publishers. Outputs nobody subscribes to are not built.
        self.subscribed: Callable[[str], bool] = lambda output: True
        self.focus = Focus()
        self._finds: list[FindSession] = []
        self._find_count = 0

    # -- life cycle ------------------------------------------------------------------------------------
    def update_parameters(self, params: NodeParams, config: PipelineConfig) -> None:
        """New parameter values, taken at the next configure (concepts set meanwhile are kept)."""
        if self.pipeline is not None:
            raise RuntimeError("parameters change only while unconfigured")
        self.params, self.config = params, config

    def configure(self) -> None:
        """Load the model and warm it up; on failure the node stays unconfigured with the reason."""
        self.state = NodeState.LOADING
        try:
            self.model = self._factory(self.config)
            self.pipeline = self._warmed_up(self.model.pipeline)
            with self._lock:
                self.pipeline.set_concepts(self._concepts)
        except Exception as err:
            self.pipeline, self.model = None, None
            self.fail(f"model failed to load: {type(err).__name__}: {err}")
            raise
        self.state, self.failure = NodeState.INACTIVE, ""

    def fail(self, reason: str) -> None:
        """A transition failed (``reason`` says which and why): diagnostics report ERROR with it until
        the next configure succeeds."""
        self.state, self.failure = NodeState.FAILED, reason

    def activate(self) -> None:
        if self.state != NodeState.INACTIVE:
            raise RuntimeError(f"cannot activate from {self.state.value}")
        if self.params.offload_on_deactivate and self.model is not None:
            self.model.restore()
        self.counters.last_image_ns = None
        self.state = NodeState.ACTIVE

    def deactivate(self) -> None:
        """Stop taking frames and free GPU memory: tracks end, caches go, weights move to the host."""
        self.state = NodeState.INACTIVE
        self.mailbox.clear()
        self._stop_finds("deactivated")
        if self.pipeline is not None:
            self.pipeline.release_state()
        if self.params.offload_on_deactivate and self.model is not None:
            self.model.offload()
        _empty_cuda_cache()

    def cleanup(self) -> None:
        self.mailbox.clear()
        self._stop_finds("cleaned up")
        self.pipeline, self.model = None, None
        self._last_labels = None  # the next configure's latched label_info publisher starts empty
        _empty_cuda_cache()
        self.state = NodeState.UNCONFIGURED

    def _warmed_up(self, pipeline: Sam3Pipeline) -> Sam3Pipeline:
        """Run a few frames through the model, then start afresh so no warm-up track or ID leaks out."""
        pipeline.set_concepts([make_concept("warmup", "object")])
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        for _ in range(self.params.warmup_frames):
            pipeline.step(image)
        return Sam3Pipeline(pipeline.components, pipeline.tokenizer, pipeline.config)

    # -- prompt services: request message in, response fields out -------------------------------------
    def set_concepts(self, request) -> dict:
        return self._edit(lambda: self._parse_all(request.concepts), "set {n} concept(s)")

    def add_concept(self, request) -> dict:
        def add():
            concept = self._parse(request.concept)
            if not any(c.id == concept.id for c in self._concepts):
                return self._concepts + [concept]
            if not request.replace:
                raise PromptError(f"concept {concept.id!r} already exists; set replace=true to replace it")
            return [concept if c.id == concept.id else c for c in self._concepts]
        return self._edit(add, f"concept {request.concept.id or request.concept.text!r} added or replaced")

    def remove_concept(self, request) -> dict:
        def remove():
            if request.id not in [c.id for c in self._concepts]:
                raise PromptError(f"no concept with id {request.id!r}; active: {[c.id for c in self._concepts]}")
            return [c for c in self._concepts if c.id != request.id]
        return self._edit(remove, f"removed concept {request.id!r} and its tracks")

    def list_concepts(self, request=None) -> dict:
        return self._response(True, f"{len(self._concepts)} active concept(s); node {self.state.value}")

    def reset_tracks(self, request=None) -> dict:
        if self.pipeline is None:
            return self._response(False, f"no tracks to reset: the model is {self.state.value}")
        self.pipeline.request_reset()
        return self._response(True, "all tracks end on the next frame; new tracks get new IDs")

    def refine_track(self, request) -> dict:
        if self.pipeline is None:
            return self._response(False, f"cannot refine: the model is {self.state.value}")
        try:
            points = tuple((p.x, p.y, bool(flag)) for p, flag in
                           zip(request.points, _flags(request.point_positive, len(request.points))))
            box = _xyxy(request.box) if request.use_box else None
            self.pipeline.request_refine(RefineRequest(int(request.track_id), box, points))
        except PromptError as err:
            return self._response(False, str(err))
        return self._response(True, f"track {request.track_id} is corrected on the next frame")

    def _edit(self, change: Callable[[], list[Concept]], done: str) -> dict:
        with self._lock:
            try:
                concepts = change()
                if len(concepts) > MAX_CONCEPTS:
                    raise PromptError(f"{len(concepts)} concepts: at most {MAX_CONCEPTS}")
                if self.pipeline is not None:
                    self.pipeline.set_concepts(concepts)
            except PromptError as err:
                return self._response(False, f"nothing changed: {err}")
            self._concepts = concepts
        note = "" if self.pipeline is not None else f" (model {self.state.value}: applies once it is loaded)"
        return self._response(True, done.format(n=len(concepts)) + note)

    def _parse(self, msg) -> Concept:
        return messages.concept_from_msg(msg, self._image_size)

    def _parse_all(self, msgs) -> list[Concept]:
        concepts = [self._parse(m) for m in msgs]
        ids = [c.id for c in concepts]
        if len(ids) != len(set(ids)):
            raise PromptError(f"duplicate concept ids in {ids}")
        return concepts

    def _response(self, success: bool, message: str) -> dict:
        with_concepts = [messages.concept_msg(c, self.types) for c in self.active_concepts()]
        return {"success": success, "message": message, "active_concepts": with_concepts}

    def active_concepts(self) -> list[Concept]:
        return list(self._concepts)

    # -- frames ------------------------------------------------------------------------------------------------
    def camera_callbacks(self) -> list[Callable[[Any], None]]:
        """Subscription callbacks for the image, then camera info and depth when their topics are set.
        With more than one input, messages are paired by stamp before they reach ``on_camera``."""
        p = self.params
        roles = ["image"] + ["camera_info"] * bool(p.camera_info_topic) + ["depth"] * bool(p.depth_topic)
        if len(roles) == 1:
            self._sync = None
            return [self._on_raw_image(self.on_camera)]

        def paired(image, *partners):
            parts = dict(zip(roles[1:], partners))
            self.on_camera(image, parts.get("camera_info"), parts.get("depth"))
        self._sync = StampSynchronizer(len(roles), int(p.sync_slop_s * 1e9), p.queue_depth, paired)
        image, *others = [self._sync.callback(i, header_stamp_ns) for i in range(len(roles))]
        return [self._on_raw_image(image), *others]

    def _on_raw_image(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        def on_image(message) -> None:
            self.counters.last_raw_image_ns = self._now_ns()
            callback(message)
        return on_image

    def on_camera(self, image, info=None, depth=None) -> None:
        """Subscription callback: keep only the newest frame."""
        if self.state != NodeState.ACTIVE:
            return
        self.counters.received += 1
        self.counters.last_image_ns = self._now_ns()
        if self.mailbox.put(CameraInput(image, info, depth, self.counters.last_image_ns)):
            self.counters.dropped += 1

    def process_next(self, timeout_s: float = 0.1) -> FrameOutputs | None:
        """Worker loop body: process the newest frame, if any. Never raises for bad input."""
        item = self.mailbox.take(timeout_s)
        if item is None or self.pipeline is None or self.state != NodeState.ACTIVE:
            return None
        try:
            return self._process(item)
        except Exception as err:  # whatever a frame raises is counted and logged, never lost silently
            self.counters.failed_frames += 1
            self._throttled_error("pipeline", f"frame failed: {type(err).__name__}: {err}")
            return None

    def _process(self, item: CameraInput) -> FrameOutputs | None:
        if self.params.max_frame_age_s > 0:
            age_s = (self._now_ns() - _stamp_ns(item.image.header)) / 1e9
            if age_s > self.params.max_frame_age_s:
                self.counters.stale += 1
                return None
        try:
            rgb = _to_rgb(item.image)
        except UnsupportedImage as err:
            self.counters.bad_images += 1
            self._throttled_error("image", f"dropping image: {err}")
            return None
        stamp = _stamp_ns(item.image.header)
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:
            self.counters.time_resets += 1
            log.info("image stamps went backwards (camera restart or bag loop): resetting tracks")
            self.pipeline.request_reset()
        self._last_stamp_ns = stamp
        self._image_size = rgb.shape[:2]
        result = self.pipeline.step(rgb, stamp_ns=stamp)
        points: dict[int, np.ndarray] = {}
        if item.depth is not None:
            result, points = self._with_positions(result, item)
        for session in list(self._finds):
            session.on_frame(result)
        outputs = self._outputs(result, rgb, item, points)
        self._count(result, item.received_ns)  # last: a frame that raised above counts as failed only
        return outputs

    def _with_positions(self, result: FrameResult, item: CameraInput) -> tuple[FrameResult, dict[int, np.ndarray]]:
        """Instances with 3D positions, and each located instance's points (in the positions' frame)."""
        try:
            depth = depth_to_metres(item.depth.height, item.depth.width, item.depth.encoding, item.depth.step,
                                    item.depth.data, item.depth.is_bigendian)
        except UnsupportedImage as err:
            self._throttled_error("depth", f"ignoring depth: {err}")
            return result, {}
        fx, _, cx, _, fy, cy = (float(v) for v in list(item.info.k)[:6]) if item.info is not None and \
            len(item.info.k) == 9 else (0.0,) * 6
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):  # NaN K used to raise in the 3D fit
            self._throttled_error("info", "depth without a valid camera_info (K missing, zero or not finite): no 3D")
            return result, {}
        frame_id = item.depth.header.frame_id or item.image.header.frame_id
        transform = self._transform(frame_id, _stamp_ns(item.image.header))
        if transform is not None:
            frame_id = self.params.target_frame
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
        target = self.params.target_frame
        if not target or target == source_frame or self._lookup_transform is None:
            return None
        try:
            return self._lookup_transform(target, source_frame, stamp_ns)
        except LookupError as err:
            self._throttled_error("tf", f"no transform {source_frame} -> {target} ({err}); 3D stays in {source_frame}")
            return None

    def _outputs(self, result: FrameResult, rgb: np.ndarray, item: CameraInput,
                 points: dict[int, np.ndarray]) -> FrameOutputs:
        types, p = self.types, self.params
        header = _input_stamped(item, item.image.header.frame_id, types)
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
            cloud_header = _input_stamped(item, frame_id or self._points_frame(item), types)
            outputs.instance_points = messages.point_cloud2(instance_cloud(points, p.instance_points_max),
                                                            cloud_header, types)
        self._focus_outputs(result, header, outputs)
        return outputs

    def _points_frame(self, item: CameraInput) -> str:
        """The frame 3D output is in when no instance says: the target frame, else the depth's."""
        return self.params.target_frame or item.depth.header.frame_id or item.image.header.frame_id

    def _focus_outputs(self, result: FrameResult, header: Any, outputs: FrameOutputs) -> None:
        update = self.focus.on_frame(result, self.pipeline.tracks.live_ids)
        if update is None:
            return
        visible = update.instance
        if self.subscribed("focus_mask"):
            mask = visible.mask.to_array() if visible is not None else \
                np.zeros((result.image_height, result.image_width), bool)
            outputs.focus_mask = messages.mask_image(mask, header, self.types)
        has_pose = visible is not None and visible.position_3d is not None
        if has_pose:
            outputs.focus_pose = messages.pose_stamped(visible, header, self.types)
        outputs.focus_status = messages.focus_status(update.track_id, update.state, update.label, has_pose,
                                                     update.message, header, self.types)

    # -- focus and find ---------------------------------------------------------------------------------------
    def set_focus(self, request) -> dict:
        """~/focus: follow request.track_id (0 clears)."""
        if self.pipeline is None and request.track_id != 0:
            return {"success": False, "message": f"no tracks: the model is {self.state.value}"}
        live = self.pipeline.tracks.live_ids if self.pipeline is not None else []
        success, message = self.focus.set(int(request.track_id), live)
        return {"success": success, "message": message}

    def start_find(self, goal_msg) -> FindSession:
        """A ~/find goal: add its temporary concept and start watching frames (or say why not)."""
        if self.state != NodeState.ACTIVE:
            return FindSession.finished(None, FindReason.NOT_ACTIVE, f"the node is {self.state.value}, not active")
        if not self.params.depth_topic:
            return FindSession.finished(None, FindReason.NO_DEPTH, "no depth_topic is set: find needs 3D positions")
        try:
            concept = self._parse(goal_msg.concept)
        except PromptError as err:
            return FindSession.finished(None, FindReason.INVALID, f"invalid concept: {err}")
        if not goal_msg.keep_concept:
            self._find_count += 1
            concept = dataclasses.replace(concept, id=f"find{self._find_count}:{concept.id}"[:64])
        goal = FindGoal(concept, float(goal_msg.min_score), float(goal_msg.timeout_s), int(goal_msg.stable_frames),
                        bool(goal_msg.keep_concept))
        session = FindSession(goal)
        self._finds.append(session)  # before the concept exists, so no frame of it is missed
        added = self._edit(lambda: self._with_new(concept), "")
        if not added["success"]:
            self._finds.remove(session)
            return FindSession.finished(goal, FindReason.INVALID, added["message"])
        return session

    def finish_find(self, session: FindSession) -> None:
        """The goal ended: stop watching and drop its concept unless it is kept."""
        if session in self._finds:
            self._finds.remove(session)
            if not session.goal.keep_concept:
                concept_id = session.goal.concept.id
                self._edit(lambda: [c for c in self._concepts if c.id != concept_id], "")

    def find_feedback(self, progress: FindProgress) -> dict:
        return {"frames_seen": progress.frames_seen,
                "candidates": [messages.found_instance(i, self.types) for i in progress.candidates],
                "stable_for": [int(n) for n in progress.stable_for]}

    def find_result(self, outcome: FindOutcome) -> dict:
        return {"success": outcome.success, "reason": int(outcome.reason), "message": outcome.message,
                "instances": [messages.found_instance(i, self.types) for i in outcome.instances]}

    def _with_new(self, concept: Concept) -> list[Concept]:
        if any(c.id == concept.id for c in self._concepts):
            raise PromptError(f"concept {concept.id!r} already exists: give the goal another id")
        return self._concepts + [concept]

    def _stop_finds(self, why: str) -> None:
        for session in list(self._finds):
            session.stop(why)

    def _count(self, result: FrameResult, received_ns: int) -> None:
        c = self.counters
        c.processed += 1
        c.stage_ms.append(result.timings_ms)
        now = self._now_ns()
        c.done_ns.append(now)
        c.latency_ms.append((now - received_ns) / 1e6)

    def _throttled_error(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log.get(kind, -1e9) >= ERROR_LOG_PERIOD_S:
            self._last_error_log[kind] = now
            log.error("%s", message)

    # -- diagnostics ------------------------------------------------------------------------------------------
    def diagnostics(self, hardware_id: str = "sam3") -> Any:
        level, message = self._health()
        c = self.counters
        values: dict[str, Any] = {
            "state": self.state.value,
            "model": self.model.description if self.model is not None else self.failure or "not loaded",
            "fps": self._fps(),
            "latency_ms (receive to result)": _mean(c.latency_ms),
            "frames received": c.received,
            "frames processed": c.processed,
            "frames dropped (newer frame arrived)": c.dropped,
            "frames stale": c.stale,
            "bad images": c.bad_images,
            "failed frames": c.failed_frames,
            "camera restarts (stamps went backwards)": c.time_resets,
            "images without camera_info/depth partner": self._sync.unpaired_images if self._sync else 0,
            "live tracks": len(self.pipeline.tracks.tracks) if self.pipeline is not None else 0,
            "concepts": ", ".join(c_.id for c_ in self._concepts),
        }
        for stage in ("preprocess", "vision", "detector", "tracker", "association", "memory", "postprocess", "total"):
            values[f"stage {stage} ms"] = _mean([t.get(stage, 0.0) for t in c.stage_ms])
        values.update(_gpu_memory())
        header = messages.header(self._now_ns(), "", self.types)
        return messages.diagnostics(header, "sam3_ros: perception", hardware_id, values, level, message, self.types)

    def _health(self) -> tuple[int, str]:
        Level = messages.DiagnosticLevel
        if self.state == NodeState.FAILED:
            return Level.ERROR, self.failure
        if self.state != NodeState.ACTIVE:
            return Level.OK, f"node {self.state.value}"
        p, now = self.params, self._now_ns()
        recent = lambda ns: ns is not None and (now - ns) / 1e9 <= p.camera_timeout_s  # noqa: E731
        if not recent(self.counters.last_image_ns):
            named = {role: self.topic_names.get(role, topic) for role, topic in
                     (("image", p.image_topic), ("camera_info", p.camera_info_topic), ("depth", p.depth_topic))}
            if recent(self.counters.last_raw_image_ns):
                partners = " and ".join(named[r] for r, t in (("camera_info", p.camera_info_topic),
                                                              ("depth", p.depth_topic)) if t)
                return Level.WARN, (f"images arrive on {named['image']} but none pairs with {partners} within "
                                    f"sync_slop_s = {p.sync_slop_s:g} s for over {p.camera_timeout_s:g} s")
            return Level.WARN, f"no image on {named['image']} for over {p.camera_timeout_s:g} s"
        if not self._concepts:
            return Level.WARN, "no concepts: call ~/set_concepts or ~/add_concept"
        return Level.OK, f"tracking {len(self._concepts)} concept(s) at {self._fps():.1f} fps"

    def _fps(self) -> float:
        done = self.counters.done_ns
        return (len(done) - 1) / ((done[-1] - done[0]) / 1e9) if len(done) > 1 and done[-1] > done[0] else 0.0


def _initial_concepts(phrases: list[str]) -> list[Concept]:
    concepts = []
    for phrase in phrases:
        try:
            concepts.append(make_concept(None, phrase))
        except PromptError as err:
            log.error("ignoring start-up prompt %r: %s", phrase, err)
    return concepts


def _to_rgb(image) -> np.ndarray:
    if hasattr(image, "format"):  # sensor_msgs/CompressedImage
        return compressed_to_rgb(image.format, image.data)
    return image_to_rgb(image.height, image.width, image.encoding, image.step, image.data, image.is_bigendian)


def _input_stamped(item: CameraInput, frame_id: str, types: MessageTypes) -> Any:
    """A header with the input image's stamp as it came (sec, nanosec): an out-of-range nanosec
    summed to ns used to give a sec that no longer fits int32, failing every output."""
    return types.new("std_msgs/msg/Header", stamp=item.image.header.stamp, frame_id=frame_id)


def header_stamp_ns(message) -> int:
    """A stamped message's header stamp in nanoseconds."""
    return _stamp_ns(message.header)


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def _xyxy(box) -> tuple[float, float, float, float]:
    cx, cy = box.center.position.x, box.center.position.y
    return (cx - box.size_x / 2, cy - box.size_y / 2, cx + box.size_x / 2, cy + box.size_y / 2)


def _flags(values, count: int) -> list[bool]:
    flags = [bool(v) for v in values]
    if flags and len(flags) != count:
        raise PromptError(f"{count} points but {len(flags)} point_positive flags")
    return flags or [True] * count


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _gpu_memory() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"gpu memory allocated MiB": torch.cuda.memory_allocated() / 2**20,
            "gpu memory reserved MiB": torch.cuda.memory_reserved() / 2**20}
