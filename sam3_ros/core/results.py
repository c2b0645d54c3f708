"""What the pipeline returns for every frame."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .geometry import OrientedBox
from .masks import RleMask


ID_IMAGE_VALUES = 65535  # non-zero values of a mono16 pixel


def id_image_value(track_id: int) -> int:
    """The instance-ID image pixel of a track: ids wrap into 1..65535 as ((id - 1) % 65535) + 1,
    so 0 stays "no instance" and track 65536 shares pixel value 1 with track 1."""
    return (track_id - 1) % ID_IMAGE_VALUES + 1


class TrackState(enum.IntEnum):
    """Life cycle of a track. Values match the STATE_* constants of msg/Instance.msg."""

    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2


@dataclass(frozen=True)
class Position3D:
    """Centroid and axis-aligned extent of an instance's mask pixels, in metres, and their
    PCA-oriented box (None when too few points for one)."""

    frame_id: str
    centroid: tuple[float, float, float]
    size: tuple[float, float, float]
    num_points: int
    box: OrientedBox | None = None


@dataclass(frozen=True)
class Instance:
    """One visible instance of one concept on one frame."""

    track_id: int
    concept_id: str
    label: str
    score: float
    box_xyxy: tuple[float, float, float, float]
    state: TrackState
    mask: RleMask
    position_3d: Position3D | None = None
    camera: str = ""  # the camera it was seen on ("" for a single-camera pipeline)

    def to_json(self) -> dict:
        out = {
            "track_id": self.track_id,
            "concept_id": self.concept_id,
            "label": self.label,
            "score": round(float(self.score), 6),
            "box_xyxy": [round(float(v), 3) for v in self.box_xyxy],
            "state": self.state.name.lower(),
            "mask_rle": self.mask.to_coco(),
        }
        if self.camera:
            out["camera"] = self.camera
        if self.position_3d is not None:
            out["position_3d"] = {
                "frame_id": self.position_3d.frame_id,
                "centroid": list(self.position_3d.centroid),
                "size": list(self.position_3d.size),
                "num_points": self.position_3d.num_points,
            }
        return out


@dataclass
class FrameResult:
    """All instances of all concepts on one frame, with per-stage timings in milliseconds."""

    frame_index: int
    image_height: int
    image_width: int
    instances: list[Instance]
    timings_ms: dict[str, float] = field(default_factory=dict)
    stamp_ns: int | None = None
    live_tracks: int = 0
    removed_track_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    camera: str = ""  # the camera of this frame ("" for a single-camera pipeline)

    def to_json(self) -> dict:
        return {
            **({"camera": self.camera} if self.camera else {}),
            "frame_index": self.frame_index,
            "stamp_ns": self.stamp_ns,
            "image_size": [self.image_height, self.image_width],
            "live_tracks": self.live_tracks,
            "removed_track_ids": list(self.removed_track_ids),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
            "instances": [inst.to_json() for inst in self.instances],
        }

    _id_image: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def instance_id_image(self, id_of: Callable[[Instance], int] | None = None) -> np.ndarray:
        """(H, W) uint16 image: each instance's pixels hold ``id_of(instance)`` (default: its
        ``id_image_value``), 0 elsewhere. Where masks overlap, the higher-scoring instance wins.

        Painted once from the masks' crops (work grows with mask area, not frame size beyond one
        allocation); the default image is kept, so the ID image and the overlay share it.
        """
        if id_of is None and self._id_image is not None:
            return self._id_image
        value_of = id_of or (lambda inst: id_image_value(inst.track_id))
        image = np.zeros((self.image_height, self.image_width), dtype=np.uint16)
        for inst in sorted(self.instances, key=lambda i: i.score):
            crop = inst.mask.crop()
            if crop is not None:
                crop.paste(image, value_of(inst))
        if id_of is None:
            self._id_image = image
        return image
