"""The ~/find goal as a state machine over processed frames (no rclpy here).

A ``FindSession`` watches the frames of one temporary concept: a track qualifies on a frame when
it scores at least ``min_score`` and has a 3D position. The goal succeeds once some track has
qualified on ``stable_frames`` consecutive frames of its camera (a goal may name one camera; by
default it watches all); it fails on timeout (saying whether
candidates lacked depth), when the node stops being active, or when cancelled.
Frames arrive on the inference thread; ``run_find`` waits on the action's thread.
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core.prompts import Concept
from ..core.results import FrameResult, Instance

DEFAULT_TIMEOUT_S = 10.0


class FindReason(enum.IntEnum):
    """Values match the REASON_* constants of action/Find.action."""

    FOUND = 0
    TIMEOUT = 1
    NO_DEPTH = 2
    NOT_ACTIVE = 3
    CANCELED = 4
    INVALID = 5


@dataclass(frozen=True)
class FindGoal:
    concept: Concept            # as the node tracks it for the goal (temporary id unless kept)
    min_score: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    stable_frames: int = 1
    keep_concept: bool = False
    camera: str = ""            # only this camera's instances; "": any camera

    def __post_init__(self) -> None:  # the action's "0 = default" values
        object.__setattr__(self, "timeout_s", self.timeout_s if self.timeout_s > 0 else DEFAULT_TIMEOUT_S)
        object.__setattr__(self, "stable_frames", max(1, int(self.stable_frames)))


@dataclass
class FindOutcome:
    reason: FindReason
    message: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.reason == FindReason.FOUND


@dataclass
class FindProgress:
    """Feedback: frames seen, and this frame's located candidates with their streaks."""

    frames_seen: int
    candidates: list[Instance]
    stable_for: list[int]


class FindSession:
    def __init__(self, goal: FindGoal, now_s: Callable[[], float] = time.monotonic):
        self.goal = goal
        self._now_s = now_s
        self._deadline_s = now_s() + goal.timeout_s
        self._changed = threading.Condition()
        self._streaks: dict[int, tuple[str, int]] = {}  # track id -> (its camera, qualifying frames in a row)
        self._progress: FindProgress | None = None
        self._frames = 0
        self._unlocated = 0  # frames with candidates above min_score but no 3D position
        self.outcome: FindOutcome | None = None

    @classmethod
    def finished(cls, goal: FindGoal | None, reason: FindReason, message: str) -> "FindSession":
        """A session that ended before any frame (invalid goal, node not active, no depth)."""
        session = cls(goal or FindGoal(Concept("invalid", "invalid", (), None)))
        session.outcome = FindOutcome(reason, message)
        return session

    # -- inputs (any thread) -------------------------------------------------------------------------
    def on_frame(self, result: FrameResult) -> None:
        """One camera's frame; a frame of a camera the goal does not watch is ignored."""
        goal = self.goal
        if goal.camera and result.camera != goal.camera:
            return
        ours = [i for i in result.instances if i.concept_id == goal.concept.id and i.score >= goal.min_score]
        located = [i for i in ours if i.position_3d is not None]
        others = {t: s for t, s in self._streaks.items() if s[0] != result.camera}  # other cameras' tracks go on
        self._streaks = {**others, **{i.track_id: (result.camera, self._streak(i.track_id) + 1) for i in located}}
        located.sort(key=lambda i: -i.score)
        with self._changed:
            if self.outcome is not None:
                return
            self._frames += 1
            self._unlocated += bool(ours) and not located
            self._progress = FindProgress(self._frames, located, [self._streak(i.track_id) for i in located])
            stable = [i for i in located if self._streak(i.track_id) >= goal.stable_frames]
            if stable:
                self._finish(FindReason.FOUND, f"found {len(stable)} '{self._name()}' instance(s) stable for "
                             f"{goal.stable_frames} frame(s) after {self._frames} frame(s)", stable)
            self._changed.notify_all()

    def _streak(self, track_id: int) -> int:
        return self._streaks.get(track_id, ("", 0))[1]

    def cancel(self) -> None:
        with self._changed:
            self._finish(FindReason.CANCELED, f"cancelled after {self._frames} frame(s)")

    def stop(self, why: str) -> None:
        """The node stopped taking frames (deactivated, cleaned up)."""
        with self._changed:
            self._finish(FindReason.NOT_ACTIVE, f"the node stopped: {why}")

    # -- the waiting side ------------------------------------------------------------------------------
    def wait(self, timeout_s: float) -> FindProgress | None:
        """Wait up to ``timeout_s`` for a frame; returns new progress (None: none), ends on timeout."""
        with self._changed:
            if self.outcome is None and self._progress is None:
                self._changed.wait(timeout_s)
            progress, self._progress = self._progress, None
            if self.outcome is None and self._now_s() >= self._deadline_s:
                self._time_out()
            return progress

    def _time_out(self) -> None:
        goal = self.goal
        if self._unlocated:
            self._finish(FindReason.NO_DEPTH, f"'{self._name()}' was seen on {self._unlocated} frame(s) but had no "
                         f"3D position (no depth or camera_info) within {goal.timeout_s:g} s")
        else:
            self._finish(FindReason.TIMEOUT, f"timeout: no '{self._name()}' scoring >= {goal.min_score:g} stayed "
                         f"for {goal.stable_frames} frame(s) within {goal.timeout_s:g} s ({self._frames} frames seen)")

    def _finish(self, reason: FindReason, message: str, instances: list[Instance] | None = None) -> None:
        if self.outcome is None:
            self.outcome = FindOutcome(reason, message, instances or [])
            self._changed.notify_all()

    def _name(self) -> str:
        return self.goal.concept.text or self.goal.concept.id


def run_find(session: FindSession, cancel_requested: Callable[[], bool],
             publish_feedback: Callable[[FindProgress], None], poll_s: float = 0.1) -> FindOutcome:
    """The action's execute loop: feedback on every frame until the session ends."""
    while session.outcome is None:
        if cancel_requested():
            session.cancel()
            break
        progress = session.wait(poll_s)
        if progress is not None and session.outcome is None:
            publish_feedback(progress)
    return session.outcome
