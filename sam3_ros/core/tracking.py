"""Streaming track life cycle: association of detections with masklets, birth, confirmation,
keep-alive, loss, re-acquisition, duplicate suppression and removal.

This module sees IoU matrices and scores, never images or models, so it can be driven by
the real pipeline or by a scripted stand-in in tests. Track IDs start at 1 (0 is the
background of the instance-ID image) and are never reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .config import DetectionConfig, TrackingConfig
from .results import TrackState


@dataclass
class Track:
    track_id: int
    concept_id: str
    born_frame: int
    keep_alive: int
    score: float
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    misses: int = 0
    visible: bool = True
    last_matched_frame: int = 0
    duplicate_streak: int = 0


@dataclass
class Observations:
    """What association needs to know about one frame.

    ``det_track_iou[d, t]`` is the mask IoU of detection d with track t's reference mask:
    its propagated mask when visible, its last visible mask when not. Tracks are given in
    ``track_ids`` order; ``track_pair_iou`` is their mutual IoU on this frame.
    """

    frame_index: int
    det_concepts: Sequence[str]
    det_scores: np.ndarray
    track_ids: Sequence[int]
    det_track_iou: np.ndarray
    track_visible: np.ndarray
    track_pair_iou: np.ndarray

    @classmethod
    def detections_only(cls, frame_index: int, det_concepts: Sequence[str], det_scores) -> "Observations":
        n = len(det_concepts)
        return cls(frame_index, list(det_concepts), np.asarray(det_scores, dtype=float), [],
                   np.zeros((n, 0)), np.zeros(0, dtype=bool), np.zeros((0, 0)))


@dataclass
class Decisions:
    """What the pipeline must do to its tracker state after association."""

    matched: dict[int, int] = field(default_factory=dict)        # track id -> detection index
    reacquired: dict[int, int] = field(default_factory=dict)     # lost track id -> detection index
    births: dict[int, int] = field(default_factory=dict)         # new track id -> detection index
    reconditioned: dict[int, int] = field(default_factory=dict)  # track id -> detection index
    removed: dict[int, str] = field(default_factory=dict)        # track id -> reason
    births_dropped: int = 0                                      # births refused by the track cap


class TrackIds:
    """Track IDs from 1 upwards, never reused; one allocator may serve several cameras' TrackManagers."""

    def __init__(self) -> None:
        self._next = 1

    def take(self) -> int:
        self._next += 1
        return self._next - 1


class TrackManager:
    def __init__(self, tracking: TrackingConfig, detection: DetectionConfig, ids: TrackIds | None = None):
        self.cfg = tracking
        self.new_track_threshold = detection.new_track_threshold
        self.tracks: dict[int, Track] = {}
        self.ids = ids or TrackIds()
        self.total_births_dropped = 0

    # -- queries ---------------------------------------------------------------------------
    @property
    def live_ids(self) -> list[int]:
        return list(self.tracks)

    def reported(self, include_tentative: bool = True) -> list[Track]:
        """Tracks to publish on this frame: visible, and confirmed unless tentative is wanted."""
        wanted = {TrackState.CONFIRMED, TrackState.TENTATIVE} if include_tentative else {TrackState.CONFIRMED}
        return [t for t in self.tracks.values() if t.visible and t.state in wanted]

    # -- changes from outside the frame loop -------------------------------------------------
    def drop_concept(self, concept_id: str) -> list[int]:
        gone = [tid for tid, t in self.tracks.items() if t.concept_id == concept_id]
        for tid in gone:
            del self.tracks[tid]
        return gone

    def drop_track(self, track_id: int) -> bool:
        return self.tracks.pop(track_id, None) is not None

    def refined(self, track_id: int) -> None:
        """A person corrected this track's mask: treat it as confirmed and freshly matched."""
        track = self.tracks[track_id]
        track.state = TrackState.CONFIRMED
        track.hits = max(track.hits, self.cfg.confirm_hits)
        track.keep_alive = self.cfg.keep_alive
        track.misses = 0

    def reset(self) -> list[int]:
        """Forget every track. IDs keep counting, so none is ever reused."""
        gone = list(self.tracks)
        self.tracks.clear()
        return gone

    # -- the per-frame update ------------------------------------------------------------------
    def update(self, obs: Observations) -> Decisions:
        if list(obs.track_ids) != self.live_ids:
            raise ValueError("observations must list the live tracks in TrackManager order")
        cfg = self.cfg
        decisions = Decisions()
        tracks = [self.tracks[tid] for tid in obs.track_ids]
        iou = self._same_concept_only(obs, tracks)
        visible = np.asarray(obs.track_visible, dtype=bool)
        scores = np.asarray(obs.det_scores, dtype=float)

        matches = _greedy_pairs(iou, cfg.match_iou, rows=None, cols=np.flatnonzero(visible), scores=scores)
        free_dets = np.setdiff1d(np.arange(len(scores)), [d for d, _ in matches])
        reacquisitions = _greedy_pairs(iou, cfg.reacquire_iou, rows=free_dets, cols=np.flatnonzero(~visible),
                                       scores=scores)
        for d, ti in matches:
            decisions.matched[tracks[ti].track_id] = int(d)
        for d, ti in reacquisitions:
            decisions.reacquired[tracks[ti].track_id] = int(d)

        taken = {d for d, _ in matches} | {d for d, _ in reacquisitions}
        self._plan_births(obs, iou, visible, taken, decisions)
        self._update_existing(obs, tracks, visible, iou, decisions)
        self._suppress_duplicates(obs, decisions)
        self._plan_reconditioning(obs, iou, decisions)
        self._add_births(obs, decisions)
        return decisions

    def _same_concept_only(self, obs: Observations, tracks: list[Track]) -> np.ndarray:
        iou = np.array(obs.det_track_iou, dtype=float).reshape(len(obs.det_scores), len(tracks))
        if iou.size:
            det_c = np.asarray(obs.det_concepts, dtype=object)[:, None]
            trk_c = np.asarray([t.concept_id for t in tracks], dtype=object)[None, :]
            iou = np.where(det_c == trk_c, iou, 0.0)
        return iou

    def _plan_births(self, obs, iou, visible, taken, decisions) -> None:
        scores = np.asarray(obs.det_scores, dtype=float)
        near_visible = (iou[:, visible] >= self.cfg.assoc_iou).any(axis=1) if iou.size else np.zeros(len(scores), bool)
        candidates = [d for d in np.argsort(-scores, kind="stable")
                      if d not in taken and not near_visible[d] and scores[d] >= self.new_track_threshold]
        room = max(self.cfg.max_tracks - len(self.tracks), 0)
        decisions.births_dropped = max(len(candidates) - room, 0)
        self.total_births_dropped += decisions.births_dropped
        for d in candidates[:room]:
            decisions.births[self.ids.take()] = int(d)

    def _update_existing(self, obs, tracks, visible, iou, decisions) -> None:
        cfg = self.cfg
        scores = np.asarray(obs.det_scores, dtype=float)
        for i, track in enumerate(tracks):
            det = decisions.matched.get(track.track_id, decisions.reacquired.get(track.track_id))
            if det is not None:
                track.hits += 1
                track.misses = 0
                track.keep_alive = min(cfg.keep_alive, track.keep_alive + 1)
                track.score = float(scores[det])
                track.visible = True
                track.last_matched_frame = obs.frame_index
                if track.state == TrackState.LOST:
                    track.state = TrackState.CONFIRMED
                elif track.state == TrackState.TENTATIVE and track.hits >= cfg.confirm_hits:
                    track.state = TrackState.CONFIRMED
                continue
            track.keep_alive -= 1
            track.visible = bool(visible[i])
            if track.state == TrackState.TENTATIVE:
                track.misses += 1
                if track.misses >= cfg.tentative_max_misses:
                    decisions.removed[track.track_id] = "tentative track unmatched too often"
            elif not track.visible:
                track.state = TrackState.LOST
            else:
                track.state = TrackState.CONFIRMED
            if track.state == TrackState.TENTATIVE and obs.frame_index - track.born_frame >= cfg.tentative_max_age:
                decisions.removed.setdefault(track.track_id, "not confirmed in time")
            if track.keep_alive <= 0:
                decisions.removed.setdefault(track.track_id, "keep-alive expired")
        for tid in decisions.removed:
            self.tracks.pop(tid, None)

    def _suppress_duplicates(self, obs: Observations, decisions: Decisions) -> None:
        index = {tid: i for i, tid in enumerate(obs.track_ids)}
        alive = [t for t in self.tracks.values() if t.visible]
        rows = np.array([index[t.track_id] for t in alive], dtype=int)
        concepts = np.array([t.concept_id for t in alive], dtype=object)
        close = np.asarray(obs.track_pair_iou, dtype=float)[np.ix_(rows, rows)] >= self.cfg.duplicate_iou
        close &= concepts[:, None] == concepts[None, :]
        flagged: set[int] = set()
        for a_pos, b_pos in zip(*np.nonzero(np.triu(close, k=1))):  # only the overlapping pairs
            younger = max(alive[a_pos], alive[b_pos], key=lambda t: (t.born_frame, t.track_id))
            flagged.add(younger.track_id)
        for track in list(self.tracks.values()):
            if track.track_id not in flagged:
                track.duplicate_streak = 0
                continue
            track.duplicate_streak += 1
            if track.state == TrackState.TENTATIVE or track.duplicate_streak >= self.cfg.duplicate_frames:
                decisions.removed[track.track_id] = "duplicate of an older track"
                del self.tracks[track.track_id]
                decisions.matched.pop(track.track_id, None)
                decisions.reacquired.pop(track.track_id, None)

    def _plan_reconditioning(self, obs: Observations, iou: np.ndarray, decisions: Decisions) -> None:
        cfg = self.cfg
        if cfg.recondition_every <= 0 or obs.frame_index % cfg.recondition_every != 0:
            return
        index = {tid: i for i, tid in enumerate(obs.track_ids)}
        for tid, det in decisions.matched.items():
            if obs.det_scores[det] >= cfg.recondition_score and iou[det, index[tid]] >= cfg.recondition_iou:
                decisions.reconditioned[tid] = det

    def _add_births(self, obs: Observations, decisions: Decisions) -> None:
        for tid, det in decisions.births.items():
            state = TrackState.CONFIRMED if self.cfg.confirm_hits <= 1 else TrackState.TENTATIVE
            self.tracks[tid] = Track(
                track_id=tid, concept_id=obs.det_concepts[det], born_frame=obs.frame_index,
                keep_alive=self.cfg.keep_alive, score=float(obs.det_scores[det]), state=state,
                last_matched_frame=obs.frame_index,
            )


def _greedy_pairs(iou: np.ndarray, threshold: float, rows, cols, scores: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, col) by descending IoU (then score), each IoU >= threshold."""
    rows = np.arange(iou.shape[0]) if rows is None else np.asarray(rows, dtype=int)
    cols = np.asarray(cols, dtype=int)
    if rows.size == 0 or cols.size == 0:
        return []
    sub = iou[np.ix_(rows, cols)]
    r, c = np.nonzero(sub >= threshold)
    order = sorted(zip(r, c), key=lambda rc: (-sub[rc], -scores[rows[rc[0]]]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for ri, ci in order:
        if ri in used_r or ci in used_c:
            continue
        used_r.add(ri)
        used_c.add(ci)
        pairs.append((int(rows[ri]), int(cols[ci])))
    return pairs
