"""The node as a user starts it: `ros2 launch`, the `ros2` CLI, TF. Needs a full ROS 2 runtime.

A full runtime has the ros2 CLI, launch, launch_ros and tf2_ros, with sam3_ros built by colcon
(`colcon build --paths . interfaces`) and sourced. The PyPI-only runtime that CI builds lacks
them, so there these tests skip, saying what is missing.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros_runtime import REPO, SKIP_REASON, RosClient, SyntheticCamera, node_environment, stamp_ns


def _missing() -> str | None:
    if SKIP_REASON is not None:
        return SKIP_REASON
    missing = [m for m in ("launch", "launch_ros", "tf2_ros") if importlib.util.find_spec(m) is None]
    missing += [] if shutil.which("ros2") else ["the ros2 CLI"]
    if missing:
        return f"needs a full ROS 2 runtime; missing: {', '.join(missing)} (source /opt/ros/<distro>/setup.bash)"
    found = subprocess.run(["ros2", "pkg", "prefix", "sam3_ros"], capture_output=True, text=True)
    if found.returncode != 0:
        return "sam3_ros is not in the sourced workspace: colcon build --paths . interfaces, then source install/"
    return None


MISSING = _missing()
if MISSING is not None:
    pytest.skip(MISSING, allow_module_level=True)

from geometry_msgs.msg import TransformStamped  # noqa: E402  (after the skip: needs the runtime)
from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

TINY_ARGS = ["tiny:=true", "device:=cpu"]
PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "warmup_frames": 1}
CLI_TIMEOUT_S = 60.0


class Launch:
    """A launch command in its own process group, stopped like Ctrl-C."""

    def __init__(self, command: list[str]):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="sam3-launch-", suffix=".log", delete=False)
        self.command = command
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=node_environment(), start_new_session=True)

    @classmethod
    def sam3(cls, *args: str) -> "Launch":
        return cls(["ros2", "launch", "sam3_ros", "sam3.launch.py", *args])

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                subprocess.run(["pkill", "-KILL", "-g", str(self.process.pid)])
                return -9
        return self.process.returncode

    def __enter__(self) -> "Launch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def permissive_params_file(directory: Path, extra: dict | None = None) -> str:
    path = directory / "sam3_params.yaml"
    path.write_text(yaml.safe_dump({"sam3": {"ros__parameters": {**PERMISSIVE, **(extra or {})}}}))
    return f"params_file:={path}"


def ros2(line: str, discovery_s: float = 15.0) -> subprocess.CompletedProcess:
    """One shell line, as a user types it; repeated while the CLI has not discovered the node yet."""
    deadline = time.monotonic() + discovery_s
    while True:
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                                env=node_environment())
        if result.returncode == 0 or "not found" not in result.stderr.lower() or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    return result


def wait_active(client: RosClient, node: str, launch: Launch, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launch.process.poll() is None, launch.output()[-3000:]
        try:
            if client.state(node, timeout_s=5.0) == "active":
                return
        except TimeoutError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{node} not active in {timeout_s:g} s:\n{launch.output()[-3000:]}")


@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_full_runtime_client")
    yield client
    client.close()
    subprocess.run(["ros2", "daemon", "stop"], capture_output=True, env=node_environment())


@pytest.mark.parametrize("inputs, with_depth", [
    (["camera_info:=none"], False),                                    # image only
    (["camera_info:=camera_info"], False),                             # image + camera info (default)
    (["camera_info:=camera_info", "depth:=depth"], True),              # + depth, paired by stamp
])
def test_launch_inputs_autostart_and_exit_cleanly(client, tmp_path, inputs, with_depth):
    camera = SyntheticCamera(client, "", fps=5.0)
    instances = client.subscribe(InstanceArray, "/sam3/instances")
    positions = client.subscribe(Detection3DArray, "/sam3/detections_3d")
    with Launch.sam3(*TINY_ARGS, *inputs, "prompts:=red ball", permissive_params_file(tmp_path)) as launch:
        wait_active(client, "/sam3", launch)
        camera.start()
        try:
            instances.wait_for(timeout_s=60.0)
            if with_depth:
                located = positions.wait_for(lambda m: len(m.detections) > 0, 60.0)
                assert np.allclose([d.bbox.center.position.z for d in located.detections], camera.depth_m, atol=1e-3)
            else:
                time.sleep(1.0)
                assert positions.count() == 0
        finally:
            camera.stop()
        assert launch.stop() == 0, launch.output()[-3000:]
    assert "process has finished cleanly" in launch.output()
    assert "Traceback" not in launch.output()


def test_namespace_and_params_file(client, tmp_path):
    params = permissive_params_file(tmp_path, {"tracking.max_tracks": 3})
    with Launch.sam3(*TINY_ARGS, "namespace:=robot1", params) as launch:
        wait_active(client, "/robot1/sam3", launch)
        assert client.get_parameters("/robot1/sam3", ["tracking.max_tracks", "image_topic"]) == \
            {"tracking.max_tracks": 3, "image_topic": "image"}
        camera = SyntheticCamera(client, "/robot1").start()  # relative inputs resolve in the namespace
        try:
            client.subscribe(InstanceArray, "/robot1/sam3/instances").wait_for(timeout_s=60.0)
        finally:
            camera.stop()
        assert launch.stop() == 0


def test_autostart_false_then_ros2_lifecycle_set(client, tmp_path):
    with Launch.sam3(*TINY_ARGS, "autostart:=false", permissive_params_file(tmp_path)) as launch:
        assert client.state("/sam3", timeout_s=120.0) == "unconfigured"  # waits for the node to come up
        assert "unconfigured" in ros2("ros2 lifecycle get /sam3").stdout
        assert "Transitioning successful" in ros2("ros2 lifecycle set /sam3 configure").stdout
        assert "Transitioning successful" in ros2("ros2 lifecycle set /sam3 activate").stdout
        assert "active" in ros2("ros2 lifecycle get /sam3").stdout
        assert "Transitioning successful" in ros2("ros2 lifecycle set /sam3 deactivate").stdout
        refused = subprocess.run(["ros2", "lifecycle", "set", "/sam3", "deactivate"], capture_output=True,
                                 text=True, timeout=CLI_TIMEOUT_S, env=node_environment())
        assert "Transitioning successful" not in refused.stdout
        assert launch.process.poll() is None
        assert launch.stop() == 0


def test_target_frame_through_a_static_transform(client, tmp_path):
    """Positions in `world`: the camera sits 1 m along world x, looking along world z (identity)."""
    from tf2_ros import StaticTransformBroadcaster

    broadcaster = StaticTransformBroadcaster(client.node)
    transform = TransformStamped()
    transform.header.frame_id, transform.child_frame_id = "world", "sam3_test_camera"
    transform.transform.translation.x, transform.transform.rotation.w = 1.0, 1.0
    broadcaster.sendTransform(transform)
    camera = SyntheticCamera(client, "")
    positions = client.subscribe(Detection3DArray, "/sam3/detections_3d")
    instances = client.subscribe(InstanceArray, "/sam3/instances")
    with Launch.sam3(*TINY_ARGS, "depth:=depth", "target_frame:=world", "prompts:=red ball",
                     permissive_params_file(tmp_path)) as launch:
        wait_active(client, "/sam3", launch)
        camera.start()
        try:
            located = positions.wait_for(lambda m: len(m.detections) > 0, 60.0)
            message = instances.wait_for(lambda m: stamp_ns(m) == stamp_ns(located), 30.0)
        finally:
            camera.stop()
        assert located.header.frame_id == "world"
        by_track = {i.track_id: i for i in message.instances if i.has_position}
        for detection in located.detections:
            instance = by_track[int(detection.id)]
            assert instance.position_frame_id == "world"
            centroid = detection.results[0].pose.pose.position
            assert (centroid.x, centroid.y, centroid.z) == pytest.approx(
                (instance.centroid.x, instance.centroid.y, instance.centroid.z))
            x, y, z = camera.mask_centroid(instance)
            assert (centroid.x, centroid.y, centroid.z) == pytest.approx((x + 1.0, y, z), abs=1e-3)
        assert launch.stop() == 0


# -- the README's command lines, verbatim --------------------------------------------------------------

BACKGROUND = "# in its own terminal"


def readme_cli_block() -> list[tuple[str, bool]]:
    """The commands of the README's "Try it" block, each with whether it runs in its own terminal
    (keeps running): a backslash or an open quote continues a line."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- cli-test: start -->\s*```bash\n(.*?)```\s*<!-- cli-test: end -->", text, re.S)
    assert block, "README.md has no <!-- cli-test --> block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        current = f"{current}\n{line}" if current else line
        if current.endswith("\\") or current.count('"') % 2:
            continue
        command = current.split("  #")[0].strip()
        if command and not command.startswith("#"):
            commands.append((command, current.rstrip().endswith(BACKGROUND)))
        current = ""
    return commands


def test_readme_command_lines_work_as_written(client):
    """Without a camera of the test's own: the block's demo_camera line is the camera."""
    lines = readme_cli_block()
    background = [line for line, keeps_running in lines if keeps_running]
    calls = [line for line, keeps_running in lines if not keeps_running]
    assert any(line.startswith("ros2 launch sam3_ros sam3.launch.py") for line in background)
    started = [Launch(["bash", "-c", f"exec {line}"]) for line in background]
    try:
        launch = next(p for p, line in zip(started, background) if line.startswith("ros2 launch"))
        wait_active(client, "/sam3", launch)
        for line in calls:
            result = ros2(line)
            if "service call" in line:
                assert "success=True" in result.stdout, f"{line}\n{result.stdout}"
            if "lifecycle set" in line:
                assert "Transitioning successful" in result.stdout, line
    finally:
        codes = [ctrl_c(process) for process in reversed(started)]
    assert codes == [0] * len(started), "\n".join(p.output()[-2000:] for p in started)


def ctrl_c(launch: Launch, timeout_s: float = 30.0) -> int:
    """SIGINT to the whole process group, as a terminal's Ctrl-C (`ros2 run` only waits for its child
    to get it from the terminal too)."""
    import os

    if launch.process.poll() is None:
        os.killpg(launch.process.pid, signal.SIGINT)
        try:
            launch.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(launch.process.pid, signal.SIGKILL)
            return -9
    return launch.process.returncode
