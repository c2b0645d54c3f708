"""The streaming SAM 3 pipeline: one camera frame in, every instance of every concept out.

Per frame: preprocess -> vision backbone (once) -> detector for all concepts -> tracker
propagation of all live tracks -> association and track life cycle -> memory update ->
instances at image resolution. Nothing looks ahead; all state is bounded.

Prompt changes may come from other threads at any time: they edit the PromptSet under a
small lock and are applied at the start of the next frame, so callers never wait for
inference.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..backends.base import PromptFeatures, Sam3Components, TrackerOutput, VisionFeatures
from ..model.preprocess import image_to_pixel_values, tokenize
from .config import PipelineConfig
from .mask_ops import association_ious, mask_nms, suppress_shrunk_overlaps
from .frame_masks import upsample_masks
from .memory_bank import MemoryEntry, TrackMemory, batch_memories, layout_key
from .prompts import Concept, PromptError, PromptSet, validate_concept
from .results import FrameResult, Instance
from .tracking import Decisions, Observations, TrackManager

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


@dataclass(frozen=True)
class RefineRequest:
    """A correction of one track, in image pixels: a box (x1, y1, x2, y2) and/or clicks (x, y, positive)."""

    track_id: int
    box_xyxy: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float, bool], ...] = ()


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
        self.tracks = TrackManager(self.config.tracking, self.config.detection)
        self.frame_index = 0
        self._lock = threading.Lock()
        self._reset_requested = False
        self._synced_version = -1
        self._concepts: "OrderedDict[str, _ConceptState]" = OrderedDict()
        self._text_cache: "OrderedDict[str, PromptFeatures]" = OrderedDict()
        self._memories: dict[int, TrackMemory] = {}
        self._last_visible_mask: dict[int, torch.Tensor] = {}
        self._pending_removed: list[int] = []
        self._pending_refines: list[RefineRequest] = []
        self.last_image_size: tuple[int, int] | None = None

    # -- prompt and track control (thread-safe, non-blocking) ----------------------------------
    def set_concepts(self, concepts: list[Concept]) -> None:
        concepts = [validate_concept(c, self.last_image_size) for c in concepts]
        with self._lock:
            self.prompts.replace_all(concepts)

    def add_concept(self, concept: Concept) -> None:
        concept = validate_concept(concept, self.last_image_size)
        with self._lock:
            self.prompts.add(concept)

    def upsert_concept(self, concept: Concept) -> None:
        concept = validate_concept(concept, self.last_image_size)
        with self._lock:
            self.prompts.upsert(concept)

    def remove_concept(self, concept_id: str) -> None:
        with self._lock:
            self.prompts.remove(concept_id)

    def active_concepts(self) -> list[Concept]:
        with self._lock:
            return list(self.prompts)

    def request_refine(self, request: RefineRequest) -> None:
        """Correct a live track on the next frame; its corrected mask becomes a conditioning frame."""
        if self.components.refiner is None:
            raise PromptError(f"the {self.components.name} backend cannot refine tracks")
        if not request.points and request.box_xyxy is None:
            raise PromptError("a refinement needs a box, points, or both")
        if request.track_id not in self.tracks.tracks:
            raise PromptError(f"track {request.track_id} is not live; live tracks: {self.tracks.live_ids}")
        coords = [v for p in request.points for v in p[:2]] + list(request.box_xyxy or ())
        if self.last_image_size is not None:
            height, width = self.last_image_size
            xs, ys = coords[0::2], coords[1::2]
            if not all(-1 <= x <= width + 1 for x in xs) or not all(-1 <= y <= height + 1 for y in ys):
                raise PromptError(f"refinement lies outside the {width}x{height} image")
        if request.box_xyxy is not None:
            x1, y1, x2, y2 = request.box_xyxy
            if x2 - x1 < 2 or y2 - y1 < 2:
                raise PromptError(f"refinement box {request.box_xyxy} is degenerate")
        with self._lock:
            self._pending_refines.append(request)

    def request_reset(self) -> None:
        """Forget all tracks at the next frame; track IDs are never reused."""
        with self._lock:
            self._reset_requested = True

    def release_state(self) -> list[int]:
        """Forget every track and cached prompt feature now (call between frames, e.g. to free GPU
        memory); concepts stay and are re-encoded on the next frame. Track IDs are never reused."""
        gone = self.tracks.reset()
        self._drop_memory(gone)
        self._pending_removed.extend(gone)
        self._text_cache.clear()
        for state in self._concepts.values():
            state.features = None
        return gone

    def state_bytes(self) -> int:
        """Bytes of tensors the pipeline keeps between frames (track memory, masks, cached prompts)."""
        tensors = {id(t): t for m in self._memories.values() for e in (*m.recent, *m.conditioning)
                   for t in (e.features, e.pointer)}
        tensors.update((id(t), t) for t in self._last_visible_mask.values())
        for features in (*self._text_cache.values(),
                         *(s.features for s in self._concepts.values() if s.features is not None)):
            tensors.update((id(t), t) for t in (features.features, features.mask))
        return sum(t.numel() * t.element_size() for t in tensors.values())

    # -- the frame loop -----------------------------------------------------------------------------
    def step(self, image: np.ndarray, stamp_ns: int | None = None) -> FrameResult:
        """Process one (H, W, 3) uint8 RGB frame."""
        _check_image(image)
        height, width = image.shape[:2]
        self.last_image_size = (height, width)
        timer = _StageTimer(sync_cuda=self.device.type == "cuda")
        self._sync_prompts()
        warnings = self._recover_from_failed_frame()
        comp, g = self.components, self.geometry
        frame = self.frame_index

        with timer("preprocess"):
            pixels = image_to_pixel_values(image, g.image_size, self.device, comp.dtype)
        with timer("vision"):
            vision = comp.vision(pixels)
        with timer("prompts"):
            warnings += self._encode_concepts(vision, (height, width))
        with timer("detector"):
            detections = self._detect(vision)
        with timer("tracker"):
            propagation = self._propagate(vision, frame)
            refined, refine_warnings = self._apply_refines(vision, frame, propagation, (height, width))
            warnings += refine_warnings
        with timer("association"):
            observations = self._observations(frame, detections, propagation)
            decisions = self.tracks.update(observations)
        with timer("memory"):
            # Same-concept masks can only overlap where tracks overlapped, or masks were replaced or hidden.
            may_overlap = bool(decisions.reconditioned or refined or not observations.track_visible.all()
                               or (np.triu(observations.track_pair_iou, k=1) > 0).any())
            self._update_memory(vision, frame, detections, propagation, decisions, refined, may_overlap)
        with timer("postprocess"):
            instances = self._instances(detections, propagation, decisions, (height, width))
        timer.timings["total"] = sum(timer.timings.values())

        removed = self._pending_removed + list(decisions.removed)
        self._pending_removed = []
        if decisions.births_dropped:
            warnings.append(f"track cap {self.config.tracking.max_tracks} reached: "
                            f"{decisions.births_dropped} new detections not tracked")
        self.frame_index += 1
        return FrameResult(
            frame_index=frame, image_height=height, image_width=width, instances=instances,
            timings_ms=timer.timings, stamp_ns=stamp_ns, live_tracks=len(self.tracks.tracks),
            removed_track_ids=removed, warnings=warnings,
        )

    def _recover_from_failed_frame(self) -> list[str]:
        """A frame that raised half-way may leave tracks born without memory: end them."""
        orphans = [tid for tid in self.tracks.live_ids if tid not in self._memories]
        for tid in orphans:
            self.tracks.drop_track(tid)
        self._forget_tracks(orphans)
        return [f"tracks {orphans} ended: the previous frame failed before their memory was written"] if orphans else []

    # -- prompts ---------------------------------------------------------------------------------------
    def _sync_prompts(self) -> None:
        """Apply prompt edits and reset requests made since the last frame."""
        with self._lock:
            reset, self._reset_requested = self._reset_requested, False
            changed = self.prompts.version != self._synced_version
            wanted = list(self.prompts) if changed else None
            self._synced_version = self.prompts.version
        if reset:
            self._forget_tracks(self.tracks.reset())
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
                    self._forget_tracks(self.tracks.drop_concept(concept.id))
        for concept_id in set(self._concepts) - set(new):
            self._forget_tracks(self.tracks.drop_concept(concept_id))
        self._concepts = new

    def _forget_tracks(self, track_ids: list[int]) -> None:
        """Drop tracks removed outside association (prompt edits, resets); reported next frame."""
        self._drop_memory(track_ids)
        self._pending_removed.extend(track_ids)

    def _drop_memory(self, track_ids) -> None:
        for tid in track_ids:
            self._memories.pop(tid, None)
            self._last_visible_mask.pop(tid, None)

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

    def _encode_concepts(self, vision: VisionFeatures, image_size: tuple[int, int]) -> list[str]:
        """Text features (cached per phrase); exemplar tokens from the first frame after a change."""
        warnings = []
        for state in self._concepts.values():
            if state.features is not None or state.error is not None:
                continue
            try:
                concept = validate_concept(state.concept, image_size)
            except PromptError as err:
                state.error = str(err)
                warnings.append(f"concept {state.concept.id!r} disabled: {err}")
                continue
            text, text_warnings = self._text_features(concept.model_phrase)
            warnings += text_warnings
            state.features = text if not concept.exemplars else _concat_prompts(
                text, self._exemplar_features(vision, concept, image_size))
        return warnings

    def _exemplar_features(self, vision, concept: Concept, image_size: tuple[int, int]) -> PromptFeatures:
        height, width = image_size
        xyxy = torch.tensor([b.as_tuple() for b in concept.exemplars], dtype=torch.float32, device=self.device)
        xyxy = xyxy / torch.tensor([width, height, width, height], dtype=torch.float32, device=self.device)
        cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                              xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=1)
        labels = torch.tensor([[int(b.positive) for b in concept.exemplars]], device=self.device)
        return self.components.exemplars(vision, cxcywh[None], labels)

    # -- detection -------------------------------------------------------------------------------------
    def _detect(self, vision: VisionFeatures) -> Detections:
        ready = [s for s in self._concepts.values() if s.features is not None]
        if not ready:
            return Detections.empty(self.geometry.mask_size, self.device)
        by_length: dict[int, list[_ConceptState]] = {}
        for state in ready:
            by_length.setdefault(state.features.features.shape[1], []).append(state)
        default_threshold = self.config.detection.score_threshold
        candidates = []  # (concept state, its mask logits (Q, h, w), indices of queries above threshold)
        for group in by_length.values():
            prompts = PromptFeatures(
                torch.cat([s.features.features for s in group]), torch.cat([s.features.mask for s in group]))
            out = self.components.detector(vision, prompts)
            for k, state in enumerate(group):
                threshold = state.concept.score_threshold or default_threshold
                candidates.append((state, out.mask_logits[k], torch.nonzero(out.scores[k] > threshold).flatten(),
                                   out.scores[k]))
        concept_index = torch.cat([torch.full_like(rows, i) for i, (_, _, rows, _) in enumerate(candidates)])
        scores = torch.cat([scores[rows] for _, _, rows, scores in candidates]).float()
        masks = torch.cat([logits[rows] > 0 for _, logits, rows, _ in candidates])
        keep = mask_nms(scores, masks, self.config.detection.nms_iou, groups=concept_index)
        if keep.numel() == 0:
            return Detections.empty(self.geometry.mask_size, self.device)
        # Only the kept detections' logits are copied, once.
        owner = concept_index[keep].tolist()
        starts = np.cumsum([0] + [len(rows) for _, _, rows, _ in candidates])
        kept_logits = [candidates[c][1][candidates[c][2][int(k) - starts[c]]] for c, k in zip(owner, keep.tolist())]
        return Detections([candidates[c][0].concept.id for c in owner], scores[keep], torch.stack(kept_logits).float())

    # -- tracking --------------------------------------------------------------------------------------
    def _propagate(self, vision: VisionFeatures, frame: int) -> _Propagation:
        ids = self.tracks.live_ids
        g = self.geometry
        masks = torch.zeros(len(ids), g.mask_size, g.mask_size, device=self.device)
        logits = torch.zeros(len(ids), device=self.device)
        pointers = torch.zeros(len(ids), g.hidden, device=self.device, dtype=self.components.dtype)
        groups: dict[tuple[int, int], list[int]] = {}
        for row, tid in enumerate(ids):
            groups.setdefault(layout_key(self._memories[tid], frame), []).append(row)
        for rows in groups.values():
            batch = batch_memories([self._memories[ids[r]] for r in rows], frame)
            out = self.components.tracker(vision, batch)
            index = torch.tensor(rows, device=self.device)
            masks[index] = out.mask_logits.float()
            logits[index] = out.object_logits.float()
            pointers[index] = out.pointers.to(pointers.dtype)
        return _Propagation(ids, masks, logits, pointers)

    def _apply_refines(self, vision, frame: int, prop: _Propagation, image_size) -> tuple[set[int], list[str]]:
        """Replace the propagated masks of tracks a person corrected; returns their ids."""
        with self._lock:
            requests, self._pending_refines = self._pending_refines, []
        refined, warnings = set(), []
        height, width = image_size
        scale = torch.tensor([self.geometry.image_size / width, self.geometry.image_size / height])
        for request in requests:
            if request.track_id not in prop.track_ids:
                warnings.append(f"refinement of track {request.track_id} dropped: the track ended")
                continue
            points = labels = box = None
            if request.points:
                xy = torch.tensor([p[:2] for p in request.points], dtype=torch.float32) * scale
                points = xy[None, None].to(self.device)
                labels = torch.tensor([[[int(p[2]) for p in request.points]]], device=self.device)
            if request.box_xyxy is not None:
                box = (torch.tensor(request.box_xyxy, dtype=torch.float32).view(2, 2) * scale).view(1, 1, 4)
                box = box.to(self.device)
            batch = batch_memories([self._memories[request.track_id]], frame)
            out = self.components.refiner(vision, batch, points, labels, box)
            row = prop.track_ids.index(request.track_id)
            prop.mask_logits[row] = out.mask_logits[0].float()
            prop.object_logits[row] = out.object_logits[0]
            prop.pointers[row] = out.pointers[0].to(prop.pointers.dtype)
            refined.add(request.track_id)
        return refined, warnings

    def _observations(self, frame: int, dets: Detections, prop: _Propagation) -> Observations:
        """Every IoU association needs, from one mask-overlap product of detections and tracks."""
        visible = prop.visible.cpu().numpy()
        current = prop.mask_logits > 0
        hidden = np.flatnonzero(~visible)
        if hidden.size:  # a hidden track is matched on its last visible mask
            current[torch.from_numpy(hidden).to(self.device)] = self._last_masks([prop.track_ids[i] for i in hidden])
        det_track, track_track = association_ious(dets.masks, current)
        return Observations(
            frame_index=frame,
            det_concepts=dets.concept_ids,
            det_scores=dets.scores.cpu().numpy(),
            track_ids=prop.track_ids,
            det_track_iou=det_track.cpu().numpy(),
            track_visible=visible,
            track_pair_iou=track_track.cpu().numpy() * np.outer(visible, visible),
        )

    def _last_masks(self, track_ids: list[int]) -> torch.Tensor:
        size = self.geometry.mask_size
        empty = torch.zeros(size, size, dtype=torch.bool, device=self.device)
        return torch.stack([self._last_visible_mask.get(t, empty) for t in track_ids])

    def _update_memory(self, vision: VisionFeatures, frame: int, dets: Detections, prop: _Propagation,
                       decisions: Decisions, refined: set[int], may_overlap: bool = True) -> None:
        """Encode this frame into the memory of every live track, and start new tracks."""
        self._drop_memory(decisions.removed)
        row_of = {tid: i for i, tid in enumerate(prop.track_ids)}
        continuing = [t for t in prop.track_ids if t in self.tracks.tracks and t not in decisions.reacquired]
        restarted = list(decisions.reacquired.items()) + list(decisions.births.items())

        rows = torch.tensor([row_of[t] for t in continuing], dtype=torch.long, device=self.device)
        logits = prop.mask_logits[rows]
        if self.config.tracking.recondition_with_detection:
            for i, tid in enumerate(continuing):
                if tid in decisions.reconditioned:
                    logits[i] = _binary_logits(dets.masks[decisions.reconditioned[tid]])
        concepts = [self.tracks.tracks[t].concept_id for t in continuing]
        if may_overlap:
            logits = suppress_shrunk_overlaps(logits, concepts)
        pointers = prop.pointers[rows]
        conditioning = [t in decisions.reconditioned or t in refined for t in continuing]
        for tid in refined & set(self.tracks.tracks):
            self.tracks.refined(tid)

        if restarted:
            det_masks = dets.masks[torch.tensor([d for _, d in restarted], device=self.device)]
            started: TrackerOutput = self.components.mask_prompter(vision, det_masks)
            logits = torch.cat([logits, _binary_logits(det_masks)])
            pointers = torch.cat([pointers, started.pointers.to(pointers.dtype)])
            conditioning += [True] * len(restarted)
        track_ids = continuing + [t for t, _ in restarted]
        if not track_ids:
            return
        positive = logits > 0
        present = positive.flatten(1).any(dim=1)
        object_logits = torch.where(present, 10.0, -10.0)
        features = self.components.memory_encoder(vision, logits, object_logits)
        mem = self.config.memory
        for i, (tid, visible) in enumerate(zip(track_ids, present.tolist())):
            if tid not in self._memories:
                self._memories[tid] = TrackMemory(self.geometry.num_maskmem, mem.max_cond_frames,
                                                  mem.max_object_pointers)
            self._memories[tid].add(MemoryEntry(frame, features[i], pointers[i], conditioning[i]))
            if visible:
                self._last_visible_mask[tid] = positive[i]

    # -- output ------------------------------------------------------------------------------------------
    def _instances(self, dets: Detections, prop: _Propagation, decisions: Decisions,
                   image_size: tuple[int, int]) -> list[Instance]:
        reported = self.tracks.reported(self.config.output.publish_tentative)
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
        upsampled = upsample_masks(torch.stack(logits), image_size)
        instances = []
        for track, mask, box, score in zip(reported, upsampled.masks, upsampled.boxes, scores):
            if mask is None:
                continue  # vanished at image resolution
            concept = self._concepts[track.concept_id].concept
            instances.append(Instance(track_id=track.track_id, concept_id=track.concept_id, label=concept.label,
                                      score=score, box_xyxy=box, state=track.state, mask=mask))
        return instances


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
