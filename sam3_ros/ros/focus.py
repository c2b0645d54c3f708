"""Following one track (~/focus), without rclpy.

The focus stays on the track ID it was given, on the camera that track is on (IDs are unique
across cameras; a track never moves to another camera): when the track is not visible the status says
OCCLUDED, and once the track is removed it says LOST for good; it never moves to another track.
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Iterable

from ..core.results import FrameResult, Instance, TrackState


class FocusState(enum.IntEnum):
    """Values match the STATUS_* constants of msg/FocusStatus.msg."""

    NONE = 0
    VISIBLE = 1
    OCCLUDED = 2
    LOST = 3


@dataclass(frozen=True)
class FocusUpdate:
    track_id: int
    state: FocusState
    label: str
    instance: Instance | None  # the track on this frame when VISIBLE
    message: str


class Focus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.track_id = 0
        self.camera = ""  # the followed track's camera ("" for a single-camera node)
        self._label = ""
        self._lost = False

    def set(self, track_id: int, live_ids: Iterable[int], camera: str = "") -> tuple[bool, str]:
        """Follow ``track_id`` (0 clears), seen on ``camera``. Only a live track can be followed."""
        live = sorted(live_ids)
        with self._lock:
            if track_id == 0:
                self.track_id, self.camera, self._label, self._lost = 0, "", "", False
                return True, "focus cleared"
            if track_id not in live:
                return False, f"track {track_id} is not live; live tracks: {live}"
            self.track_id, self.camera, self._label, self._lost = int(track_id), camera, "", False
        return True, f"following track {track_id}"

    def on_frame(self, result: FrameResult, live_ids: Iterable[int]) -> FocusUpdate | None:
        """The followed track's state on this frame; None when nothing is followed."""
        with self._lock:
            track_id = self.track_id
            if track_id == 0:
                return None
            instance = next((i for i in result.instances if i.track_id == track_id), None)
            if instance is not None:
                self._label = instance.label
            if self._lost or track_id in result.removed_track_ids or track_id not in set(live_ids):
                self._lost = True
                return FocusUpdate(track_id, FocusState.LOST, self._label, None,
                                   f"track {track_id} was removed; call ~/focus with another track id")
            if instance is None or instance.state == TrackState.LOST:
                return FocusUpdate(track_id, FocusState.OCCLUDED, self._label, None,
                                   f"track {track_id} is alive but not visible on this frame")
            return FocusUpdate(track_id, FocusState.VISIBLE, self._label, instance, f"track {track_id} visible")
