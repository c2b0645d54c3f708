"""FrameResults built from drawn masks, for the io tests."""
from __future__ import annotations

import numpy as np

from sam3_ros.core.masks import RleMask
from sam3_ros.core.results import FrameResult, Instance, Position3D, TrackState

HEIGHT, WIDTH = 48, 64


def disc(cx: float, cy: float, radius: float, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    return (cols - cx) ** 2 + (rows - cy) ** 2 <= radius ** 2


def instance(track_id: int, mask: np.ndarray, label: str = "cup", score: float = 0.8,
             state: TrackState = TrackState.CONFIRMED, position: Position3D | None = None) -> Instance:
    rows, cols = np.nonzero(mask)
    box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    concept_id = label.replace(" ", "_")
    return Instance(track_id, concept_id, label, score, box, state, RleMask.from_array(mask), position)


def sample_masks() -> dict[int, np.ndarray]:
    """Masks by track id: two overlapping discs, a rectangle and a disc with a huge track id."""
    rectangle = np.zeros((HEIGHT, WIDTH), bool)
    rectangle[30:44, 5:25] = True
    return {3: disc(20, 15, 9), 4: disc(28, 18, 7), 70000: disc(50, 35, 6), 12: rectangle}


def sample_result(stamp_ns: int = 1_700_000_000_123_456_789, frame_index: int = 5) -> FrameResult:
    masks = sample_masks()
    cup_position = Position3D("camera_optical", (0.1, -0.2, 1.5), (0.08, 0.1, 0.05), 120)
    forklift_position = Position3D("camera_optical", (1.0, 0.5, 6.0), (2.0, 2.2, 1.5), 400)
    instances = [
        instance(3, masks[3], "red cup", 0.91, position=cup_position),
        instance(4, masks[4], "red cup", 0.55, TrackState.TENTATIVE),
        instance(70000, masks[70000], "forklift", 0.7, position=forklift_position),
        instance(12, masks[12], "pallet", 0.66),
    ]
    return FrameResult(frame_index, HEIGHT, WIDTH, instances, timings_ms={"total": 12.5}, stamp_ns=stamp_ns,
                       live_tracks=4)
