"""Drives a running sam3_node over DDS with fuzz cases and a long soak; shared by
test_ros2_reliability.py (short) and benchmarks/reliability_soak.py (long).

Every check goes through real DDS to the node process: publishers and service clients of a
RosClient (ros_runtime.py), the node's outputs and /diagnostics, its RSS from /proc.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from ros_runtime import NodeProcess, RosClient

import fuzz_cases as fz

TINY = {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1, "diagnostics_period_s": 0.5,
        "detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "reliability": "reliable",
        "queue_depth": 10, "tracking.max_tracks": 4}  # tracks still come and go; 50 would make soaks slow
ACCOUNTED = ("frames processed", "frames dropped (newer frame arrived)", "frames stale", "bad images", "failed frames")


def rss_kib(process: NodeProcess) -> int:
    for line in open(f"/proc/{process.process.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def stamp_of(message) -> tuple[int, int]:
    return int(message.header.stamp.sec), int(message.header.stamp.nanosec)


class FuzzTarget:
    """A node under test with reliable publishers on its camera topics and its outputs subscribed."""

    def __init__(self, client: RosClient, name: str, compressed: bool = False, **params):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sam3_ros_interfaces.msg import InstanceArray
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from sam3_ros.ros.rclpy_types import RclpyTypes

        self.client, self.name, self.compressed, self.types = client, f"/{name}", compressed, RclpyTypes()
        ns = f"/{name}_cam"
        topics = {"image_topic": f"{ns}/image/compressed" if compressed else f"{ns}/image",
                  "camera_info_topic": "" if compressed else f"{ns}/camera_info"}  # compressed: image only
        if not compressed:
            topics["depth_topic"] = f"{ns}/depth"
        self.process = NodeProcess(name, {**TINY, "prompts": ["red cup", "square"], **topics, **params})
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        node = client.node
        self.image_pub = node.create_publisher(CompressedImage if compressed else Image, topics["image_topic"], qos)
        self.info_pub = None if compressed else node.create_publisher(CameraInfo, topics["camera_info_topic"], qos)
        self.depth_pub = None if compressed else node.create_publisher(Image, topics["depth_topic"], qos)
        self.outputs = client.subscribe(InstanceArray, f"{self.name}/instances")
        self.diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        self.sent = Counter()          # cases sent per category
        self.camera_sent = 0
        self.client_refused = Counter()  # cases the client's runtime would not serialise

    def bring_up(self) -> None:
        for step in ("configure", "activate"):
            assert self.client.transition(self.name, step), f"{step} failed:\n{self.process.output()[-3000:]}"
        wanted = [self.image_pub] + ([self.info_pub, self.depth_pub] if not self.compressed else [])
        deadline = time.monotonic() + 30
        while any(p.get_subscription_count() == 0 for p in wanted) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> int:
        return self.process.stop()

    # -- sending -----------------------------------------------------------------------------------
    def publish_camera(self, case: fz.Case) -> None:
        image, info, depth = fz.build_camera(self.types, case)
        self.image_pub.publish(image)
        if not self.compressed:
            self.info_pub.publish(info)
            self.depth_pub.publish(depth)
        self.camera_sent += 1

    def send(self, case: fz.Case, wait_s: float = 60.0):
        """Publish a camera case, or call a service and return its response."""
        self.sent[case.category] += 1
        try:
            if case.kind == "camera":
                return self.publish_camera(case)
            from sam3_ros_interfaces import srv

            request = fz.build_request(self.types, case)
            return self.client.call(getattr(srv, fz.SERVICE_TYPES[case.kind]), f"{self.name}/{case.kind}",
                                    request, timeout_s=wait_s)
        except (ValueError, TypeError, AssertionError, UnicodeError) as err:  # rclpy refused to build/serialise it
            self.client_refused[f"{case.category}: {type(err).__name__}"] += 1
            return None

    def valid_frame(self, index: int, stamp: tuple[int, int], timeout_s: float = 60.0):
        """Publish a valid frame and return the node's InstanceArray for it (matched by stamp)."""
        case = fz.camera_case("valid", stamp, image=None if self.compressed else fz.valid_image_fields(index),
                              compressed=_png_case(index) if self.compressed else None)
        self.publish_camera(case)
        return self.outputs.wait_for(lambda m: stamp_of(m) == stamp, timeout_s)

    # -- checking ------------------------------------------------------------------------------------
    def counters(self, at_least_received: int = 0, timeout_s: float = 30.0) -> dict:
        """The node's next diagnostics with every received frame accounted for."""
        node = self.name.lstrip("/")

        def settled(message):
            for status in message.status:
                if status.hardware_id.endswith(node):
                    values = {kv.key: kv.value for kv in status.values}
                    return int(values["frames received"]) >= at_least_received and lost_in_node(values) == 0
            return False
        self.diagnostics.clear()
        message = self.diagnostics.wait_for(settled, timeout_s)
        status = next(s for s in message.status if s.hardware_id.endswith(node))
        return {kv.key: kv.value for kv in status.values}

    def check_alive_and_working(self, index: int) -> dict:
        """After a batch: alive, active, a valid frame answered with its stamp, every frame counted."""
        assert self.process.alive, self.process.output()[-3000:]
        assert self.client.state(self.name) == "active"
        stamp = (2_000_000_000 + index, 0)  # later than every fuzzed stamp but the extremes
        output = self.valid_frame(index, stamp)
        assert output.header.frame_id == "fuzz_camera"
        return self.counters()


def lost_in_node(values: dict) -> int:
    """Frames the node received but neither processed nor counted as dropped."""
    return int(values["frames received"]) - sum(int(values[key]) for key in ACCOUNTED)


def _png_case(index: int) -> dict:
    import cv2

    ok, png = cv2.imencode(".png", fz.valid_rgb(index)[:, :, ::-1])
    return {"format": "png", "data": png.tobytes()}


# -- soak ---------------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    frames: int = 0
    lost: int = 0                                   # frames with no output within the timeout
    rss_kib: list[tuple[int, int]] = field(default_factory=list)   # (frame, VmRSS)
    track_ids: int = 0                              # distinct IDs seen
    id_order_violations: int = 0                    # a new ID not above every earlier one
    stamp_mismatches: int = 0
    resets: int = 0
    seconds: float = 0.0

    def rss_growth(self, from_frame: int) -> float:
        base = next(kib for frame, kib in self.rss_kib if frame >= from_frame)
        return self.rss_kib[-1][1] / base - 1.0


def soak_frame(index: int, size: tuple[int, int]):
    """Frame ``index`` of a scene where squares come and go, so tracks are born and end throughout."""
    import numpy as np

    height, width = size
    image = np.full((height, width, 3), 30, dtype=np.uint8)
    side = height // 3
    if (index // 40) % 2 == 0:          # a red square for 40 frames, then gone for 40
        x = (index * 2) % (width - side)
        image[4:4 + side, x:x + side] = (220, 40, 40)
    if (index // 25) % 3 != 2:          # a green one on another rhythm
        image[height - side - 4:height - 4, width - side - 4:width - 4] = (40, 200, 40)
    return image


def soak(target: FuzzTarget, frames: int, size: tuple[int, int] = (48, 64), reset_every: int = 250,
         sample_every: int = 100, timeout_s: float = 30.0, progress=None) -> SoakResult:
    """``frames`` valid frames in lockstep (publish, wait for the output with that stamp), on the
    soak's own concepts (fuzzing before may have left any)."""
    from sam3_ros_interfaces import srv
    from sam3_ros_interfaces.msg import Concept

    concepts = [Concept(id="red_cup", text="red cup"), Concept(id="square", text="square")]
    target.client.call(srv.SetConcepts, f"{target.name}/set_concepts", srv.SetConcepts.Request(concepts=concepts))
    result, seen_max, seen = SoakResult(), 0, set()
    start, t0 = 1_000_000_000, time.monotonic()
    for index in range(frames):
        if index and index % reset_every == 0:
            target.client.call(srv.ResetTracks, f"{target.name}/reset_tracks")
            result.resets += 1
        stamp = (start + index // 10, (index % 10) * 100_000_000)  # 10 Hz
        rgb = soak_frame(index, size)
        image = fz.image_fields(size[0], size[1], "rgb8", size[1] * 3, rgb.tobytes())
        case = fz.camera_case("soak", stamp, image=image, info=fz.valid_info_fields(*size),
                              depth=fz.valid_depth_fields(*size))
        target.outputs.clear()
        target.publish_camera(case)
        try:
            message = target.outputs.wait_for(lambda m: stamp_of(m) == stamp, timeout_s)
        except TimeoutError:
            result.lost += 1
            continue
        result.stamp_mismatches += stamp_of(message) != stamp
        for inst in message.instances:
            tid = int(inst.track_id)
            if tid not in seen:
                result.id_order_violations += tid <= seen_max
                seen.add(tid)
                seen_max = max(seen_max, tid)
        result.frames += 1
        if index % sample_every == 0 or index == frames - 1:
            result.rss_kib.append((index + 1, rss_kib(target.process)))
            if progress:
                progress(index + 1, result)
    result.track_ids, result.seconds = len(seen), time.monotonic() - t0
    return result
