"""sensor_msgs/Image payloads <-> numpy, checked against images packed by hand in these tests."""
import array

import cv2
import numpy as np
import pytest

from sam3_ros.core.image_encoding import (
    UnsupportedImage,
    compressed_to_rgb,
    depth_to_metres,
    image_to_rgb,
    mono16_to_image_fields,
    rgb_to_image_fields,
)

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def pack(pixels: np.ndarray, padding: int = 0, bigendian: bool = False) -> tuple[int, bytes]:
    """(step, data) of (H, W, C) pixels written row by row, each row followed by `padding` junk bytes."""
    order = ">" if bigendian else "<"
    rows = [row.astype(pixels.dtype.newbyteorder(order)).tobytes() + b"\xab" * padding for row in pixels]
    return len(rows[0]), b"".join(rows)


def decode(pixels: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False) -> np.ndarray:
    step, data = pack(pixels, padding, bigendian)
    return image_to_rgb(pixels.shape[0], pixels.shape[1], encoding, step, data, int(bigendian))


def with_alpha(channels: np.ndarray) -> np.ndarray:
    return np.dstack([channels, RNG.integers(0, 256, channels.shape[:2], dtype=np.uint8)])


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("encoding, stored", [
    ("rgb8", RGB),
    ("bgr8", RGB[..., [2, 1, 0]]),
    ("8UC3", RGB[..., [2, 1, 0]]),
    ("rgba8", with_alpha(RGB)),
    ("bgra8", with_alpha(RGB[..., [2, 1, 0]])),
])
def test_colour_encodings_give_the_rgb_they_store(encoding, stored, padding):
    assert np.array_equal(decode(stored, encoding, padding), RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_is_grey(encoding):
    grey = RGB[..., :1]
    assert np.array_equal(decode(grey, encoding, padding=1), np.repeat(grey, 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 5])
def test_mono16_is_scaled_to_eight_bits(bigendian, padding):
    values = np.array([[0, 1, 128, 129, 257, 30000, 65534, 65535]] * 2, dtype=np.uint16)[..., None]  # >= 2x2
    expected = np.rint(values[..., 0] * 255.0 / 65535.0).astype(np.uint8)
    rgb = decode(values, "mono16", padding, bigendian)
    assert np.array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))


def bt601_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Video-range ITU-R BT.601 YUV -> RGB (u and v already one per pixel)."""
    y, u, v = 1.164 * (y.astype(float) - 16), u.astype(float) - 128, v.astype(float) - 128
    return np.stack([y + 1.596 * v, y - 0.813 * v - 0.391 * u, y + 2.018 * u], axis=-1).clip(0, 255)


# Each pixel pair is four bytes: UYVY = U Y0 V Y1, YUY2 = Y0 U Y1 V.
@pytest.mark.parametrize("encoding, order", [("yuv422", ("U", "Y0", "V", "Y1")),
                                             ("yuv422_yuy2", ("Y0", "U", "Y1", "V"))])
def test_yuv422_layouts(encoding, order):
    height, width = 3, 8
    y = RNG.integers(16, 236, (height, width), dtype=np.uint8)
    u = RNG.integers(16, 241, (height, width // 2), dtype=np.uint8)
    v = RNG.integers(16, 241, (height, width // 2), dtype=np.uint8)
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u, "V": v}
    packed = np.stack([planes[name] for name in order], axis=-1).reshape(height, width, 2)
    expected = bt601_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(decode(packed, encoding, padding=2).astype(float) - expected).max() <= 1.5
    other = "yuv422_yuy2" if encoding == "yuv422" else "yuv422"
    assert np.abs(decode(packed, other).astype(float) - expected).max() > 10


def test_encoding_names_are_matched_case_insensitively():
    assert np.array_equal(decode(RGB, "RGB8"), RGB)


@pytest.mark.parametrize("data", [
    bytes(pack(RGB)[1]), bytearray(pack(RGB)[1]), array.array("B", pack(RGB)[1]), list(pack(RGB)[1]),
    np.frombuffer(pack(RGB)[1], dtype=np.uint8), memoryview(pack(RGB)[1]),
])
def test_any_byte_container_is_accepted(data):
    assert np.array_equal(image_to_rgb(5, 7, "rgb8", 21, data), RGB)


def test_result_owns_its_memory():
    data = np.frombuffer(pack(RGB)[1], dtype=np.uint8).copy()
    rgb = image_to_rgb(5, 7, "rgb8", 21, data)
    data[:] = 0
    assert np.array_equal(rgb, RGB)


@pytest.mark.parametrize("height, width, encoding, step, data, reason", [
    (0, 7, "rgb8", 21, b"", "empty"),
    (5, 0, "rgb8", 0, b"", "empty"),
    (-1, 7, "rgb8", 21, b"", "empty"),
    (5, 7, "rgb8", 20, bytes(100), "step 20 is smaller"),
    (5, 7, "rgb8", 21, bytes(104), "104 bytes"),
    (5, 7, "mono16", 14, bytes(69), "69 bytes"),
    (5, 7, "rgb8", 24, bytes(5 * 21), "bytes of data"),  # padded step, unpadded data
    (5, 7, "yuv422", 14, bytes(70), "odd width"),
    (5, 7, "rgb16", 42, bytes(210), "rgb8, bgr8"),
    (5, 7, "32FC1", 28, bytes(140), "unsupported colour image encoding"),
    (5, 7, "rgb8", 21, None, "not a byte buffer"),
    (5, 7, "rgb8", 21, "abc", "not a byte buffer"),
    (1, 1, "mono8", 1, [300], "not a byte buffer"),
])
def test_bad_images_raise_a_clear_error(height, width, encoding, step, data, reason):
    with pytest.raises(UnsupportedImage, match=reason):
        image_to_rgb(height, width, encoding, step, data)


def test_unknown_encoding_error_names_every_supported_one():
    with pytest.raises(UnsupportedImage) as err:
        image_to_rgb(1, 1, "bayer_rggb8", 1, b"\x00")
    supported = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "yuv422", "yuv422_yuy2")
    for name in supported:
        assert name in str(err.value)


def test_png_is_decoded_losslessly():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    assert np.array_equal(compressed_to_rgb("png", png.tobytes()), RGB)


def test_jpeg_keeps_the_colours():
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (200, 40, 90)
    ok, jpeg = cv2.imencode(".jpg", flat[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    decoded = compressed_to_rgb("rgb8; jpeg compressed bgr8", jpeg)
    assert np.abs(decoded.astype(int) - flat).max() <= 4


@pytest.mark.parametrize("fmt, data, reason", [
    ("jpeg", b"", "no data"),
    ("jpeg", b"definitely not a jpeg", "could not decode"),
    ("16UC1; compressedDepth png", b"\x89PNG", "compressed depth"),
])
def test_undecodable_compressed_images(fmt, data, reason):
    with pytest.raises(UnsupportedImage, match=reason):
        compressed_to_rgb(fmt, data)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_16_bit_depth_is_millimetres(encoding, bigendian):
    mm = np.array([[0, 1, 1500], [2000, 65535, 0]], dtype=np.uint16)[..., None]
    step, data = pack(mm, padding=3, bigendian=bigendian)
    depth = depth_to_metres(2, 3, encoding, step, data, int(bigendian))
    assert depth.dtype == np.float32
    expected = np.array([[np.nan, 0.001, 1.5], [2.0, 65.535, np.nan]], dtype=np.float32)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_float_depth_is_metres_and_invalid_values_are_nan(bigendian):
    metres = np.array([[1.25, 0.0, -2.0], [np.nan, np.inf, 3.5]], dtype=np.float32)[..., None]
    step, data = pack(metres, padding=4, bigendian=bigendian)
    depth = depth_to_metres(2, 3, "32FC1", step, data, int(bigendian))
    expected = np.array([[1.25, np.nan, np.nan], [np.nan, np.nan, 3.5]], dtype=np.float32)
    np.testing.assert_array_equal(depth, expected)


def test_colour_image_is_not_depth():
    with pytest.raises(UnsupportedImage, match="16UC1, mono16, 32FC1"):
        depth_to_metres(1, 1, "rgb8", 3, b"\x00\x00\x00")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_published_colour_images_decode_to_the_same_rgb(encoding):
    fields = rgb_to_image_fields(RGB, encoding)
    assert fields["encoding"] == encoding and fields["is_bigendian"] == 0
    assert fields["data"].dtype == np.uint8 and fields["data"].size == fields["step"] * fields["height"]
    decoded = image_to_rgb(fields["height"], fields["width"], encoding, fields["step"], fields["data"])
    assert np.array_equal(decoded, RGB)


def test_published_mono8_is_luma():
    fields = rgb_to_image_fields(RGB, "mono8")
    luma = RGB.astype(float) @ np.array([0.299, 0.587, 0.114])
    grey = fields["data"].reshape(5, 7)
    assert fields["step"] == 7 and np.abs(grey - luma).max() <= 1


def test_published_mono16_is_little_endian_uint16():
    ids = RNG.integers(0, 65536, (4, 6), dtype=np.uint16)
    fields = mono16_to_image_fields(ids)
    assert (fields["encoding"], fields["step"], fields["is_bigendian"]) == ("mono16", 12, 0)
    assert np.array_equal(np.frombuffer(fields["data"].tobytes(), dtype="<u2").reshape(4, 6), ids)


@pytest.mark.parametrize("call", [
    lambda: rgb_to_image_fields(RGB, "yuv422"),
    lambda: rgb_to_image_fields(RGB[..., 0]),
    lambda: rgb_to_image_fields(RGB.astype(np.float32)),
    lambda: mono16_to_image_fields(np.zeros((2, 2), np.int32)),
])
def test_unpublishable_arrays_raise(call):
    with pytest.raises(UnsupportedImage):
        call()
