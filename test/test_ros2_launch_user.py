"""`ros2 launch` as a user drives it from a terminal (issue 15, items 2, 6 and 13). Needs a full ROS 2
runtime with sam3_ros colcon-built and sourced, like test_ros2_full_runtime.py (skips otherwise).

- Ctrl-C in a terminal sends SIGINT to the whole foreground process group: launch and the node get
  it at once, and launch forwards its own SIGINT moments later. The node must exit 0 through both,
  so launch reports "process has finished cleanly".
- The README's reconfigure recipe (deactivate, cleanup, configure, activate) works under autostart.
- `sam3_realsense.launch.py --show-args` lists every sam3.launch.py argument it passes through.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from test_ros2_full_runtime import (CLI_TIMEOUT_S, TINY_ARGS, Launch, client, permissive_params_file,  # noqa: F401
                                    ros2, wait_active)

from ros_runtime import node_environment  # noqa: E402


def ctrl_c(launch: Launch, timeout_s: float = 60.0) -> int:
    """SIGINT to launch's whole process group, as a terminal's Ctrl-C sends it."""
    os.killpg(launch.process.pid, signal.SIGINT)
    try:
        return launch.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(launch.process.pid, signal.SIGKILL)
        return -9


@pytest.mark.parametrize("run", [1, 2])
def test_ctrl_c_to_the_process_group_finishes_the_node_cleanly(client, tmp_path, run):  # noqa: F811
    with Launch.sam3(*TINY_ARGS, "prompts:=red ball", permissive_params_file(tmp_path)) as launch:
        wait_active(client, "/sam3", launch)
        code = ctrl_c(launch)
    output = launch.output()
    assert code == 0, output[-3000:]
    assert "process has died" not in output, output[-3000:]
    assert "process has finished cleanly" in output, output[-3000:]
    assert "Traceback" not in output


def test_the_readme_reconfigure_recipe_works_under_autostart(client, tmp_path):  # noqa: F811
    with Launch.sam3(*TINY_ARGS, permissive_params_file(tmp_path)) as launch:
        wait_active(client, "/sam3", launch)
        ros2("ros2 param set /sam3 tracking.max_tracks 7")
        for step in ("deactivate", "cleanup", "configure", "activate"):
            assert "Transitioning successful" in ros2(f"ros2 lifecycle set /sam3 {step}").stdout, step
        assert "active" in ros2("ros2 lifecycle get /sam3").stdout
        assert client.get_parameters("/sam3", ["tracking.max_tracks"]) == {"tracking.max_tracks": 7}
        assert launch.stop() == 0, launch.output()[-3000:]


def test_realsense_launch_shows_every_argument_it_passes_through():
    def arguments(launch_file: str) -> set[str]:
        result = subprocess.run(["ros2", "launch", "sam3_ros", launch_file, "--show-args"], capture_output=True,
                                text=True, timeout=CLI_TIMEOUT_S, env=node_environment())
        assert result.returncode == 0, result.stderr
        return {line.strip().strip("':") for line in result.stdout.splitlines() if line.startswith("    '")}

    sam3, realsense = arguments("sam3.launch.py"), arguments("sam3_realsense.launch.py")
    assert {"prompts", "checkpoint", "rviz", "params_file"} <= sam3
    assert sam3 - {"image", "camera_info", "depth"} <= realsense  # the camera sets those three
    assert {"camera_namespace", "camera_name"} <= realsense
