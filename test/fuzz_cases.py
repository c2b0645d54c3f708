"""Seeded generators of hostile camera messages and service requests, for any ROS runtime.

A case is plain data (field values, no message objects), so the same cases drive the node over
DDS (rclpy messages) and NodeCore in-process (rosbags messages): ``build_camera`` and
``build_request`` turn a case into messages with a ``MessageTypes`` (sam3_ros.io.ros_types,
sam3_ros.ros.rclpy_types). ``cases(seed, n)`` is deterministic, so a failing case is found again
by its seed and index; once shrunk by hand it goes into ``REGRESSIONS``.
"""
from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KNOWN_COLOUR = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "yuv422", "yuv422_yuy2"]
KNOWN_DEPTH = ["16UC1", "32FC1", "mono16"]
OTHER_ENCODINGS = ["", " ", "RGB8", "rgb16", "bayer_rggb8", "32FC3", "64FC1", "8SC1", "16UC3", "jpeg", "nv12",
                   "rgb8\x00", "ü", "x" * 300]
ENCODINGS = KNOWN_COLOUR + KNOWN_DEPTH + OTHER_ENCODINGS
BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "8UC1": 1, "8UC3": 3,
                   "yuv422": 2, "yuv422_yuy2": 2, "16UC1": 2, "32FC1": 4}
SIZES = [(0, 0), (0, 64), (48, 0), (1, 1), (3, 5), (47, 63), (48, 64), (49, 65), (2, 7680), (4320, 1),
         (4320, 7680), (2160, 3840), (65535, 65535)]
DATA_CAP = 2_000_000          # bytes actually sent; huge declared sizes get truncated data
INT32_MAX, UINT32_MAX = 2**31 - 1, 2**32 - 1

CAMERA_CATEGORIES = ("image", "compressed", "camera_info", "depth", "stamp")
SERVICE_CATEGORIES = ("set_concepts", "add_concept", "remove_concept", "refine_track", "reset_tracks",
                      "list_concepts")
SERVICE_TYPES = {"set_concepts": "SetConcepts", "add_concept": "AddConcept", "remove_concept": "RemoveConcept",
                 "refine_track": "RefineTrack", "reset_tracks": "ResetTracks", "list_concepts": "ListConcepts"}


@dataclass
class Case:
    """One generated input. ``kind`` is "camera" or a service name; ``fields`` its plain data."""

    category: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        def short(value):
            if isinstance(value, (bytes, bytearray)):
                return f"<{len(value)} bytes>"
            if isinstance(value, dict):
                return {k: short(v) for k, v in value.items()}
            if isinstance(value, list) and len(value) > 4:
                return f"[{len(value)} items: {short(value[0])}, ...]"
            if isinstance(value, str) and len(value) > 40:
                return value[:20] + f"...({len(value)} chars)"
            return value
        return f"{self.category}: {short(self.fields)}"


# -- camera messages ---------------------------------------------------------------------------------


def valid_rgb(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A dark frame with a bright square that moves with ``index`` (the tiny model finds tracks)."""
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    x = (index * 3) % max(1, width - height // 2)
    image[height // 4: height // 4 + height // 2, x: x + height // 2] = (220, 40, 40)
    return image


def image_fields(height: int, width: int, encoding: str, step: int, data: bytes, bigendian: int = 0) -> dict:
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": bigendian, "step": step,
            "data": data}


def valid_image_fields(index: int, height: int = 48, width: int = 64) -> dict:
    return image_fields(height, width, "rgb8", width * 3, valid_rgb(index, height, width).tobytes())


def valid_info_fields(height: int = 48, width: int = 64, k: list[float] | None = None) -> dict:
    return {"height": height, "width": width,
            "k": k if k is not None else [50.0, 0.0, width / 2, 0.0, 50.0, height / 2, 0.0, 0.0, 1.0]}


def valid_depth_fields(height: int = 48, width: int = 64, metres: float = 2.0) -> dict:
    depth = np.full((height, width), metres, dtype="<f4")
    return image_fields(height, width, "32FC1", width * 4, depth.tobytes())


def camera_case(category: str, stamp: tuple[int, int], image: dict | None = None, compressed: dict | None = None,
                info: dict | None = None, depth: dict | None = None) -> Case:
    """A camera input: exactly one of ``image`` (raw) and ``compressed``; info and depth default to valid."""
    return Case(category, "camera", {"stamp": stamp, "image": image, "compressed": compressed,
                                     "info": info if info is not None else valid_info_fields(),
                                     "depth": depth if depth is not None else valid_depth_fields()})


def _png(height: int, width: int, rng: random.Random) -> bytes:
    import cv2

    pixels = np.frombuffer(rng.randbytes(height * width * 3), np.uint8).reshape(height, width, 3)
    return cv2.imencode(".png", pixels)[1].tobytes()


def _png_header_only(height: int, width: int) -> bytes:
    """A PNG whose header claims a size with no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _image_data(rng: random.Random, needed: int) -> bytes:
    choice = rng.choice(["exact", "exact", "truncated", "oversized", "empty", "one"])
    size = {"exact": needed, "truncated": rng.randrange(0, max(1, needed)), "oversized": needed + rng.randrange(1, 5000),
            "empty": 0, "one": 1}[choice]
    return rng.randbytes(min(size, DATA_CAP))


def gen_image(rng: random.Random, stamp: tuple[int, int]) -> Case:
    encoding = rng.choice(ENCODINGS)
    height, width = rng.choice(SIZES) if rng.random() < 0.6 else (rng.randrange(0, 200), rng.randrange(0, 200))
    bpp = BYTES_PER_PIXEL.get(encoding, rng.choice([1, 2, 3, 4]))
    row = width * bpp
    step = rng.choice([row, row, row + rng.randrange(1, 64), max(0, row - rng.randrange(1, 8)), 0,
                       rng.randrange(0, UINT32_MAX)])
    step = min(step, UINT32_MAX)
    return camera_case("image", stamp, image=image_fields(height, width, encoding, step,
                                                          _image_data(rng, step * height),
                                                          rng.choice([0, 0, 1, 255])))


def gen_compressed(rng: random.Random, stamp: tuple[int, int]) -> Case:
    fmt = rng.choice(["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth", "garbage", "ü"])
    valid = _png(rng.randrange(1, 60), rng.randrange(1, 60), rng)
    data = rng.choice([
        b"", rng.randbytes(rng.randrange(1, 4000)), valid[: rng.randrange(1, len(valid))], valid,
        b"\xff\xd8\xff" + rng.randbytes(200), _png_header_only(rng.choice([1, 4320, 65535]), rng.choice([1, 7680, 65535])),
    ])
    return camera_case("compressed", stamp, compressed={"format": fmt, "data": data})


def gen_camera_info(rng: random.Random, stamp: tuple[int, int]) -> Case:
    nan, inf = float("nan"), float("inf")
    k = rng.choice([[0.0] * 9, [nan] * 9, [inf, 0, 32, 0, inf, 24, 0, 0, 1], [-50.0, 0, 32, 0, -50.0, 24, 0, 0, 1],
                    [50.0, 0, nan, 0, 50.0, nan, 0, 0, 1], [1e-30, 0, 0, 0, 1e-30, 0, 0, 0, 1], None])
    height, width = rng.choice([(48, 64), (0, 0), (480, 640), (1, 1), (4320, 7680)])
    return camera_case("camera_info", stamp, image=valid_image_fields(rng.randrange(100)),
                       info=valid_info_fields(height, width, k))


def gen_depth(rng: random.Random, stamp: tuple[int, int]) -> Case:
    encoding = rng.choice(KNOWN_DEPTH + ["rgb8", "", "32FC3", "8UC1"])
    height, width = rng.choice([(48, 64), (24, 32), (96, 128), (1, 1), (0, 0), (47, 65), (4320, 7680)])
    bpp = BYTES_PER_PIXEL.get(encoding, 4)
    fill = rng.choice(["nan", "zero", "inf", "negative", "valid", "random"])
    values = {"nan": np.nan, "zero": 0.0, "inf": np.inf, "negative": -1.0, "valid": 1.5, "random": None}[fill]
    count = min(height * width, DATA_CAP // 4)
    if values is None:
        data = rng.randbytes(count * bpp)
    elif bpp == 2:
        data = np.full(count, 0 if not np.isfinite(values) else max(0, values * 1000), dtype="<u2").tobytes()
    else:
        data = np.full(count, values, dtype="<f4").tobytes()[: count * bpp]
    if rng.random() < 0.3:
        data = data[: rng.randrange(0, len(data) + 1)]
    depth = image_fields(height, width, encoding, width * bpp, data, rng.choice([0, 0, 1]))
    return camera_case("depth", stamp, image=valid_image_fields(rng.randrange(100)), depth=depth)


def gen_stamp(rng: random.Random, stamp: tuple[int, int]) -> Case:
    odd = rng.choice([(0, 0), (0, 1), (1, 0), (INT32_MAX, 999_999_999), (INT32_MAX, UINT32_MAX), (-INT32_MAX - 1, 0),
                      (-1, 999_999_999), (stamp[0] - 3600, stamp[1]), (stamp[0] + 10**6, 0), (stamp[0], UINT32_MAX),
                      (stamp[0] - 1, stamp[1])])
    return camera_case("stamp", odd, image=valid_image_fields(rng.randrange(100)))


# -- service requests --------------------------------------------------------------------------------

TEXTS = ["", " ", "cup", "red cup", "x" * 201, "x" * 5000, "\u202e\ufeff\ufffd\U0010ffff", "🤖 robot", "\x00",
         "a\nb\tc", "ÿ" * 50, "select * from concepts;", "../../etc/passwd", "cup" * 66]
IDS = ["", "cup", "red_cup", "x" * 300, "ü", "\x00", "a b", "cup"]
NUMBERS = [0.0, 1.0, 24.0, 32.0, -1.0, 1e9, -1e9, float("nan"), float("inf"), float("-inf"), 1e-12, 64.0, 5000.0]


def box_fields(rng: random.Random) -> dict:
    return {"x": rng.choice(NUMBERS), "y": rng.choice(NUMBERS), "size_x": rng.choice(NUMBERS + [10.0, 20.0]),
            "size_y": rng.choice(NUMBERS + [10.0, 20.0]), "theta": rng.choice([0.0, 0.0, 1.0, float("nan")])}


def concept_fields(rng: random.Random) -> dict:
    boxes = [box_fields(rng) for _ in range(rng.choice([0, 0, 1, 2, 17]))]
    flags = rng.choice([[], [True] * len(boxes), [False] * len(boxes), [True] * (len(boxes) + 1)])
    return {"id": rng.choice(IDS), "text": rng.choice(TEXTS), "boxes": boxes, "positive": flags,
            "threshold": rng.choice([0.0, 0.0, 0.3, 1.0, -0.5, 2.0, float("nan"), float("inf"), 1e-9])}


def gen_service(rng: random.Random, category: str) -> Case:
    if category == "set_concepts":
        count = rng.choice([0, 1, 2, 3, 5, 2000])
        concepts = ([{"id": f"c{i}", "text": f"thing {i}", "boxes": [], "positive": [], "threshold": 0.0}
                     for i in range(count)] if count > 100 else [concept_fields(rng) for _ in range(count)])
        if count and rng.random() < 0.3:
            concepts.append(dict(concepts[0]))  # a duplicate id
        return Case(category, category, {"concepts": concepts})
    if category == "add_concept":
        return Case(category, category, {"concept": concept_fields(rng), "replace": rng.random() < 0.5})
    if category == "remove_concept":
        return Case(category, category, {"id": rng.choice(IDS + ["no_such_concept"])})
    if category == "refine_track":
        points = [(rng.choice(NUMBERS), rng.choice(NUMBERS)) for _ in range(rng.choice([0, 1, 3, 1000]))]
        return Case(category, category, {
            "track_id": rng.choice([0, 1, 2, 3, 10**6, 2**32 - 1]), "points": points,
            "positive": rng.choice([[], [True] * len(points), [False] * (len(points) + 1)]),
            "use_box": rng.random() < 0.6, "box": box_fields(rng)})
    return Case(category, category, {})


# -- the case stream -----------------------------------------------------------------------------------

CAMERA_GENERATORS = {"image": gen_image, "compressed": gen_compressed, "camera_info": gen_camera_info,
                     "depth": gen_depth, "stamp": gen_stamp}


def cases(seed: int, count: int, start_sec: int = 1_700_000_000, categories: tuple[str, ...] | None = None) -> list[Case]:
    """``count`` cases cycling through every category (or ``categories``), reproducible from ``seed``."""
    rng = random.Random(seed)
    order = categories or CAMERA_CATEGORIES + SERVICE_CATEGORIES
    out = []
    for i in range(count):
        category = order[i % len(order)]
        stamp = (start_sec + i, rng.randrange(10**9))
        out.append(CAMERA_GENERATORS[category](rng, stamp) if category in CAMERA_GENERATORS
                   else gen_service(rng, category))
    return out


# -- cases to messages ------------------------------------------------------------------------------------


def _header(types, stamp: tuple[int, int], frame_id: str = "fuzz_camera"):
    time_msg = types.new("builtin_interfaces/msg/Time", sec=int(stamp[0]), nanosec=int(stamp[1]))
    return types.new("std_msgs/msg/Header", stamp=time_msg, frame_id=frame_id)


def _bytes(types, data: bytes):
    return types.sequence(np.frombuffer(data, dtype=np.uint8))


def image_message(types, stamp: tuple[int, int], f: dict):
    return types.new("sensor_msgs/msg/Image", header=_header(types, stamp), height=f["height"], width=f["width"],
                     encoding=f["encoding"], is_bigendian=f["is_bigendian"], step=f["step"], data=_bytes(types, f["data"]))


def build_camera(types, case: Case) -> tuple[Any, Any, Any]:
    """(image or compressed image, camera info, depth) messages of a camera case, all stamped alike."""
    f, stamp = case.fields, case.fields["stamp"]
    if f["compressed"] is not None:
        image = types.new("sensor_msgs/msg/CompressedImage", header=_header(types, stamp),
                          format=f["compressed"]["format"], data=_bytes(types, f["compressed"]["data"]))
    else:
        image = image_message(types, stamp, f["image"])
    info_f = f["info"]
    zeros = lambda n: types.sequence(np.zeros(n))  # noqa: E731
    roi = types.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = types.new("sensor_msgs/msg/CameraInfo", header=_header(types, stamp), height=info_f["height"],
                     width=info_f["width"], distortion_model="plumb_bob", d=zeros(5),
                     k=types.sequence(np.array(info_f["k"], dtype=np.float64)), r=zeros(9), p=zeros(12),
                     binning_x=0, binning_y=0, roi=roi)
    depth = image_message(types, stamp, f["depth"])
    return image, info, depth


def _bbox(types, b: dict):
    pose = types.new("vision_msgs/msg/Pose2D", position=types.new("vision_msgs/msg/Point2D", x=b["x"], y=b["y"]),
                     theta=b["theta"])
    return types.new("vision_msgs/msg/BoundingBox2D", center=pose, size_x=b["size_x"], size_y=b["size_y"])


def _concept(types, c: dict):
    return types.new("sam3_ros_interfaces/msg/Concept", id=c["id"], text=c["text"],
                     exemplar_boxes=[_bbox(types, b) for b in c["boxes"]],
                     exemplar_positive=types.sequence(np.array(c["positive"], dtype=bool)),
                     score_threshold=c["threshold"], camera="")


def build_request(types, case: Case):
    """The service request of a service case."""
    f, name = case.fields, f"sam3_ros_interfaces/srv/{SERVICE_TYPES[case.kind]}_Request"
    if case.kind == "set_concepts":
        return types.new(name, concepts=[_concept(types, c) for c in f["concepts"]])
    if case.kind == "add_concept":
        return types.new(name, concept=_concept(types, f["concept"]), replace=f["replace"])
    if case.kind == "remove_concept":
        return types.new(name, id=f["id"])
    if case.kind == "refine_track":
        points = [types.new("vision_msgs/msg/Point2D", x=x, y=y) for x, y in f["points"]]
        return types.new(name, track_id=f["track_id"], points=points,
                         point_positive=types.sequence(np.array(f["positive"], dtype=bool)),
                         use_box=f["use_box"], box=_bbox(types, f["box"]))
    return types.new(name)


# -- shrunk failing cases, kept as regression tests ------------------------------------------------------

def _regressions() -> dict[str, Case]:
    nan_k = [float("nan")] * 9
    return {
        # seed 1, case 13: depth with an all-NaN K raised LinAlgError out of process_next.
        "nan_camera_info_k": camera_case("camera_info", (1_700_000_013, 0), image=valid_image_fields(0),
                                         info=valid_info_fields(k=nan_k)),
        # seed 1, case 103: nanosec 2^32-1 at the largest sec: the output header's sec overflowed int32.
        "stamp_beyond_int32": camera_case("stamp", (INT32_MAX, UINT32_MAX), image=valid_image_fields(1)),
        # set_concepts with 2,000 concepts was accepted; every frame then ran all of them (GBs, seconds).
        "thousands_of_concepts": Case("set_concepts", "set_concepts", {"concepts": [
            {"id": f"c{i}", "text": f"thing {i}", "boxes": [], "positive": [], "threshold": 0.0} for i in range(2000)]}),
    }


REGRESSIONS: dict[str, Case] = _regressions()
