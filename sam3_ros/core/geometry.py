"""Oriented 3D boxes of point sets (PCA) and rotation <-> quaternion conversion. ROS-free.

The box axes are the principal axes of the points (eigenvectors of their covariance, largest
variance first, made right-handed; of an evenly spread sample of MAX_STATISTICS_POINTS above
that many); the extents are the points' min..max along each axis, so
every point lies inside. For a cuboid's surface or volume this is the tight box; in general it
is the PCA approximation of the minimum-volume box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this many points a PCA box is not trusted: the axis-aligned box is used instead.
MIN_OBB_POINTS = 30
# The depth outlier band (median, MAD) and the PCA axes of an instance come from at most this many
# of its points, evenly spread over the mask; centroids, percentiles and box extents use all of
# them. Below the cap everything is exact; above it, results stay within 1 mm on planes and cuboids
# (test/test_host_path.py).
MAX_STATISTICS_POINTS = 50_000


@dataclass(frozen=True)
class OrientedBox:
    """A box in 3D: centre (metres), size along its own axes, orientation (x, y, z, w)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]

    def rotation(self) -> np.ndarray:
        return quaternion_to_matrix(*self.quaternion)

    def transformed(self, rotation_3x3: np.ndarray, translation_3: np.ndarray) -> "OrientedBox":
        """The same box in another frame: p' = R p + t."""
        rotation = np.asarray(rotation_3x3, dtype=np.float64).reshape(3, 3)
        center = rotation @ np.asarray(self.center) + np.asarray(translation_3, dtype=np.float64).reshape(3)
        return OrientedBox(_triple(center), self.size, matrix_to_quaternion(rotation @ self.rotation()))


def pca_box(points: np.ndarray, min_points: int = MIN_OBB_POINTS) -> OrientedBox | None:
    """The PCA-oriented box of (N, 3) points, or None when there are fewer than ``min_points``."""
    return pca_box_of_columns(as_columns(points), min_points)


def as_columns(points: np.ndarray) -> np.ndarray:
    """(N, 3) points as a contiguous (3, N) float64 array: x, y and z each reduce along memory."""
    return np.ascontiguousarray(np.asarray(points, dtype=np.float64).reshape(-1, 3).T)


def pca_box_of_columns(columns: np.ndarray, min_points: int = MIN_OBB_POINTS) -> OrientedBox | None:
    """``pca_box`` of (3, N) points (``as_columns``)."""
    if columns.shape[1] < max(min_points, 3):
        return None
    mean = columns.mean(axis=1)
    fit = columns[:, _evenly_spread(columns.shape[1], MAX_STATISTICS_POINTS)] - mean[:, None]
    _, vectors = np.linalg.eigh(fit @ fit.T)           # ascending eigenvalues
    axes = vectors[:, ::-1].copy()                     # columns: largest variance first
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]                       # right-handed
    local = axes.T @ columns                           # every point in box axes (about the origin)
    shift = axes.T @ mean
    low, high = local.min(axis=1) - shift, local.max(axis=1) - shift
    center = mean + axes @ ((low + high) / 2)
    return OrientedBox(_triple(center), _triple(high - low), matrix_to_quaternion(axes))


def _evenly_spread(count: int, most: int) -> slice | np.ndarray:
    """Indices of at most ``most`` of ``count`` items, evenly spaced (all of them: a plain slice)."""
    if count <= most:
        return slice(None)
    return np.linspace(0, count - 1, most).round().astype(np.int64)


def matrix_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a 3x3 rotation matrix, w >= 0 (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = np.empty(4)
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (as in geometry_msgs/Quaternion)."""
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
