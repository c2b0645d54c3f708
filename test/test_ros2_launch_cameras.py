"""`ros2 launch` with several cameras (issue 16). Needs a full ROS 2 runtime with sam3_ros colcon-built
and sourced, like test_ros2_full_runtime.py (skips otherwise).

- sam3.launch.py cameras:="[...]" with a params file holding per-camera keys and `remappings`: the
  node subscribes the remapped topics and publishes each camera's outputs under /sam3/NAME/; Ctrl-C
  to the process group ends it cleanly.
- rviz:=true with cameras (rviz2 replaced by the stand-in of test_rviz_launch.py): each camera's
  overlay, IDs, markers and points, in the first camera's frame; the RealSense launch file with
  cameras starts a camera per name and hands sam3 the cameras, their depth and remappings.
"""
from __future__ import annotations

import yaml

from test_ros2_full_runtime import PERMISSIVE, TINY_ARGS, Launch, client, wait_active  # noqa: F401
from test_ros2_launch_user import ctrl_c
from test_rviz_launch import launch_rviz, manager, ros  # noqa: F401

from ros_runtime import SyntheticCamera

from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402  (the modules above skip without the runtime)

CAMERAS = ("lc_front", "lc_rear")


def params_file(directory, remappings: list[str], extra: dict | None = None) -> str:
    path = directory / "cameras.yaml"
    parameters = {**PERMISSIVE, "lc_front.depth": True, "remappings": remappings, **(extra or {})}
    path.write_text(yaml.safe_dump({"sam3": {"ros__parameters": parameters}}))
    return f"params_file:={path}"


def test_cameras_through_the_params_files_remappings_then_ctrl_c(client, tmp_path):  # noqa: F811
    remappings = [f"{name}/{role}:=/lc_drivers/{name}/{role}" for name in CAMERAS for role in ("image", "camera_info")]
    remappings.append("lc_front/depth:=/lc_drivers/lc_front/depth")
    cameras = [SyntheticCamera(client, f"/lc_drivers/{name}", fps=5.0, frame_id=f"{name}_optical").start()
               for name in CAMERAS]
    try:
        with Launch.sam3(*TINY_ARGS, f"cameras:=[{', '.join(CAMERAS)}]",
                         params_file(tmp_path, remappings)) as launch:
            wait_active(client, "/sam3", launch)
            for name in CAMERAS:
                message = client.subscribe(InstanceArray, f"/sam3/{name}/instances").wait_for(timeout_s=90.0)
                assert message.header.frame_id == f"{name}_optical"
            assert client.node.count_subscribers("/lc_drivers/lc_front/depth") == 1
            assert client.node.count_subscribers("/lc_drivers/lc_rear/image") == 1
            assert client.get_parameters("/sam3", ["cameras", "lc_front.depth", "lc_rear.depth"]) == \
                {"cameras": list(CAMERAS), "lc_front.depth": True, "lc_rear.depth": False}
            code = ctrl_c(launch)
        output = launch.output()
        assert code == 0 and "process has finished cleanly" in output, output[-3000:]
        assert "Traceback" not in output
    finally:
        for camera in cameras:
            camera.stop()


def test_rviz_with_cameras_shows_each_cameras_outputs_in_the_first_cameras_frame(launch_rviz):  # noqa: F811
    recorded, _ = launch_rviz("sam3.launch.py", "cameras:=[head, wrist]", "fixed_frame:=odom")
    displays = manager(recorded["config"])["Displays"]
    names = [d["Name"] for d in displays]
    for output in ("SAM 3 overlay", "Instance IDs", "Instances 3D", "Instance points"):
        assert [n for n in names if n.endswith(output)] == [f"head: {output}", f"wrist: {output}"]
    assert "Focused track" in names


def test_realsense_launch_with_cameras_starts_each_camera_and_one_node(ros, launch_rviz):  # noqa: F811
    _, ros_client = ros
    recorded, log = launch_rviz("sam3_realsense.launch.py", "cameras:=[head, wrist]")
    config = manager(recorded["config"])
    assert config["Global Options"]["Fixed Frame"] == "head_color_optical_frame"
    assert "wrist: SAM 3 overlay" in [d["Name"] for d in config["Displays"]]
    assert ros_client.get_parameters("/sam3", ["cameras", "head.depth", "wrist.depth"]) == \
        {"cameras": ["head", "wrist"], "head.depth": True, "wrist.depth": True}
    text = log.read_text()
    if "is not installed" in text:  # without realsense2_camera the launch file names each camera's topics
        assert "topics /camera/head/...)" in text and "topics /camera/wrist/...)" in text
