"""3D points and position of an instance from its mask and an aligned depth image (pinhole camera model).

Pixel (u, v) with depth z back-projects to ((u - cx) z / fx, (v - cy) z / fy, z): pixel centres
sit at integer coordinates, as in sensor_msgs/CameraInfo and OpenCV.
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import (MAX_STATISTICS_POINTS, as_columns, pca_box, pca_box_of_columns,  # noqa: F401
                       quaternion_to_matrix as quaternion_matrix)
from .masks import MaskCrop, RleMask
from .point_cloud import downsample
from .results import Position3D

# Outlier rule: keep points whose depth lies within max(MIN_BAND_M, BAND_SIGMAS * sigma) of the
# median depth, where sigma = 1.4826 * MAD is a robust standard deviation. The floor keeps a flat,
# face-on object (MAD near 0) and rejects background pixels the mask bleeds onto.
MIN_BAND_M = 0.05
BAND_SIGMAS = 3.0
_MAD_TO_SIGMA = 1.4826

# Extent: per-axis 2nd..98th percentile of the kept points, so a few stray points don't inflate it.
EXTENT_PERCENTILES = (2.0, 98.0)


def instance_points(mask: np.ndarray, depth_m: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                    min_points: int = 20) -> np.ndarray | None:
    """(N, 3) float64 points of a full (H, W) mask's pixels with valid, non-outlier depth, in the
    depth camera's frame (see ``crop_points``). A mask of another resolution is resized to the
    depth image (nearest neighbour) first."""
    if mask.ndim != 2 or depth_m.ndim != 2:
        raise ValueError(f"expected (H, W) mask and depth, got {mask.shape} and {depth_m.shape}")
    if mask.shape != depth_m.shape:
        height, width = depth_m.shape
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    crop = MaskCrop.of(mask.astype(bool))
    return None if crop is None else crop_points(crop, depth_m, fx, fy, cx, cy, min_points)


def mask_points(mask: RleMask, depth_m: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                min_points: int = 20) -> np.ndarray | None:
    """``crop_points`` of a mask read from its crop; a mask of another size than the depth image is
    resized to it first (``instance_points``)."""
    if depth_m.shape != (mask.height, mask.width):
        return instance_points(mask.to_array(), depth_m, fx, fy, cx, cy, min_points)
    crop = mask.crop()
    return None if crop is None else crop_points(crop, depth_m, fx, fy, cx, cy, min_points)


def crop_points(crop: MaskCrop, depth_m: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                min_points: int = 20) -> np.ndarray | None:
    """(N, 3) float64 points of a mask's pixels with valid, non-outlier depth, in the depth camera's frame
    (a view of a (3, N) array: ``as_columns`` takes it back without a copy).

    ``crop`` is the mask inside its box on an image of the depth's size; only the depth under the
    box is read. ``depth_m`` is (H, W) float metres with NaN/0 for no reading; fx, fy, cx, cy are the
    depth image's intrinsics. The outlier band (median and MAD of depth) comes from at most
    ``MAX_STATISTICS_POINTS`` evenly spread points, and applies to all of them. Returns None when
    fewer than ``min_points`` points remain.
    """
    region = crop.region(depth_m)
    with np.errstate(invalid="ignore"):
        valid = crop.bits & (region > 0) & (region < np.inf)  # NaN compares False
    z = region[valid]
    if z.size < min_points:
        return None

    sample = downsample(z, MAX_STATISTICS_POINTS).astype(np.float64)
    median = np.median(sample)
    band = max(MIN_BAND_M, BAND_SIGMAS * _MAD_TO_SIGMA * np.median(np.abs(sample - median)))
    with np.errstate(invalid="ignore"):
        valid &= np.abs(region - median) <= band
    columns = np.empty((3, np.count_nonzero(valid)))  # x, y, z rows: the statistics reduce along memory
    if columns.shape[1] < min_points:
        return None
    columns[2] = region[valid]
    height, width = region.shape
    x_per_z = (np.arange(crop.x1, crop.x1 + width) - cx) / fx
    y_per_z = (np.arange(crop.y1, crop.y1 + height) - cy) / fy
    np.multiply(np.broadcast_to(x_per_z[None, :], region.shape)[valid], columns[2], out=columns[0])
    np.multiply(np.broadcast_to(y_per_z[:, None], region.shape)[valid], columns[2], out=columns[1])
    return columns.T


def position_of_points(points: np.ndarray, frame_id: str) -> Position3D:
    """Centroid, robust axis-aligned extent (percentiles) and PCA box (when enough points) of (N, 3)
    points. All use every point, except the PCA axes (see ``pca_box``)."""
    columns = as_columns(points)
    low, high = _percentiles(columns, EXTENT_PERCENTILES)
    return Position3D(
        frame_id=frame_id,
        centroid=_triple(columns.mean(axis=1)),
        size=_triple(high - low),
        num_points=columns.shape[1],
        box=pca_box_of_columns(columns),
    )


def instance_position(
    mask: np.ndarray,
    depth_m: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    frame_id: str,
    min_points: int = 20,
) -> Position3D | None:
    """Centroid, axis-aligned extent and oriented box of a mask's pixels (see ``instance_points``)."""
    points = instance_points(mask, depth_m, fx, fy, cx, cy, min_points)
    return None if points is None else position_of_points(points, frame_id)


def _percentiles(columns: np.ndarray, percents: tuple[float, ...]) -> list[np.ndarray]:
    """Per-row percentiles of (3, N) values (linear interpolation, as np.percentile's default): one
    single-rank partial sort per percentile (several ranks in one np.partition call are far slower)."""
    n = columns.shape[1]
    result = []
    for q in percents:
        position = q / 100 * (n - 1)
        rank = int(np.floor(position))
        ordered = np.partition(columns, rank, axis=1)
        low = ordered[:, rank]
        high = ordered[:, rank + 1:].min(axis=1) if rank + 1 < n else low  # the next value up
        result.append(low + (high - low) * (position - rank))
    return result


def transform_points(points: np.ndarray, rotation_3x3: np.ndarray, translation_3: np.ndarray) -> np.ndarray:
    """(N, 3) points in another frame: p' = R p + t."""
    rotation = np.asarray(rotation_3x3, dtype=np.float64).reshape(3, 3)
    return points @ rotation.T + np.asarray(translation_3, dtype=np.float64).reshape(3)


def transform_position(
    position: Position3D,
    rotation_3x3: np.ndarray,
    translation_3: np.ndarray,
    target_frame: str,
) -> Position3D:
    """Express a position in another frame: p' = R p + t.

    The size becomes the axis-aligned extent of the rotated box's eight corners.
    """
    rotation = np.asarray(rotation_3x3, dtype=np.float64).reshape(3, 3)
    translation = np.asarray(translation_3, dtype=np.float64).reshape(3)
    centroid = np.asarray(position.centroid)
    half = np.asarray(position.size) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners = (centroid + signs * half) @ rotation.T + translation
    return Position3D(
        frame_id=target_frame,
        centroid=_triple(rotation @ centroid + translation),
        size=_triple(corners.max(axis=0) - corners.min(axis=0)),
        num_points=position.num_points,
        box=position.box.transformed(rotation, translation) if position.box is not None else None,
    )


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
