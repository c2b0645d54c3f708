"""Per-instance point clouds as one numpy structured array (x, y, z, track_id). ROS-free.

``sam3_ros.io.messages.point_cloud2`` turns the array into a sensor_msgs/PointCloud2.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("track_id", "<u4")])


def downsample(points: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` of (N, 3) points, evenly spaced in their order (deterministic)."""
    if max_points <= 0 or len(points) <= max_points:
        return points
    return points[np.linspace(0, len(points) - 1, max_points).round().astype(np.int64)]


def instance_cloud(points_by_track: Mapping[int, np.ndarray], max_points_per_instance: int) -> np.ndarray:
    """One structured array (CLOUD_DTYPE) of every track's points, each downsampled to at most
    ``max_points_per_instance`` (0: all), tracks in ascending id order."""
    parts = []
    for track_id, points in sorted(points_by_track.items()):
        kept = downsample(np.asarray(points, dtype=np.float64).reshape(-1, 3), max_points_per_instance)
        part = np.empty(len(kept), dtype=CLOUD_DTYPE)
        part["x"], part["y"], part["z"] = kept[:, 0], kept[:, 1], kept[:, 2]
        part["track_id"] = track_id
        parts.append(part)
    return np.concatenate(parts) if parts else np.empty(0, dtype=CLOUD_DTYPE)
