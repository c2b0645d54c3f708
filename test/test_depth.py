"""3D positions from masks and depth, checked on scenes rendered by ray casting known geometry."""
import math

import cv2
import numpy as np
import pytest

from sam3_ros.core.depth import instance_position, transform_position
from sam3_ros.core.results import Position3D

WIDTH, HEIGHT = 640, 480
FX = FY = 500.0
CX, CY = 320.0, 240.0
INTRINSICS = dict(fx=FX, fy=FY, cx=CX, cy=CY)


def rays(width=WIDTH, height=HEIGHT, fx=FX, fy=FY, cx=CX, cy=CY):
    """Per-pixel ray directions (x/z, y/z) of a pinhole camera whose pixel centres are integers."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    return (u - cx) / fx, (v - cy) / fy


def box_on_wall(half_x=0.2, half_y=0.1, box_z=2.0, wall_z=4.0, scale=1):
    """Depth of a fronto-parallel box face in front of a wall, and the face's pixels."""
    dx, dy = rays(WIDTH // scale, HEIGHT // scale, FX / scale, FY / scale, CX / scale, CY / scale)
    on_box = (np.abs(dx * box_z) <= half_x) & (np.abs(dy * box_z) <= half_y)
    return np.where(on_box, box_z, wall_z).astype(np.float32), on_box


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def test_box_face_centroid_and_extent_ignore_background_bleed():
    depth, on_box = box_on_wall()
    mask = dilate(on_box, 3)  # a segmentation that spills 3 px onto the wall
    pos = instance_position(mask, depth, frame_id="camera", **INTRINSICS)
    pixel = 2.0 / FX  # metres per pixel on the box face
    np.testing.assert_allclose(pos.centroid, (0.0, 0.0, 2.0), atol=pixel)
    assert pos.num_points == np.count_nonzero(on_box)
    assert pos.frame_id == "camera"
    # Robust extent: most of the true 0.4 x 0.2 face, never more, and flat in depth.
    assert 0.9 * 0.4 <= pos.size[0] <= 0.4 + pixel
    assert 0.9 * 0.2 <= pos.size[1] <= 0.2 + pixel
    assert pos.size[2] < 1e-6


def test_off_centre_object():
    depth, on_box = box_on_wall()
    shifted = np.roll(on_box, (60, -100), axis=(0, 1))
    depth = np.where(shifted, 2.0, 4.0).astype(np.float32)
    pos = instance_position(shifted, depth, frame_id="camera", **INTRINSICS)
    np.testing.assert_allclose(pos.centroid, (-100 * 2.0 / FX, 60 * 2.0 / FY, 2.0), atol=2.0 / FX)


def test_slanted_surface_keeps_all_its_points():
    # Plane z = 2 + 0.5 x seen over a 200 x 100 px window: depth varies by about 0.4 m.
    dx, dy = rays()
    depth = (2.0 / (1.0 - 0.5 * dx)).astype(np.float32)
    window = (np.abs(np.arange(WIDTH) - CX) <= 100)[None, :] & (np.abs(np.arange(HEIGHT) - CY) <= 50)[:, None]
    pos = instance_position(window, depth, frame_id="camera", **INTRINSICS)
    assert pos.num_points == np.count_nonzero(window)
    z_seen = depth[window]
    assert 0.9 * np.ptp(z_seen) <= pos.size[2] <= np.ptp(z_seen)
    assert pos.centroid[2] == pytest.approx(z_seen.mean(), abs=1e-4)
    # The centroid lies on the plane (up to the plane's curvature across the window).
    assert pos.centroid[2] == pytest.approx(2.0 + 0.5 * pos.centroid[0], abs=0.01)


def test_invalid_depth_is_ignored():
    depth, on_box = box_on_wall()
    holes = depth.copy()
    holes[::2, :] = np.nan   # every other row has no reading
    holes[:, ::7] = 0.0
    pos = instance_position(on_box, holes, frame_id="camera", **INTRINSICS)
    valid = on_box & np.isfinite(holes) & (holes > 0)
    assert pos.num_points == np.count_nonzero(valid)
    np.testing.assert_allclose(pos.centroid, (0.0, 0.0, 2.0), atol=2 * 2.0 / FX)


def test_too_few_points_gives_none():
    depth, _ = box_on_wall()
    mask = np.zeros_like(depth, dtype=bool)
    mask[240, 320:339] = True  # 19 pixels
    assert instance_position(mask, depth, frame_id="c", **INTRINSICS) is None
    mask[240, 339] = True
    assert instance_position(mask, depth, frame_id="c", **INTRINSICS).num_points == 20
    assert instance_position(mask, np.full_like(depth, np.nan), frame_id="c", **INTRINSICS) is None


def test_mask_at_another_resolution_than_depth():
    full_depth, on_box = box_on_wall()
    half_depth, _ = box_on_wall(scale=2)
    half = dict(fx=FX / 2, fy=FY / 2, cx=CX / 2, cy=CY / 2)
    pos = instance_position(on_box, half_depth, frame_id="camera", **half)
    reference = instance_position(on_box, full_depth, frame_id="camera", **INTRINSICS)
    np.testing.assert_allclose(pos.centroid, reference.centroid, atol=2 * 2.0 / FX)
    np.testing.assert_allclose(pos.size, reference.size, atol=3 * 2.0 / FX)


def test_rejects_non_2d_input():
    with pytest.raises(ValueError, match="expected"):
        instance_position(np.ones((4, 4, 1), bool), np.ones((4, 4), np.float32), frame_id="c", **INTRINSICS)


def rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_transform_rotates_and_translates_the_centroid():
    pos = Position3D("camera", (1.0, 2.0, 3.0), (0.2, 0.4, 0.6), 50)
    moved = transform_position(pos, rotation_z(math.pi / 2), (10.0, 0.0, -1.0), "base_link")
    # A quarter turn about z sends (x, y) to (-y, x).
    np.testing.assert_allclose(moved.centroid, (10.0 - 2.0, 1.0, 2.0), atol=1e-12)
    np.testing.assert_allclose(moved.size, (0.4, 0.2, 0.6), atol=1e-12)
    assert (moved.frame_id, moved.num_points) == ("base_link", 50)


def test_transform_of_a_cube_by_45_degrees_widens_its_box():
    pos = Position3D("camera", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 9)
    moved = transform_position(pos, rotation_z(math.pi / 4), np.zeros(3), "odom")
    np.testing.assert_allclose(moved.size, (math.sqrt(2), math.sqrt(2), 1.0), atol=1e-12)
