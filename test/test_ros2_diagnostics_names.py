"""Diagnostics name inputs as the node resolved them (issue 15): a node in a namespace with the
default relative `image` topic, and no camera, says "no image on /robot7/image", not "on image"."""
from __future__ import annotations

import pytest

from ros_runtime import SKIP_REASON, NodeProcess, RosClient

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402  (after the skip: needs the runtime)


def test_no_image_names_the_resolved_topic():
    client = RosClient("sam3_diag_client")
    node = NodeProcess("sam3_diag", {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1,
                                     "camera_timeout_s": 0.5, "diagnostics_period_s": 0.5, "prompts": ["cup"]},
                       ros_args=["-r", "__ns:=/robot7"])
    try:
        diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        assert client.transition("/robot7/sam3_diag", "configure") and client.transition("/robot7/sam3_diag", "activate")

        def ours(message):
            return any(s.hardware_id == "/robot7/sam3_diag" and "no image" in s.message for s in message.status)
        message = diagnostics.wait_for(ours, timeout_s=60.0)
    finally:
        node.stop()
        client.close()
    status = next(s for s in message.status if s.hardware_id == "/robot7/sam3_diag")
    assert status.message.startswith("no image on /robot7/image for over 0.5 s"), status.message
