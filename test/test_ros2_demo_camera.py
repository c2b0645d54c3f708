"""`demo_camera`, the camera of the README's "Try it" block (no driver needed): it publishes the
demo clip with camera info, and a node started as the README says tracks on it."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ros_runtime import SKIP_REASON, NodeProcess, RosClient, node_environment

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from rclpy.qos import qos_profile_sensor_data  # noqa: E402  (after the skip: needs the runtime)
from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402


def test_demo_camera_feeds_the_node_and_stops_on_ctrl_c(tmp_path):
    client = RosClient("sam3_demo_camera_client")
    log = (tmp_path / "camera.log").open("w")
    camera = subprocess.Popen([str(Path(sys.executable).with_name("demo_camera")), "--ros-args",
                               "-r", "image:=/try_cam/image", "-r", "camera_info:=/try_cam/camera_info"],
                              stdout=log, stderr=subprocess.STDOUT, env=node_environment(), start_new_session=True)
    node = NodeProcess("sam3_try", {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1,
                                    "image_topic": "/try_cam/image", "camera_info_topic": "/try_cam/camera_info",
                                    "prompts": ["red ball"]})
    try:
        images = client.subscribe(Image, "/try_cam/image", qos_profile_sensor_data)
        infos = client.subscribe(CameraInfo, "/try_cam/camera_info", qos_profile_sensor_data)
        image = images.wait_for(timeout_s=60.0)
        assert (image.width, image.height, image.encoding) == (320, 240, "rgb8")
        info = infos.wait_for(lambda m: m.header.stamp == image.header.stamp, timeout_s=10.0)
        assert (info.width, info.height) == (320, 240) and info.k[0] > 0
        outputs = client.subscribe(InstanceArray, "/sam3_try/instances")
        assert client.transition("/sam3_try", "configure") and client.transition("/sam3_try", "activate")
        assert outputs.wait_for(timeout_s=60.0).header.frame_id == image.header.frame_id
        camera.send_signal(signal.SIGINT)
        assert camera.wait(30) == 0
    finally:
        if camera.poll() is None:
            camera.kill()
        node.stop()
        client.close()
    assert "Traceback" not in (tmp_path / "camera.log").read_text()
    assert node.output().count("RANDOM WEIGHTS") == 1, node.output()  # one configure, one line
