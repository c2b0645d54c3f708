"""The streaming SAM 3 pipeline: camera frames in, every instance of every concept out.

Per step: preprocess -> vision backbone (once, on every camera's frame as one batch) -> detector
for every (camera, concept) -> tracker propagation of every camera's live tracks -> association
and track life cycle, per camera -> memory update -> instances at image resolution. Nothing
looks ahead; all state is bounded.

One pipeline serves one camera (``step``) or several (``step_cameras``). The model, the concepts
and their encoded prompts are shared; each camera keeps its own tracks and memory
(``CameraStream``), with track IDs unique across cameras. Component calls are grouped so that
cameras share them (detector by prompt length, tracker by memory layout); a backend whose
components take one camera per call (``Sam3Components.mixes_cameras`` False) gets one call per
group and camera instead, with the same results.

Prompt changes may come from other threads at any time: they edit the PromptSet under a
small lock and are applied at the start of the next frame, so callers never wait for
inference.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..backends.base import PromptFeatures, Sam3Components, VisionFeatures
from ..model.preprocess import image_to_pixel_values, tokenize
from .camera_stream import SINGLE_CAMERA, CameraFrame, CameraStream, RefineRequest
from .config import PipelineConfig
from .mask_ops import association_ious, mask_nms, suppress_shrunk_overlaps
from .frame_masks import upsample_masks
from .memory_bank import MemoryEntry, TrackMemory, batch_memories, layout_key
from .prompts import Concept, PromptError, PromptSet, validate_concept
from .results import FrameResult, Instance
from .tracking import Decisions, Observations, TrackIds, TrackManager

log = logging.getLogger(__name__)

BIRTH_MEMORY_LOGIT = 50.0   # a given binary mask, as logits, for memory encoding


@dataclass
class Detections:
    """Detections of all concepts on one frame, after thresholds and NMS."""

    concept_ids: list[str]
    scores: torch.Tensor       # (N,)
    mask_logits: torch.Tensor  # (N, h, w)

    @classmethod
    def empty(cls, mask_size: int, device: torch.device) -> "Detections":
        return cls([], torch.zeros(0, device=device), torch.zeros(0, mask_size, mask_size, device=device))

    @cached_property
    def masks(self) -> torch.Tensor:
        return self.mask_logits > 0


@dataclass
class _ConceptState:
    concept: Concept
    features: PromptFeatures | None = None  # text (+ exemplar) tokens, once encoded
    error: str | None = None


@dataclass
class _Propagation:
    """Tracker output for the live tracks, in TrackManager order."""

    track_ids: list[int]
    mask_logits: torch.Tensor
    object_logits: torch.Tensor
    pointers: torch.Tensor

    @property
    def visible(self) -> torch.Tensor:
        return (self.object_logits > 0) & (self.mask_logits > 0).flatten(1).any(dim=1)


@dataclass
class _Candidates:
    """One (camera, concept)'s detector queries above its threshold."""

    concept_id: str
    mask_logits: torch.Tensor  # (Q, h, w)
    rows: torch.Tensor         # indices of the queries above threshold
    scores: torch.Tensor       # (Q,)


@dataclass
class _CameraStep:
    """One camera's part of a step: its state, its frame, its row in the vision batch, and what the
    stages found for it."""

    stream: CameraStream
    frame: CameraFrame
    row: int
    warnings: list[str]
    detections: Detections | None = None
    propagation: _Propagation | None = None
    refined: set[int] = field(default_factory=set)
    observations: Observations | None = None
    decisions: Decisions | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.frame.image.shape[:2]

    @property
    def frame_index(self) -> int:
        return self.stream.frame_index


@dataclass
class _MemoryPlan:
    """What one camera writes into its tracks' memory this step: continuing tracks' masks, then
    the masks of tracks (re)started from detections."""

    step: _CameraStep
    track_ids: list[int]
    logits: torch.Tensor        # (B, h, w)
    pointers: torch.Tensor      # (B, C), restarted tracks' appended once prompted
    conditioning: list[bool]
    restart_masks: torch.Tensor  # (R, h, w) bool: the last R of track_ids


@dataclass
class _StageTimer:
    sync_cuda: bool
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        if self.sync_cuda:
            torch.cuda.synchronize()
        self.timings[stage] = self.timings.get(stage, 0.0) + (time.perf_counter() - start) * 1e3


class Sam3Pipeline:
    def __init__(self, components: Sam3Components, tokenizer, config: PipelineConfig | None = None):
        self.components = components
        self.tokenizer = tokenizer
        self.config = config or PipelineConfig()
        self.geometry = components.geometry
        self.device = components.device
        self.prompts = PromptSet()
        self.track_ids = TrackIds()  # one allocator for every camera: an ID names one object
        self._streams: dict[str, CameraStream] = {}
        self._lock = threading.Lock()
        self._synced_version = -1
        self._concepts: "OrderedDict[str, _ConceptState]" = OrderedDict()
        self._text_cache: "OrderedDict[str, PromptFeatures]" = OrderedDict()
        self._pixels: torch.Tensor | None = None  # model inputs, reused (see _pixel_batch)

    # -- cameras -------------------------------------------------------------------------------------
    def stream(self, camera: str = SINGLE_CAMERA) -> CameraStream:
        """A camera's tracking state, created on first use."""
        with self._lock:
            stream = self._streams.get(camera)
            if stream is None:
                stream = self._streams[camera] = CameraStream(camera, self.config, self.track_ids)
            return stream

    @property
    def tracks(self) -> TrackManager:
        """The single-stream camera's tracks (``step``)."""
        return self.stream(SINGLE_CAMERA).tracks

    @property
    def frame_index(self) -> int:
        return self.stream(SINGLE_CAMERA).frame_index

    def tracks_of(self, camera: str) -> TrackManager:
        """A camera's tracks; an empty manager for a camera not seen yet."""
        stream = self._streams.get(camera)
        return stream.tracks if stream is not None else TrackManager(self.config.tracking, self.config.detection)

    def camera_of_track(self, track_id: int) -> str | None:
        """The camera a live track is on, or None."""
        return next((s.name for s in self._camera_streams() if track_id in s.tracks.tracks), None)

    def live_track_ids(self) -> list[int]:
        return sorted(tid for s in self._camera_streams() for tid in s.tracks.live_ids)

    def forget_camera(self, camera: str) -> list[int]:
        """End one camera's tracks and state now (between steps); returns the ended track IDs."""
        with self._lock:
            stream = self._streams.pop(camera, None)
        return stream.tracks.reset() if stream is not None else []

    def _camera_streams(self) -> list[CameraStream]:
        with self._lock:
            return list(self._streams.values())

    # -- prompt and track control (thread-safe, non-blocking) ----------------------------------
    def set_concepts(self, concepts: list[Concept]) -> None:
        concepts = [self._validated(c) for c in concepts]
        with self._lock:
            self.prompts.replace_all(concepts)

    def add_concept(self, concept: Concept) -> None:
        concept = self._validated(concept)
        with self._lock:
            self.prompts.add(concept)

    def upsert_concept(self, concept: Concept) -> None:
        concept = self._validated(concept)
        with self._lock:
            self.prompts.upsert(concept)

    def remove_concept(self, concept_id: str) -> None:
        with self._lock:
            self.prompts.remove(concept_id)

    def active_concepts(self) -> list[Concept]:
        with self._lock:
            return list(self.prompts)

    def _validated(self, concept: Concept) -> Concept:
        """Checked against the image its exemplar boxes are drawn on, when one has been seen."""
        stream = self._streams.get(concept.camera)
        return validate_concept(concept, stream.image_size if stream is not None else None)

    def request_refine(self, request: RefineRequest) -> None:
        """Correct a live track on its camera's next frame; its corrected mask becomes a conditioning frame."""
        if self.components.refiner is None:
            raise PromptError(f"the {self.components.name} backend cannot refine tracks")
        if not request.points and request.box_xyxy is None:
            raise PromptError("a refinement needs a box, points, or both")
        camera = self.camera_of_track(request.track_id)
        if camera is None:
            raise PromptError(f"track {request.track_id} is not live; live tracks: {self.live_track_ids()}")
        stream = self._streams[camera]
        coords = [v for p in request.points for v in p[:2]] + list(request.box_xyxy or ())
        if stream.image_size is not None:
            height, width = stream.image_size
            xs, ys = coords[0::2], coords[1::2]
            if not all(-1 <= x <= width + 1 for x in xs) or not all(-1 <= y <= height + 1 for y in ys):
                raise PromptError(f"refinement lies outside the {width}x{height} image")
        if request.box_xyxy is not None:
            x1, y1, x2, y2 = request.box_xyxy
            if x2 - x1 < 2 or y2 - y1 < 2:
                raise PromptError(f"refinement box {request.box_xyxy} is degenerate")
        with self._lock:
            stream.pending_refines.append(request)

    def request_reset(self, camera: str | None = None) -> None:
        """Forget the tracks of one camera (None: every camera) at its next frame; IDs are never reused."""
        with self._lock:
            for stream in self._streams.values():
                if camera is None or stream.name == camera:
                    stream.reset_requested = True

    def release_state(self) -> list[int]:
        """Forget every track and cached prompt feature now (call between steps, e.g. to free GPU
        memory); concepts stay and are re-encoded on the next step. Track IDs are never reused."""
        gone = []
        for stream in self._camera_streams():
            ended = stream.tracks.reset()
            stream.forget(ended)
            gone += ended
        self._text_cache.clear()
        self._pixels = None
        for state in self._concepts.values():
            state.features = None
        return gone

    def state_bytes(self) -> int:
        """Bytes of tensors the pipeline keeps between steps (track memory, masks, cached prompts)."""
        tensors = {id(t): t for s in self._camera_streams() for t in s.tensors()}
        for features in (*self._text_cache.values(),
                         *(s.features for s in self._concepts.values() if s.features is not None)):
            tensors.update((id(t), t) for t in (features.features, features.mask))
        return sum(t.numel() * t.element_size() for t in tensors.values())

    # -- the frame loop -----------------------------------------------------------------------------
    def step(self, image: np.ndarray, stamp_ns: int | None = None) -> FrameResult:
        """Process one (H, W, 3) uint8 RGB frame of the single camera."""
        return self.step_cameras({SINGLE_CAMERA: CameraFrame(image, stamp_ns)})[SINGLE_CAMERA]

    def step_cameras(self, frames: Mapping[str, CameraFrame]) -> dict[str, FrameResult]:
        """Process the newest frame of each camera given, in one batched step; results in the same order.

        Cameras not given keep their state untouched; image sizes may differ between cameras.
        """
        for frame in frames.values():
            _check_image(frame.image)  # before any state changes
        if not frames:
            return {}
        timer = _StageTimer(sync_cuda=self.device.type == "cuda")
        self._sync_prompts()
        steps = []
        for row, (camera, frame) in enumerate(frames.items()):
            stream = self.stream(camera)
            stream.image_size = frame.image.shape[:2]
            steps.append(_CameraStep(stream, frame, row, stream.recover_from_failed_frame()))
        comp, g = self.components, self.geometry

        with timer("preprocess"):
            pixels = self._pixel_batch(len(steps))
            for step in steps:
                image_to_pixel_values(step.frame.image, g.image_size, self.device, comp.dtype,
                                      out=pixels[step.row:step.row + 1])
        with timer("vision"):
            vision = self._vision(pixels)
        with timer("prompts"):
            self._encode_concepts(vision, steps)
        with timer("detector"):
            self._detect(vision, steps)
        with timer("tracker"):
            self._propagate(vision, steps)
            for step in steps:
                self._apply_refines(vision, step)
        with timer("association"):
            for step in steps:
                step.observations = self._observations(step)
                step.decisions = step.stream.tracks.update(step.observations)
        with timer("memory"):
            self._update_memory(vision, steps)
        with timer("postprocess"):
            instances = [self._instances(step) for step in steps]
        timer.timings["total"] = sum(timer.timings.values())
        return {step.stream.name: self._result(step, found, timer.timings) for step, found in zip(steps, instances)}

    def _result(self, step: _CameraStep, instances: list[Instance], timings: dict[str, float]) -> FrameResult:
        stream, decisions = step.stream, step.decisions
        if decisions.births_dropped:
            step.warnings.append(f"track cap {self.config.tracking.max_tracks} reached: "
                                 f"{decisions.births_dropped} new detections not tracked")
        height, width = step.image_size
        result = FrameResult(
            frame_index=stream.frame_index, image_height=height, image_width=width, instances=instances,
            timings_ms=dict(timings), stamp_ns=step.frame.stamp_ns, live_tracks=len(stream.tracks.tracks),
            removed_track_ids=stream.take_removed(decisions.removed), warnings=step.warnings, camera=stream.name,
        )
        stream.frame_index += 1
        return result

    def _pixel_batch(self, cameras: int) -> torch.Tensor:
        """The model-input batch for this many cameras, kept from step to step: a fresh one each step
        would be new memory for the allocator (on the CPU, pages the kernel zero-fills every step)."""
        size = self.geometry.image_size
        if self._pixels is None or self._pixels.shape[0] != cameras:
            self._pixels = torch.empty(cameras, 3, size, size, dtype=self.components.dtype, device=self.device)
        return self._pixels

    def _vision(self, pixels: torch.Tensor) -> VisionFeatures:
        if self.components.mixes_cameras or pixels.shape[0] == 1:
            return self.components.vision(pixels)
        return VisionFeatures.cat([self.components.vision(p[None]) for p in pixels])

    def _groups(self, keys: list, cameras: list[int]) -> list[list[int]]:
        """Rows that can share one component call: the same key and, for components that take one
        camera per call, the same camera. Groups and the rows in them keep their first-seen order."""
        groups: dict = {}
        for i, (key, camera) in enumerate(zip(keys, cameras)):
            groups.setdefault((key, None if self.components.mixes_cameras else camera), []).append(i)
        return list(groups.values())

    # -- prompts ---------------------------------------------------------------------------------------
    def _sync_prompts(self) -> None:
        """Apply prompt edits and reset requests made since the last step."""
        with self._lock:
            resets = [s for s in self._streams.values() if s.reset_requested]
            for stream in resets:
                stream.reset_requested = False
            changed = self.prompts.version != self._synced_version
            wanted = list(self.prompts) if changed else None
            self._synced_version = self.prompts.version
        for stream in resets:
            stream.forget(stream.tracks.reset())
        if wanted is None:
            return
        new: "OrderedDict[str, _ConceptState]" = OrderedDict()
        for concept in wanted:
            old = self._concepts.get(concept.id)
            if old is not None and old.concept.same_query(concept):
                old.concept = concept
                new[concept.id] = old
            else:
                new[concept.id] = _ConceptState(concept)
                if old is not None:
                    self._forget_concept(concept.id)
        for concept_id in set(self._concepts) - set(new):
            self._forget_concept(concept_id)
        self._concepts = new

    def _forget_concept(self, concept_id: str) -> None:
        for stream in self._camera_streams():
            stream.forget(stream.tracks.drop_concept(concept_id))

    def _text_features(self, phrase: str) -> tuple[PromptFeatures, list[str]]:
        cached = self._text_cache.get(phrase)
        if cached is not None:
            self._text_cache.move_to_end(phrase)
            return cached, []
        input_ids, attention_mask, warnings = tokenize(self.tokenizer, [phrase])
        features = self.components.text(input_ids.to(self.device), attention_mask.to(self.device))
        self._text_cache[phrase] = features
        while len(self._text_cache) > self.config.output.text_cache_size:
            self._text_cache.popitem(last=False)
        return features, warnings

    def _encode_concepts(self, vision: VisionFeatures, steps: list[_CameraStep]) -> None:
        """Text features (cached per phrase); exemplar tokens from the first frame of their camera
        after a change (a concept waits while its camera is not in the step)."""
        for state in self._concepts.values():
            if state.features is not None or state.error is not None:
                continue
            step = _exemplar_step(state.concept, steps)
            if step is None:
                continue
            try:
                concept = validate_concept(state.concept, step.image_size)
            except PromptError as err:
                state.error = str(err)
                step.warnings.append(f"concept {state.concept.id!r} disabled: {err}")
                continue
            text, text_warnings = self._text_features(concept.model_phrase)
            step.warnings.extend(text_warnings)
            state.features = text if not concept.exemplars else _concat_prompts(
                text, self._exemplar_features(vision.for_rows([step.row]), concept, step.image_size))

    def _exemplar_features(self, vision, concept: Concept, image_size: tuple[int, int]) -> PromptFeatures:
        height, width = image_size
        xyxy = torch.tensor([b.as_tuple() for b in concept.exemplars], dtype=torch.float32, device=self.device)
        xyxy = xyxy / torch.tensor([width, height, width, height], dtype=torch.float32, device=self.device)
        cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                              xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=1)
        labels = torch.tensor([[int(b.positive) for b in concept.exemplars]], device=self.device)
        return self.components.exemplars(vision, cxcywh[None], labels)

    # -- detection -------------------------------------------------------------------------------------
    def _detect(self, vision: VisionFeatures, steps: list[_CameraStep]) -> None:
        """The detector for every (camera, concept), one call per prompt length; then NMS per camera."""
        ready = [s for s in self._concepts.values() if s.features is not None]
        rows = [(step, state) for step in steps for state in ready]
        default_threshold = self.config.detection.score_threshold
        found: dict[int, list[_Candidates]] = {step.row: [] for step in steps}
        for group in self._groups([state.features.features.shape[1] for _, state in rows],
                                  [step.row for step, _ in rows]):
            members = [rows[i] for i in group]
            prompts = PromptFeatures(torch.cat([s.features.features for _, s in members]),
                                     torch.cat([s.features.mask for _, s in members]))
            out = self.components.detector(vision.for_rows([step.row for step, _ in members]), prompts)
            for k, (step, state) in enumerate(members):
                threshold = state.concept.score_threshold or default_threshold
                found[step.row].append(_Candidates(state.concept.id, out.mask_logits[k],
                                                   torch.nonzero(out.scores[k] > threshold).flatten(), out.scores[k]))
        for step in steps:
            step.detections = self._kept(found[step.row])

    def _kept(self, candidates: list[_Candidates]) -> Detections:
        """One camera's detections after NMS within each concept."""
        if not candidates:
            return Detections.empty(self.geometry.mask_size, self.device)
        concept_index = torch.cat([torch.full_like(c.rows, i) for i, c in enumerate(candidates)])
        scores = torch.cat([c.scores[c.rows] for c in candidates]).float()
        masks = torch.cat([c.mask_logits[c.rows] > 0 for c in candidates])
        keep = mask_nms(scores, masks, self.config.detection.nms_iou, groups=concept_index)
        if keep.numel() == 0:
            return Detections.empty(self.geometry.mask_size, self.device)
        # Only the kept detections' logits are copied, once.
        owner = concept_index[keep].tolist()
        starts = np.cumsum([0] + [len(c.rows) for c in candidates])
        kept_logits = [candidates[c].mask_logits[candidates[c].rows[int(k) - starts[c]]]
                       for c, k in zip(owner, keep.tolist())]
        return Detections([candidates[c].concept_id for c in owner], scores[keep], torch.stack(kept_logits).float())

    # -- tracking --------------------------------------------------------------------------------------
    def _propagate(self, vision: VisionFeatures, steps: list[_CameraStep]) -> None:
        """The tracker for every camera's live tracks, one call per memory layout."""
        owners = [(step, tid) for step in steps for tid in step.stream.tracks.live_ids]
        g = self.geometry
        masks = torch.zeros(len(owners), g.mask_size, g.mask_size, device=self.device)
        logits = torch.zeros(len(owners), device=self.device)
        pointers = torch.zeros(len(owners), g.hidden, device=self.device, dtype=self.components.dtype)
        keys = [layout_key(step.stream.memories[tid], step.frame_index) for step, tid in owners]
        for group in self._groups(keys, [step.row for step, _ in owners]):
            members = [owners[i] for i in group]
            batch = batch_memories([step.stream.memories[tid] for step, tid in members],
                                   [step.frame_index for step, _ in members])
            out = self.components.tracker(vision.for_rows([step.row for step, _ in members]), batch)
            index = torch.tensor(group, device=self.device)
            masks[index] = out.mask_logits.float()
            logits[index] = out.object_logits.float()
            pointers[index] = out.pointers.to(pointers.dtype)
        start = 0
        for step in steps:
            ids = step.stream.tracks.live_ids
            end = start + len(ids)
            step.propagation = _Propagation(ids, masks[start:end], logits[start:end], pointers[start:end])
            start = end

    def _apply_refines(self, vision: VisionFeatures, step: _CameraStep) -> None:
        """Replace the propagated masks of tracks a person corrected."""
        with self._lock:
            requests, step.stream.pending_refines = step.stream.pending_refines, []
        prop = step.propagation
        height, width = step.image_size
        scale = torch.tensor([self.geometry.image_size / width, self.geometry.image_size / height])
        for request in requests:
            if request.track_id not in prop.track_ids:
                step.warnings.append(f"refinement of track {request.track_id} dropped: the track ended")
                continue
            points = labels = box = None
            if request.points:
                xy = torch.tensor([p[:2] for p in request.points], dtype=torch.float32) * scale
                points = xy[None, None].to(self.device)
                labels = torch.tensor([[[int(p[2]) for p in request.points]]], device=self.device)
            if request.box_xyxy is not None:
                box = (torch.tensor(request.box_xyxy, dtype=torch.float32).view(2, 2) * scale).view(1, 1, 4)
                box = box.to(self.device)
            batch = batch_memories([step.stream.memories[request.track_id]], step.frame_index)
            out = self.components.refiner(vision.for_rows([step.row]), batch, points, labels, box)
            row = prop.track_ids.index(request.track_id)
            prop.mask_logits[row] = out.mask_logits[0].float()
            prop.object_logits[row] = out.object_logits[0]
            prop.pointers[row] = out.pointers[0].to(prop.pointers.dtype)
            step.refined.add(request.track_id)

    def _observations(self, step: _CameraStep) -> Observations:
        """Every IoU association needs, from one mask-overlap product of detections and tracks."""
        dets, prop = step.detections, step.propagation
        visible = prop.visible.cpu().numpy()
        current = prop.mask_logits > 0
        hidden = np.flatnonzero(~visible)
        if hidden.size:  # a hidden track is matched on its last visible mask
            current[torch.from_numpy(hidden).to(self.device)] = self._last_masks(
                step.stream, [prop.track_ids[i] for i in hidden])
        det_track, track_track = association_ious(dets.masks, current)
        return Observations(
            frame_index=step.frame_index,
            det_concepts=dets.concept_ids,
            det_scores=dets.scores.cpu().numpy(),
            track_ids=prop.track_ids,
            det_track_iou=det_track.cpu().numpy(),
            track_visible=visible,
            track_pair_iou=track_track.cpu().numpy() * np.outer(visible, visible),
        )

    def _last_masks(self, stream: CameraStream, track_ids: list[int]) -> torch.Tensor:
        size = self.geometry.mask_size
        empty = torch.zeros(size, size, dtype=torch.bool, device=self.device)
        return torch.stack([stream.last_visible_mask.get(t, empty) for t in track_ids])

    def _update_memory(self, vision: VisionFeatures, steps: list[_CameraStep]) -> None:
        """Encode this step's frames into the memory of every live track of every camera, and start
        new tracks: one mask-prompter and one memory-encoder call for all cameras."""
        plans = [self._memory_plan(step) for step in steps]
        restart_rows = [plan.step.row for plan in plans for _ in range(len(plan.restart_masks))]
        if restart_rows:
            masks = torch.cat([plan.restart_masks for plan in plans])
            started = self._grouped_call(vision, restart_rows, lambda v, index: self.components.mask_prompter(
                v, masks[index]).pointers)
            start = 0
            for plan in plans:
                end = start + len(plan.restart_masks)
                plan.logits = torch.cat([plan.logits, _binary_logits(plan.restart_masks)])
                plan.pointers = torch.cat([plan.pointers, started[start:end].to(plan.pointers.dtype)])
                start = end
        rows = [plan.step.row for plan in plans for _ in plan.track_ids]
        if not rows:
            return
        logits = torch.cat([plan.logits for plan in plans])
        positive = logits > 0
        present = positive.flatten(1).any(dim=1)
        object_logits = torch.where(present, 10.0, -10.0)
        features = self._grouped_call(vision, rows, lambda v, index: self.components.memory_encoder(
            v, logits[index], object_logits[index]))
        mem, visible = self.config.memory, present.tolist()
        i = 0
        for plan in plans:
            stream, frame = plan.step.stream, plan.step.frame_index
            for tid, pointer, conditioning in zip(plan.track_ids, plan.pointers, plan.conditioning):
                if tid not in stream.memories:
                    stream.memories[tid] = TrackMemory(self.geometry.num_maskmem, mem.max_cond_frames,
                                                       mem.max_object_pointers)
                stream.memories[tid].add(MemoryEntry(frame, features[i], pointer, conditioning))
                if visible[i]:
                    stream.last_visible_mask[tid] = positive[i]
                i += 1

    def _grouped_call(self, vision: VisionFeatures, rows: list[int], call) -> torch.Tensor:
        """``call(vision rows, row index)`` over groups of rows that may share a call; outputs in row order."""
        groups = self._groups([None] * len(rows), rows)
        if len(groups) == 1:
            return call(vision.for_rows(rows), slice(None))
        outputs = [call(vision.for_rows([rows[i] for i in group]), torch.tensor(group, device=self.device))
                   for group in groups]
        out = outputs[0].new_empty((len(rows), *outputs[0].shape[1:]))
        for group, part in zip(groups, outputs):
            out[torch.tensor(group, device=self.device)] = part
        return out

    def _memory_plan(self, step: _CameraStep) -> _MemoryPlan:
        """One camera's memory writes: its continuing tracks' masks (reconditioned or corrected ones
        marked), and the detections that start or restart tracks."""
        stream, prop, decisions, dets = step.stream, step.propagation, step.decisions, step.detections
        stream.drop_memory(decisions.removed)
        row_of = {tid: i for i, tid in enumerate(prop.track_ids)}
        continuing = [t for t in prop.track_ids if t in stream.tracks.tracks and t not in decisions.reacquired]
        restarted = list(decisions.reacquired.items()) + list(decisions.births.items())

        rows = torch.tensor([row_of[t] for t in continuing], dtype=torch.long, device=self.device)
        logits = prop.mask_logits[rows]
        if self.config.tracking.recondition_with_detection:
            for i, tid in enumerate(continuing):
                if tid in decisions.reconditioned:
                    logits[i] = _binary_logits(dets.masks[decisions.reconditioned[tid]])
        # Same-concept masks can only overlap where tracks overlapped, or masks were replaced or hidden.
        obs = step.observations
        if (decisions.reconditioned or step.refined or not obs.track_visible.all()
                or (np.triu(obs.track_pair_iou, k=1) > 0).any()):
            logits = suppress_shrunk_overlaps(logits, [stream.tracks.tracks[t].concept_id for t in continuing])
        conditioning = [t in decisions.reconditioned or t in step.refined for t in continuing]
        for tid in step.refined & set(stream.tracks.tracks):
            stream.tracks.refined(tid)
        restart_masks = dets.masks[torch.tensor([d for _, d in restarted], dtype=torch.long, device=self.device)]
        return _MemoryPlan(step, continuing + [t for t, _ in restarted], logits, prop.pointers[rows],
                           conditioning + [True] * len(restarted), restart_masks)

    # -- output ------------------------------------------------------------------------------------------
    def _instances(self, step: _CameraStep) -> list[Instance]:
        stream, dets, prop, decisions = step.stream, step.detections, step.propagation, step.decisions
        reported = stream.tracks.reported(self.config.output.publish_tentative)
        if not reported:
            return []
        row_of = {tid: i for i, tid in enumerate(prop.track_ids)}
        from_detection = {**decisions.births, **decisions.reacquired}
        if self.config.tracking.recondition_with_detection:
            from_detection.update(decisions.reconditioned)
        logits, scores = [], []
        for track in reported:
            det = from_detection.get(track.track_id)
            if det is not None:
                logits.append(dets.mask_logits[det])
                scores.append(float(dets.scores[det]))
                continue
            row = row_of[track.track_id]
            logits.append(prop.mask_logits[row])
            matched = track.track_id in decisions.matched
            scores.append(track.score if matched else track.score * float(torch.sigmoid(prop.object_logits[row])))
        upsampled = upsample_masks(torch.stack(logits), step.image_size)
        instances = []
        for track, mask, box, score in zip(reported, upsampled.masks, upsampled.boxes, scores):
            if mask is None:
                continue  # vanished at image resolution
            concept = self._concepts[track.concept_id].concept
            instances.append(Instance(track_id=track.track_id, concept_id=track.concept_id, label=concept.label,
                                      score=score, box_xyxy=box, state=track.state, mask=mask, camera=stream.name))
        return instances


def _exemplar_step(concept: Concept, steps: list[_CameraStep]) -> _CameraStep | None:
    """The camera step whose frame encodes a concept: its exemplars' camera, else the first."""
    if not concept.exemplars or not concept.camera:
        return steps[0]
    return next((s for s in steps if s.stream.name == concept.camera), None)


def _binary_logits(masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks, BIRTH_MEMORY_LOGIT, -BIRTH_MEMORY_LOGIT)


def _concat_prompts(a: PromptFeatures, b: PromptFeatures) -> PromptFeatures:
    return PromptFeatures(torch.cat([a.features, b.features.to(a.features.dtype)], dim=1),
                          torch.cat([a.mask, b.mask], dim=1))


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small")
