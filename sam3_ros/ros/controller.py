"""Everything the ROS node does, as plain Python over the core (no rclpy here).

``NodeCore`` owns the concepts (kept and validated even before the model has loaded), the
model's life cycle, one ``CameraSession`` per camera (camera_session.py: inputs, counters,
3D, messages) around the one shared pipeline, the worker's step, the prompt-service handlers,
find, focus and the diagnostics roll-up. ``node.py`` only wires it to rclpy.

Scheduling (``process_step``): each step takes the newest frame of every camera that has one and
runs them through the model together (``Sam3Pipeline.step_cameras``). A frame from any camera
wakes the worker; a silent camera is never waited for. Every camera with a pending frame is in
the next step, so a frame waits at most for the step in flight, and a fast camera cannot starve
a slow one: it only replaces its own older frame (counted as dropped).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from ..core.config import PipelineConfig
from ..core.pipeline import CameraFrame, RefineRequest, Sam3Pipeline
from ..core.prompts import Concept, PromptError, make_concept
from ..core.results import FrameResult
from ..factory import LoadedPipeline
from ..io import messages
from ..io.ros_types import MessageTypes
from .camera_session import (STAGE_WINDOW, CameraSession, Counters, DecodedFrame, FrameOutputs, LatestFrames,
                             TransformLookup, mean)
from .find import FindGoal, FindOutcome, FindProgress, FindReason, FindSession
from .focus import Focus
from .params import NodeParams

log = logging.getLogger(__name__)

MAX_CONCEPTS = 100         # more would stall every frame (thousands used to take the node's memory)
STAGES = ("preprocess", "vision", "detector", "tracker", "association", "memory", "postprocess", "total")


class NodeState(enum.Enum):
    UNCONFIGURED = "unconfigured"
    LOADING = "loading"
    INACTIVE = "inactive"
    ACTIVE = "active"
    FAILED = "failed"


class NodeCore:
    """The node without rclpy: shared state (pipeline, concepts, lifecycle, focus, finds) and one
    ``CameraSession`` per camera in ``sessions`` (name -> session, in ``cameras`` order; the single
    camera "" when ``cameras`` is empty)."""

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
        self.mailbox = LatestFrames()
        self.sessions: dict[str, CameraSession] = {}
        self._make_sessions()
        self._lock = threading.Lock()
        self._concepts: list[Concept] = _initial_concepts(params.prompts)
        self._step_ms: deque = deque(maxlen=STAGE_WINDOW)  # stage timings of recent steps
        self.focus = Focus()
        self._finds: list[FindSession] = []
        self._find_count = 0

    def _make_sessions(self) -> None:
        """One session per camera of the parameters; a camera that stays keeps its counters."""
        old = self.sessions
        self.sessions = {
            s.name: CameraSession(s, self.params, self.types, self.mailbox, self._now_ns,
                                  lambda: self._lookup_transform, counters=old[s.name].counters if s.name in old else None)
            for s in self.params.camera_settings()}

    # -- the single camera (cameras empty) or the first one: today's API -----------------------------------
    @property
    def first(self) -> CameraSession:
        return next(iter(self.sessions.values()))

    @property
    def counters(self) -> Counters:
        """The first camera's counters (the only camera's when ``cameras`` is empty)."""
        return self.first.counters

    @property
    def topic_names(self) -> dict[str, str]:
        return self.first.topic_names

    @property
    def subscribed(self) -> Callable[[str], bool]:
        return self.first.subscribed

    @subscribed.setter
    def subscribed(self, wanted: Callable[[str], bool]) -> None:
        """The same subscriber test for every camera (per camera: set ``sessions[name].subscribed``)."""
        for session in self.sessions.values():
            session.subscribed = wanted

    def camera_callbacks(self) -> list[Callable[[Any], None]]:
        return self.first.callbacks()

    def on_camera(self, image, info=None, depth=None) -> None:
        """The first camera's subscription callback (each session has its own: ``sessions[name].on_camera``)."""
        self.first.on_camera(image, info, depth)

    # -- life cycle ------------------------------------------------------------------------------------
    def update_parameters(self, params: NodeParams, config: PipelineConfig) -> None:
        """New parameter values, taken at the next configure (concepts set meanwhile are kept)."""
        if self.pipeline is not None:
            raise RuntimeError("parameters change only while unconfigured")
        self.params, self.config = params, config

    def configure(self) -> None:
        """Load the model and warm it up; on failure the node stays unconfigured with the reason. The cameras
        are (re)made from the parameters here."""
        self._make_sessions()
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
        for session in self.sessions.values():
            session.start()
        self.state = NodeState.ACTIVE

    def deactivate(self) -> None:
        """Stop taking frames and free GPU memory: tracks end, caches go, weights move to the host."""
        self.state = NodeState.INACTIVE
        self._stop_sessions()
        self._stop_finds("deactivated")
        if self.pipeline is not None:
            self.pipeline.release_state()
        if self.params.offload_on_deactivate and self.model is not None:
            self.model.offload()
        _empty_cuda_cache()

    def cleanup(self) -> None:
        self._stop_sessions()
        self._stop_finds("cleaned up")
        self.pipeline, self.model = None, None
        for session in self.sessions.values():
            session.forget_labels()
        _empty_cuda_cache()
        self.state = NodeState.UNCONFIGURED

    def _stop_sessions(self) -> None:
        for session in self.sessions.values():
            session.stop()
        self.mailbox.clear()

    def _warmed_up(self, pipeline: Sam3Pipeline) -> Sam3Pipeline:
        """Run a few frames through the model, then start afresh so no warm-up track or ID leaks out."""
        pipeline.set_concepts([make_concept("warmup", "object")])
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        for _ in range(self.params.warmup_frames):
            pipeline.step_cameras({name: CameraFrame(image) for name in self.sessions})
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
        self.pipeline.request_reset()  # every camera's
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
        """A Concept from its message; exemplar boxes are checked against its camera's last image.
        An empty camera becomes the first of ``cameras`` (the pipeline's "" would be whichever camera
        a step lists first)."""
        session = self._camera(msg.camera or "", "concept")
        concept = messages.concept_from_msg(msg, session.image_size)
        return dataclasses.replace(concept, camera=session.name) if concept.exemplars else concept

    def _camera(self, name: str, what: str) -> CameraSession:
        """The session a request names ("": the first camera), or PromptError naming the cameras."""
        session = self.sessions.get(name) if name else self.first
        if session is None:
            raise PromptError(f"{what} names camera {name!r}, which is not one of the node's cameras "
                              f"{list(self.sessions)}")
        return session

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
    def process_step(self, timeout_s: float = 0.1) -> dict[str, FrameOutputs]:
        """Worker loop body: one step over the newest frame of every camera that has one (waiting up to
        ``timeout_s`` for the first); camera -> its outputs. Never raises for bad input: a failure is
        counted on the cameras it touched."""
        items = self.mailbox.take_all(timeout_s)
        if not items or self.pipeline is None or self.state != NodeState.ACTIVE:
            return {}
        frames = {name: frame for name, item in items.items()
                  if name in self.sessions and (frame := self.sessions[name].decode(item)) is not None}
        if not frames:
            return {}
        try:
            for name in (name for name, frame in frames.items() if frame.restarted):
                self.pipeline.request_reset(name)
            results = self.pipeline.step_cameras({name: CameraFrame(f.rgb, f.stamp_ns) for name, f in frames.items()})
        except Exception as err:  # whatever a step raises is counted and logged, never lost silently
            for name in frames:
                self.sessions[name].failed(err)
            return {}
        self._step_ms.append(next(iter(results.values())).timings_ms)
        outputs = {}
        for name, result in results.items():
            session = self.sessions[name]
            try:
                outputs[name] = self._camera_outputs(session, frames[name], result)
            except Exception as err:  # one camera's 3D or messages failing leaves the others' outputs
                session.failed(err)
        return outputs

    def process_next(self, timeout_s: float = 0.1) -> FrameOutputs | None:
        """``process_step`` for a node with one camera: its outputs, or None."""
        if len(self.sessions) > 1:
            raise RuntimeError(f"{len(self.sessions)} cameras: use process_step")
        return self.process_step(timeout_s).get(self.first.name)

    def _camera_outputs(self, session: CameraSession, frame: DecodedFrame, result: FrameResult) -> FrameOutputs:
        """One camera's stages after the model: 3D, find, messages, focus."""
        item = frame.item
        points: dict[int, np.ndarray] = {}
        if item.depth is not None:
            result, points = session.with_positions(result, item)
        for find in list(self._finds):
            find.on_frame(result)
        outputs = session.outputs(result, frame.rgb, item, points)
        self._focus_outputs(session, result, outputs)
        session.count(result, item.received_ns)  # last: a frame that raised above counts as failed only
        return outputs

    def _focus_outputs(self, session: CameraSession, result: FrameResult, outputs: FrameOutputs) -> None:
        """~/focus/*, on the frames of the camera the followed track is on."""
        if self.focus.camera != session.name:
            return
        update = self.focus.on_frame(result, self.pipeline.tracks_of(session.name).live_ids)
        if update is None:
            return
        header = outputs.instances.header  # the camera image's stamp and frame
        visible = update.instance
        if session.subscribed("focus_mask"):
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
        """~/focus: follow request.track_id (0 clears) on whichever camera it is; a non-empty
        request.camera must be the track's camera."""
        track_id, camera = int(request.track_id), request.camera
        if self.pipeline is None and track_id != 0:
            return {"success": False, "message": f"no tracks: the model is {self.state.value}"}
        if camera and camera not in self.sessions:
            return {"success": False, "message": f"no camera {camera!r}; cameras: {list(self.sessions)}"}
        owner = self.pipeline.camera_of_track(track_id) if self.pipeline is not None and track_id else None
        if camera and owner is not None and owner != camera:
            return {"success": False, "message": f"track {track_id} is on camera {owner!r}, not {camera!r}"}
        live = [i for name in ([camera] if camera else self.sessions) if self.pipeline is not None
                for i in self.pipeline.tracks_of(name).live_ids]
        success, message = self.focus.set(track_id, live, owner or "")
        return {"success": success, "message": message + (f" on camera {owner!r}" if success and owner else "")}

    def start_find(self, goal_msg) -> FindSession:
        """A ~/find goal: add its temporary concept and start watching frames (or say why not)."""
        if self.state != NodeState.ACTIVE:
            return FindSession.finished(None, FindReason.NOT_ACTIVE, f"the node is {self.state.value}, not active")
        try:
            watched = [self._camera(goal_msg.camera, "the goal")] if goal_msg.camera else list(self.sessions.values())
            concept = self._parse(goal_msg.concept)
        except PromptError as err:
            return FindSession.finished(None, FindReason.INVALID, f"invalid goal: {err}")
        if not any(session.settings.depth_topic for session in watched):
            where = f"camera {goal_msg.camera!r} has" if goal_msg.camera else "no camera has"
            return FindSession.finished(None, FindReason.NO_DEPTH,
                                        f"{where} no depth" * bool(self.params.cameras)
                                        or "no depth_topic is set: find needs 3D positions")
        if not goal_msg.keep_concept:
            self._find_count += 1
            concept = dataclasses.replace(concept, id=f"find{self._find_count}:{concept.id}"[:64])
        goal = FindGoal(concept, float(goal_msg.min_score), float(goal_msg.timeout_s), int(goal_msg.stable_frames),
                        bool(goal_msg.keep_concept), goal_msg.camera)
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

    # -- diagnostics ------------------------------------------------------------------------------------------
    def diagnostics(self, hardware_id: str = "sam3") -> Any:
        """One DiagnosticArray: the model's status ("sam3_ros: perception"), with the camera's values when
        there is one camera, else followed by one status per camera ("sam3_ros: camera NAME")."""
        header = messages.header(self._now_ns(), "", self.types)
        model = self._model_values()
        if not self.params.cameras:
            level, message = self._camera_health(self.first) or self._model_health()
            values = {**dict(list(model.items())[:2]), **self.first.values(), **dict(list(model.items())[2:])}
            return messages.diagnostics(header, "sam3_ros: perception", hardware_id, values, level, message, self.types)
        statuses = [messages.diagnostic_status("sam3_ros: perception", hardware_id, model, *self._model_health(),
                                               self.types)]
        for session in self.sessions.values():
            level, message = self._camera_health(session) or \
                (messages.DiagnosticLevel.OK, self._camera_summary(session))
            values = {**session.values(), "live tracks": self._live_tracks(session.name),
                      **{f"{role} topic": session.topic_names.get(role, topic) for role, topic in session.inputs()}}
            statuses.append(messages.diagnostic_status(f"sam3_ros: camera {session.name}", hardware_id, values, level,
                                                       message, self.types))
        return messages.diagnostic_array(header, statuses, self.types)

    def _model_values(self) -> dict[str, Any]:
        """The shared model's values: state and model first, then tracks, concepts, stage timings, GPU."""
        values: dict[str, Any] = {
            "state": self.state.value,
            "model": self.model.description if self.model is not None else self.failure or "not loaded",
            "live tracks": sum(self._live_tracks(name) for name in self.sessions),
            "concepts": ", ".join(c.id for c in self._concepts),
        }
        for stage in STAGES:
            values[f"stage {stage} ms"] = mean([t.get(stage, 0.0) for t in self._step_ms])
        values.update(_gpu_memory())
        return values

    def _live_tracks(self, camera: str) -> int:
        return len(self.pipeline.tracks_of(camera).tracks) if self.pipeline is not None else 0

    def _model_health(self) -> tuple[int, str]:
        Level = messages.DiagnosticLevel
        if self.state == NodeState.FAILED:
            return Level.ERROR, self.failure
        if self.state != NodeState.ACTIVE:
            return Level.OK, f"node {self.state.value}"
        if not self._concepts:
            return Level.WARN, "no concepts: call ~/set_concepts or ~/add_concept"
        cameras = "" if not self.params.cameras else \
            " on " + ", ".join(f"{s.name} ({s.counters.fps():.1f} fps)" for s in self.sessions.values())
        return Level.OK, f"tracking {len(self._concepts)} concept(s){cameras}" if cameras else \
            f"tracking {len(self._concepts)} concept(s) at {self.first.counters.fps():.1f} fps"

    def _camera_health(self, session: CameraSession) -> tuple[int, str] | None:
        """WARN while an active node gets no frames from this camera; None when it does (or is not active)."""
        if self.state != NodeState.ACTIVE:
            return None
        silence = session.silence()
        return (messages.DiagnosticLevel.WARN, silence) if silence else None

    def _camera_summary(self, session: CameraSession) -> str:
        if self.state != NodeState.ACTIVE:
            return f"node {self.state.value}"
        return f"{session.counters.fps():.1f} fps, {self._live_tracks(session.name)} live track(s)"


def _initial_concepts(phrases: list[str]) -> list[Concept]:
    concepts = []
    for phrase in phrases:
        try:
            concepts.append(make_concept(None, phrase))
        except PromptError as err:
            log.error("ignoring start-up prompt %r: %s", phrase, err)
    return concepts


def _xyxy(box) -> tuple[float, float, float, float]:
    cx, cy = box.center.position.x, box.center.position.y
    return (cx - box.size_x / 2, cy - box.size_y / 2, cx + box.size_x / 2, cy + box.size_y / 2)


def _flags(values, count: int) -> list[bool]:
    flags = [bool(v) for v in values]
    if flags and len(flags) != count:
        raise PromptError(f"{count} points but {len(flags)} point_positive flags")
    return flags or [True] * count


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
