"""The real node keeps up with a 1280x720 camera at 30 Hz: the newest frame wins, latency does not grow.

The sam3_node executable (tiny model, CPU) in the PyPI ROS 2 runtime, fed over DDS by a camera that
publishes image and camera info (reliable, as 720p samples lost a fragment too often under best effort
on this machine's loopback) at 30 Hz for 300 frames, each stamped when it is sent. A node
that queued frames would answer later and later; ours drops the frames it has no time for, so the
age of its answers stays flat. Prints the fps and the receive-to-result latency its diagnostics report.
"""
from __future__ import annotations

import statistics
import threading
import time

import pytest

from ros_runtime import SKIP_REASON, NodeProcess, RosClient, SyntheticCamera, stamp_ns, wait_until

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402  (after the skip: needs the runtime)
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402

from test_ros2_node import TINY, bring_up, camera_params, diagnostic_values  # noqa: E402

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
FRAMES, FPS = 300, 30.0
WIDTH, HEIGHT = 1280, 720


@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_realtime_client")
    yield client
    client.close()


def test_a_720p_camera_at_30_hz_is_processed_without_latency_growth(client):
    params = {**TINY, **camera_params("/hd_cam", depth=False), "prompts": ["red cup"], "reliability": "reliable"}
    with NodeProcess("sam3_hd", params) as node:
        bring_up(client, "/sam3_hd")
        ages_ms: list[float] = []
        lock = threading.Lock()

        def on_instances(message) -> None:
            with lock:
                ages_ms.append((time.time_ns() - stamp_ns(message)) / 1e6)
        client.node.create_subscription(InstanceArray, "/sam3_hd/instances", on_instances, 10)
        diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        camera = SyntheticCamera(client, "/hd_cam", width=WIDTH, height=HEIGHT, fps=FPS, qos=RELIABLE)
        camera.wait_for_subscribers(depth=False)

        start = time.monotonic()
        for index in range(FRAMES):  # on a fixed schedule, each frame stamped as it is sent
            time.sleep(max(0.0, start + index / FPS - time.monotonic()))
            camera.publish_frame(index, stamp_ns=time.time_ns())
        sent_s = time.monotonic() - start
        diagnostics.clear()  # the status after the run: fps and latency over its last frames
        values = diagnostic_values(diagnostics, "sam3_hd")
        assert wait_until(lambda: len(ages_ms) >= 20, 30.0), f"only {len(ages_ms)} results; {values}"
        assert node.alive, node.output()[-3000:]

    with lock:
        ages = list(ages_ms)
    window = max(10, len(ages) // 4)
    first, last = statistics.median(ages[:window]), statistics.median(ages[-window:])
    report = (f"{FRAMES} frames of {WIDTH}x{HEIGHT} sent in {sent_s:.1f} s; {len(ages)} results; node fps "
              f"{values['fps']}, receive-to-result latency {values['latency_ms (receive to result)']} ms; "
              f"age of results: first {window} median {first:.0f} ms, last {window} median {last:.0f} ms")
    print(report)
    assert int(values["frames dropped (newer frame arrived)"]) > 0 or len(ages) >= FRAMES * 0.9, report
    assert last <= 1.5 * first + 100, "results grow older over time: frames are queued, not dropped. " + report
