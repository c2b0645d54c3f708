"""sensor_msgs/Image and CompressedImage payloads to and from numpy arrays (no ROS needed).

Every function takes the message's fields rather than the message, so it works the same for
rclpy messages, rosbags messages and plain bytes. Bad input always raises ``UnsupportedImage``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np


class UnsupportedImage(ValueError):
    """An image that cannot be converted; the message says why."""


@dataclass(frozen=True)
class _Layout:
    """How one pixel is stored: ``channels`` values of numpy type ``kind`` ("u1", "u2", "f4")."""

    channels: int
    kind: str

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * np.dtype(self.kind).itemsize


_Convert = Callable[[np.ndarray], np.ndarray]


def _mono16_to_rgb(pixels: np.ndarray) -> np.ndarray:
    # Fixed full-range scaling (65535 -> 255, exactly v / 257), so brightness never flickers.
    mono8 = ((pixels[..., 0].astype(np.uint32) + 128) // 257).astype(np.uint8)
    return np.repeat(mono8[..., None], 3, axis=2)


def _yuv422_to_rgb(code: int) -> _Convert:
    return lambda pixels: cv2.cvtColor(pixels, code)


# Colour encodings: layout and conversion of the (H, W, channels) pixels to RGB.
_COLOUR: dict[str, tuple[_Layout, _Convert]] = {
    "rgb8": (_Layout(3, "u1"), lambda p: p),
    "bgr8": (_Layout(3, "u1"), lambda p: p[..., ::-1]),
    "rgba8": (_Layout(4, "u1"), lambda p: p[..., :3]),
    "bgra8": (_Layout(4, "u1"), lambda p: p[..., 2::-1]),
    "mono8": (_Layout(1, "u1"), lambda p: np.repeat(p, 3, axis=2)),
    "mono16": (_Layout(1, "u2"), _mono16_to_rgb),
    "8UC1": (_Layout(1, "u1"), lambda p: np.repeat(p, 3, axis=2)),
    "8UC3": (_Layout(3, "u1"), lambda p: p[..., ::-1]),
    "yuv422": (_Layout(2, "u1"), _yuv422_to_rgb(cv2.COLOR_YUV2RGB_UYVY)),
    "yuv422_yuy2": (_Layout(2, "u1"), _yuv422_to_rgb(cv2.COLOR_YUV2RGB_YUY2)),
}

# Depth encodings: layout and the factor that turns stored values into metres.
_DEPTH: dict[str, tuple[_Layout, float]] = {
    "16UC1": (_Layout(1, "u2"), 0.001),
    "mono16": (_Layout(1, "u2"), 0.001),
    "32FC1": (_Layout(1, "f4"), 1.0),
}

# Encodings we publish: how to turn RGB into the (H, W, channels) pixels of that encoding.
_FROM_RGB: dict[str, _Convert] = {
    "rgb8": lambda rgb: rgb,
    "bgr8": lambda rgb: rgb[..., ::-1],
    "rgba8": lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
    "bgra8": lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)]),
    "mono8": lambda rgb: cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[..., None],
}


def image_to_rgb(height: int, width: int, encoding: str, step: int, data: Any,
                 is_bigendian: int = 0) -> np.ndarray:
    """Decode sensor_msgs/Image fields to an (H, W, 3) uint8 RGB array (a new array).

    Supports rgb8, bgr8, rgba8, bgra8, mono8, mono16 (scaled to 8 bits as value / 257),
    8UC1 (as mono8), 8UC3 (as bgr8), yuv422 (UYVY) and yuv422_yuy2 (YUYV).
    """
    key, (layout, convert) = _lookup(_COLOUR, encoding, "colour")
    if layout.channels == 2 and width % 2:
        raise UnsupportedImage(f"{key} image has odd width {width}; YUV 4:2:2 needs pixel pairs")
    pixels = _pixels(height, width, key, layout, step, data, is_bigendian)
    return _big_enough(np.ascontiguousarray(convert(pixels), dtype=np.uint8))


def compressed_to_rgb(format: str, data: Any) -> np.ndarray:  # noqa: A002 (the message's field name)
    """Decode a sensor_msgs/CompressedImage (jpeg, png, ...) to an (H, W, 3) uint8 RGB array."""
    if "compresseddepth" in format.lower():
        raise UnsupportedImage(f"format {format!r} is compressed depth, not a colour image")
    buffer = _as_bytes(data)
    if buffer.size == 0:
        raise UnsupportedImage(f"compressed image ({format!r}) has no data")
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnsupportedImage(f"could not decode {buffer.size} bytes of {format!r} image data")
    return _big_enough(np.ascontiguousarray(bgr[..., ::-1]))


MIN_IMAGE_SIDE = 2  # pixels; SAM 3's resize needs at least this much of an image


def _big_enough(rgb: np.ndarray) -> np.ndarray:
    """``rgb``, or UnsupportedImage when a side is under MIN_IMAGE_SIDE (a bad image, not a failed frame)."""
    if rgb.shape[0] < MIN_IMAGE_SIDE or rgb.shape[1] < MIN_IMAGE_SIDE:
        raise UnsupportedImage(f"image of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small "
                               f"(at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})")
    return rgb


def depth_to_metres(height: int, width: int, encoding: str, step: int, data: Any,
                    is_bigendian: int = 0) -> np.ndarray:
    """Decode a depth sensor_msgs/Image to (H, W) float32 metres; invalid depth becomes NaN.

    16UC1 and mono16 hold millimetres, 32FC1 metres. Zero, negative, NaN and infinite depth
    are invalid.
    """
    key, (layout, to_metres) = _lookup(_DEPTH, encoding, "depth")
    pixels = _pixels(height, width, key, layout, step, data, is_bigendian)[..., 0]
    depth = pixels.astype(np.float32) * np.float32(to_metres)
    with np.errstate(invalid="ignore"):
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """sensor_msgs/Image fields for an (H, W, 3) uint8 RGB array in rgb8, bgr8, rgba8, bgra8 or mono8."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise UnsupportedImage(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    convert = _FROM_RGB.get(encoding)
    if convert is None:
        raise UnsupportedImage(f"cannot publish encoding {encoding!r}; supported: {', '.join(_FROM_RGB)}")
    return _image_fields(convert(rgb), encoding)


def mono16_to_image_fields(array: np.ndarray) -> dict[str, Any]:
    """sensor_msgs/Image fields (mono16, little-endian) for an (H, W) uint16 array."""
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype != np.uint16:
        raise UnsupportedImage(f"expected an (H, W) uint16 array, got {array.shape} {array.dtype}")
    return _image_fields(array.astype("<u2")[..., None], "mono16")


def _image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of a tightly packed little-endian image from (H, W, channels) pixels."""
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
            "step": width * pixels.shape[2] * pixels.dtype.itemsize, "data": data.copy()}


def _lookup(table: dict[str, Any], encoding: str, kind: str) -> tuple[str, Any]:
    """The table entry for an encoding, matched case-insensitively, with its canonical name."""
    canonical = {name.lower(): name for name in table}
    key = canonical.get(str(encoding).strip().lower())
    if key is None:
        raise UnsupportedImage(
            f"unsupported {kind} image encoding {encoding!r}; supported: {', '.join(table)}"
        )
    return key, table[key]


def _pixels(height: int, width: int, encoding: str, layout: _Layout, step: int, data: Any,
            is_bigendian: int) -> np.ndarray:
    """Validated (H, W, channels) pixels in native byte order, without row padding."""
    what = f"{encoding} image {width}x{height}"
    if height <= 0 or width <= 0:
        raise UnsupportedImage(f"{what} is empty")
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise UnsupportedImage(f"{what}: step {step} is smaller than a row ({row_bytes} bytes)")
    buffer = _as_bytes(data)
    if buffer.size < step * height:
        raise UnsupportedImage(f"{what}: {buffer.size} bytes of data, expected step*height = {step * height}")
    rows = np.ascontiguousarray(buffer[: step * height].reshape(height, step)[:, :row_bytes])
    dtype = np.dtype(layout.kind).newbyteorder(">" if is_bigendian else "<")
    pixels = rows.view(dtype).reshape(height, width, layout.channels)
    return pixels.astype(pixels.dtype.newbyteorder("="))


def _as_bytes(data: Any) -> np.ndarray:
    """A flat uint8 view of bytes, bytearray, array.array, memoryview, numpy array or list."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        kind = type(data).__name__
        raise UnsupportedImage(f"image data of type {kind} is not a byte buffer: {err}") from None
