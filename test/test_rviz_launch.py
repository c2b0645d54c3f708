"""RViz's fixed frame: config/sam3.rviz, sam3_ros.ros.rviz_start and the launch files' fixed_frame.

Three layers: the config rewrite without ROS 2; rviz_start against a synthetic camera with the PyPI
runtime (rclpy); `ros2 launch ... rviz:=true` with a full ROS 2 runtime. rviz2 itself is replaced by
a stand-in on PATH that records its command line and config (test_rviz_screenshot.py runs the real
one where it is installed).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sam3_ros.ros import rviz_start

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "sam3.rviz"
CAMERA_FRAME = "sam3_test_optical"

FAKE_RVIZ = """#!{python}
import json, os, pathlib, signal, sys, time
out = pathlib.Path(os.environ["FAKE_RVIZ_OUT"])
args = sys.argv[1:]
config = pathlib.Path(args[args.index("-d") + 1]).read_text()
out.write_text(json.dumps({{"args": args, "config": config}}))
def stop(signum, frame):
    out.with_suffix(".stopped").write_text(str(signum))
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.1)
"""


def fake_rviz(directory: Path) -> tuple[Path, Path]:
    """An executable named rviz2 in ``directory`` and the file it will write its call to."""
    program = directory / "rviz2"
    program.write_text(FAKE_RVIZ.format(python=sys.executable))
    program.chmod(0o755)
    return program, directory / "rviz_call.json"


def wait_for_file(path: Path, process: subprocess.Popen, log: Path, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return json.loads(path.read_text())
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    raise TimeoutError(f"rviz2 was not started in {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def manager(config_text: str) -> dict:
    return yaml.safe_load(config_text)["Visualization Manager"]


# -- the config and its rewrite, no ROS 2 ------------------------------------------------------------------


def test_the_config_names_no_real_frame_and_says_who_sets_it():
    text = CONFIG.read_text()
    assert "camera_link" not in text
    assert manager(text)["Global Options"]["Fixed Frame"] == "set_by_sam3_launch"
    assert "rviz2 -d sam3.rviz -f" in text  # how to start it by hand


def test_a_camera_frame_gets_a_view_from_behind_the_camera():
    rewritten = manager(rviz_start.rviz_config(CONFIG.read_text(), "cam_optical", camera_view=True))
    assert rewritten["Global Options"]["Fixed Frame"] == "cam_optical"
    view = rewritten["Views"]["Current"]
    # orbit eye = focal point + distance * (cos p cos y, cos p sin y, sin p): behind the camera (z < focal z),
    # slightly to -y (image up), looking along +z
    eye_z = view["Focal Point"]["Z"] + view["Distance"] * __import__("math").sin(view["Pitch"])
    assert eye_z < 1.0 < view["Focal Point"]["Z"]
    assert view["Yaw"] == pytest.approx(-1.5708)
    grids = [d for d in rewritten["Displays"] if d["Class"] == "rviz_default_plugins/Grid"]
    assert [g["Plane"] for g in grids] == ["XZ"]
    # every display is kept as it was
    assert [d["Name"] for d in rewritten["Displays"]] == [d["Name"] for d in manager(CONFIG.read_text())["Displays"]]


def test_a_robot_frame_keeps_the_configs_z_up_view():
    original = manager(CONFIG.read_text())
    rewritten = manager(rviz_start.rviz_config(CONFIG.read_text(), "base_link", camera_view=False))
    assert rewritten["Global Options"]["Fixed Frame"] == "base_link"
    assert rewritten["Views"] == original["Views"]


def test_optical_frames_are_recognised_by_name():
    assert rviz_start.is_optical("camera_color_optical_frame") and rviz_start.is_optical("cam_Optical")
    assert not rviz_start.is_optical("base_link") and not rviz_start.is_optical("camera_link")


def test_one_frame_source_is_required():
    with pytest.raises(SystemExit):
        rviz_start.parse_args(["--config", str(CONFIG)])
    with pytest.raises(SystemExit):
        rviz_start.parse_args(["--config", str(CONFIG), "--fixed-frame", "a", "--frame-from", "/depth"])


# -- rviz_start with rclpy (PyPI runtime) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ros():
    runtime = pytest.importorskip("ros_runtime")
    if runtime.SKIP_REASON is not None:
        pytest.skip(runtime.SKIP_REASON)
    client = runtime.RosClient("sam3_rviz_start_test")
    yield runtime, client
    client.close()


def start(args: list[str], directory: Path, runtime) -> tuple[subprocess.Popen, Path, Path]:
    program, call = fake_rviz(directory)
    log = directory / "rviz_start.log"
    env = dict(runtime.node_environment(), FAKE_RVIZ_OUT=str(call))
    process = subprocess.Popen([sys.executable, "-m", "sam3_ros.ros.rviz_start", "--config", str(CONFIG),
                                "--rviz", str(program), "--tf-wait-s", "1", *args],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return process, call, log


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(30)


def test_rviz_start_learns_the_camera_frame_from_the_depth_topic(ros, tmp_path):
    runtime, client = ros
    camera = runtime.SyntheticCamera(client, "/rviz_start_test", frame_id=CAMERA_FRAME).start()
    process, call, log = start(["--frame-from", "/rviz_start_test/depth"], tmp_path, runtime)
    try:
        recorded = wait_for_file(call, process, log, 60.0)
        config = manager(recorded["config"])
        assert config["Global Options"]["Fixed Frame"] == CAMERA_FRAME
        assert config["Views"]["Current"]["Yaw"] == pytest.approx(-1.5708)  # camera view
        assert recorded["args"][0] == "-d"
        assert "waiting for the first message on /rviz_start_test/depth" in log.read_text()
        assert stop(process) == 0, log.read_text()
        assert call.with_suffix(".stopped").read_text() == str(int(signal.SIGINT))  # Ctrl-C reached rviz2
    finally:
        camera.stop()
        if process.poll() is None:
            process.kill()


def test_rviz_start_with_a_fixed_frame_needs_no_camera(ros, tmp_path):
    runtime, _ = ros
    process, call, log = start(["--fixed-frame", "base_link", "--use-sim-time"], tmp_path, runtime)
    try:
        recorded = wait_for_file(call, process, log, 60.0)
        assert manager(recorded["config"])["Global Options"]["Fixed Frame"] == "base_link"
        assert recorded["args"][2:] == ["--ros-args", "-p", "use_sim_time:=true"]
        assert stop(process) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()


# -- ros2 launch ... rviz:=true (full runtime) ------------------------------------------------------------------


def full_runtime_missing(runtime) -> str | None:
    if runtime.SKIP_REASON is not None:
        return runtime.SKIP_REASON
    missing = [m for m in ("launch", "launch_ros", "tf2_msgs") if importlib.util.find_spec(m) is None]
    missing += [] if shutil.which("ros2") else ["the ros2 CLI"]
    if missing:
        return f"needs a full ROS 2 runtime; missing: {', '.join(missing)}"
    if subprocess.run(["ros2", "pkg", "prefix", "sam3_ros"], capture_output=True).returncode != 0:
        return "sam3_ros is not in the sourced workspace"
    return None


@pytest.fixture
def launch_rviz(ros, tmp_path):
    """Runs `ros2 launch sam3_ros <file> rviz:=true ...` with the rviz2 stand-in first on PATH."""
    runtime, client = ros
    reason = full_runtime_missing(runtime)
    if reason:
        pytest.skip(reason)
    launched = []

    def run(launch_file: str, *args: str) -> tuple[dict, Path]:
        _, call = fake_rviz(tmp_path)
        log = tmp_path / "launch.log"
        env = dict(runtime.node_environment(), FAKE_RVIZ_OUT=str(call),
                   PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        process = subprocess.Popen(["ros2", "launch", "sam3_ros", launch_file, "rviz:=true", "tiny:=true",
                                    "device:=cpu", "autostart:=false", *args],
                                   stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        launched.append(process)
        return wait_for_file(call, process, log, 120.0), log

    yield run
    for process in launched:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_launch_default_fixed_frame_is_the_depth_images_frame_and_tf_learns_it(ros, launch_rviz):
    runtime, client = ros
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    camera = runtime.SyntheticCamera(client, "/rviz_launch_test", frame_id=CAMERA_FRAME).start()
    try:
        recorded, log = launch_rviz("sam3.launch.py", "namespace:=rviz_launch_test", "depth:=depth")
        assert manager(recorded["config"])["Global Options"]["Fixed Frame"] == CAMERA_FRAME
        static = client.subscribe(TFMessage, "/tf_static", QoSProfile(
            depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE))
        anchor = static.wait_for(lambda m: any(t.header.frame_id == CAMERA_FRAME for t in m.transforms), 30.0)
        (transform,) = [t for t in anchor.transforms if t.header.frame_id == CAMERA_FRAME]
        assert transform.child_frame_id == CAMERA_FRAME + rviz_start.ANCHOR_SUFFIX
        assert transform.transform.rotation.w == 1.0
        assert "no TF names it" in log.read_text()
    finally:
        camera.stop()


def test_launch_fixed_frame_and_target_frame_set_rviz_frame(launch_rviz):
    recorded, _ = launch_rviz("sam3.launch.py", "fixed_frame:=odom", "target_frame:=base_link")
    config = manager(recorded["config"])
    assert config["Global Options"]["Fixed Frame"] == "odom"
    assert config["Views"] == manager(CONFIG.read_text())["Views"]  # a robot frame: z-up view
    assert "Yaw" in config["Views"]["Current"]


def test_launch_target_frame_is_the_default_fixed_frame(launch_rviz):
    recorded, _ = launch_rviz("sam3.launch.py", "target_frame:=base_link")
    assert manager(recorded["config"])["Global Options"]["Fixed Frame"] == "base_link"


def test_realsense_launch_starts_rviz_in_the_colour_optical_frame(launch_rviz):
    recorded, _ = launch_rviz("sam3_realsense.launch.py", "camera_name:=d435")
    config = manager(recorded["config"])
    assert config["Global Options"]["Fixed Frame"] == "d435_color_optical_frame"
    assert config["Views"]["Current"]["Yaw"] == pytest.approx(-1.5708)  # an optical frame: camera view
