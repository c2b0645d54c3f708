"""Stopping the node as people and tools do (issue 15, item 2): a terminal's Ctrl-C goes to the
whole process group, and `ros2 launch` (in that group) forwards another SIGINT to the node
moments later; an impatient user presses Ctrl-C again; systemd and Docker send SIGTERM.

The node must take every one of those signals until it has exited, and exit 0 without a
traceback: launch then reports "process has finished cleanly", not "process has died".
Runs the sam3_node executable in the PyPI runtime (or a sourced ROS 2), like test_ros2_node.py.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from ros_runtime import SKIP_REASON, NodeProcess, RosClient, SyntheticCamera

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402  (after the skip: needs the runtime)

TINY = {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1,
        "detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02}
CRASH_SIGNS = ("Traceback", "RCLError", "Failed to publish")


@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_signal_client")
    yield client
    client.close()


def signal_group_until_exit(node: NodeProcess, signum: int, every_s: float, timeout_s: float = 60.0) -> int:
    """``signum`` to the node's whole process group, again every ``every_s`` until it exits."""
    deadline = time.monotonic() + timeout_s
    while node.alive and time.monotonic() < deadline:
        try:
            os.killpg(node.process.pid, signum)
        except ProcessLookupError:
            break
        time.sleep(every_s)
    return node.stop(signal.SIGKILL, timeout_s=5.0)


@pytest.mark.parametrize("signum, every_s", [
    (signal.SIGINT, 0.02),   # Ctrl-C held down: a signal in every phase of the shutdown
    (signal.SIGINT, 0.15),   # Ctrl-C, then launch's forwarded SIGINT
    (signal.SIGTERM, 0.1),   # systemd/Docker, then a second TERM
])
def test_repeated_signals_to_the_process_group_while_publishing_exit_zero(client, signum, every_s):
    name = "sam3_group_stop"
    node = NodeProcess(name, {**TINY, "image_topic": "/group_cam/image", "camera_info_topic": "/group_cam/camera_info"})
    outputs = client.subscribe(InstanceArray, f"/{name}/instances")
    camera = SyntheticCamera(client, "/group_cam", fps=30.0).start()
    try:
        assert client.transition(f"/{name}", "configure") and client.transition(f"/{name}", "activate")
        outputs.wait_for(timeout_s=60.0)
        code = signal_group_until_exit(node, signum, every_s)
    finally:
        camera.stop()
        node.stop(signal.SIGKILL, timeout_s=5.0)
    log = node.output()
    assert code == 0, log[-3000:]
    assert "shutting down" in log
    assert not any(sign in log for sign in CRASH_SIGNS), log[-3000:]


def test_repeated_sigint_before_configure_exits_zero(client):
    node = NodeProcess("sam3_group_idle", TINY)
    assert client.state("/sam3_group_idle") == "unconfigured"
    assert signal_group_until_exit(node, signal.SIGINT, 0.02) == 0, node.output()[-3000:]
    assert "Traceback" not in node.output()
