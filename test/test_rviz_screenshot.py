"""Every display of config/sam3.rviz draws the node's output, seen on screen (run locally where rviz2 is).

The node (tiny model, CPU) runs through `ros2 launch`, a synthetic camera publishes image, camera info
and depth in frame `camera_optical` (no TF of its own), and the real rviz2 runs under Xvfb through
sam3_ros.ros.rviz_start with that fixed frame. rviz2 is started once with every display of the node's
outputs off (the baseline; Grid and TF stay on, as shipped), once per display with only that one of them
on, and once with the whole config; each time the screen is grabbed (ImageMagick `import`). A display
"draws something in its region" when the pixels that differ from the baseline lie where it draws (3D
displays: inside the 3D view, around the baseline's (48, 48, 48) background; image displays: outside
it, in their panels) and have its colours (markers and clouds: the tracks' overlay colours; the focus
pose: its red x axis). Global Status is read from the Displays panel: RViz's own ok.png icon is on
screen and its warning.png and error.png are not.

It skips, saying what is missing, without a full ROS 2 runtime, rviz2, Xvfb or ImageMagick.
SAM3_RVIZ_SCREENSHOT=<path> keeps the whole-config screenshot (docs/rviz.png came from such a run).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros_runtime import REPO, SKIP_REASON, RosClient, SyntheticCamera, node_environment
from sam3_ros.io.messages import BOX_MARKER_ALPHA
from sam3_ros.io.overlay import track_colour
from sam3_ros.ros import rviz_start

FRAME = "camera_optical"
BACKGROUND = (48, 48, 48)  # config/sam3.rviz: Background Color
DISPLAYS = {  # check name -> (config display name, MarkerArray namespaces or None, where it draws)
    "overlay": ("SAM 3 overlay", None, "panel"),
    "id_image": ("Instance IDs", None, "panel"),
    "markers": ("Instances 3D", {"sam3": True, "sam3_boxes": False}, "view"),
    "boxes": ("Instances 3D", {"sam3": False, "sam3_boxes": True}, "view"),
    "points": ("Instance points", None, "view"),
    "focus": ("Focused track", None, "view"),
}
SCREEN = (1600, 1000)
# On in every shot, as shipped: they show none of the node's output, and without them in the scene
# rviz2 drew no text marker at all.
KEPT = ("Grid", "TF")


def _missing() -> str | None:
    if SKIP_REASON is not None:
        return SKIP_REASON
    missing = [m for m in ("launch", "launch_ros", "tf2_msgs", "cv2") if importlib.util.find_spec(m) is None]
    missing += [tool for tool in ("ros2", "rviz2", "Xvfb", "import") if shutil.which(tool) is None]
    if missing:
        return ("needs a full ROS 2 runtime with rviz2, Xvfb and ImageMagick; missing: " + ", ".join(missing))
    if subprocess.run(["ros2", "pkg", "prefix", "sam3_ros"], capture_output=True).returncode != 0:
        return "sam3_ros is not in the sourced workspace"
    return None


MISSING = _missing()
# A mark, not a module-level skip: launch_testing's pytest plugin (in a full runtime) lets a module-level
# skip raised here end the collection of whatever other test file pytest was asked to run.
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

if MISSING is None:
    import cv2  # noqa: E402
    from sam3_ros_interfaces import srv  # noqa: E402
    from sam3_ros_interfaces.msg import InstanceArray  # noqa: E402


@pytest.fixture(scope="module")
def display():
    number = 90 + os.getpid() % 9
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 20
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert socket.exists(), "Xvfb did not start"
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The node with 3D outputs, instance points and a focused track, fed by a synthetic camera."""
    tmp = tmp_path_factory.mktemp("rviz")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"sam3": {"ros__parameters": {
        "detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02, "warmup_frames": 1,
        "publish_instance_points": True}}}))
    client = RosClient("sam3_rviz_screenshot")
    camera = SyntheticCamera(client, "", width=160, height=120, fps=5.0, frame_id=FRAME, depth_m=1.5).start()
    log = tmp / "launch.log"
    launch = subprocess.Popen(["ros2", "launch", "sam3_ros", "sam3.launch.py", "tiny:=true", "device:=cpu",
                               "prompts:=red ball", "depth:=depth", f"params_file:={params}"],
                              stdout=log.open("w"), stderr=subprocess.STDOUT, env=node_environment(),
                              start_new_session=True)
    try:
        instances = client.subscribe(InstanceArray, "/sam3/instances")
        located = instances.wait_for(lambda m: any(i.has_position for i in m.instances), timeout_s=240.0)
        track = next(i.track_id for i in located.instances if i.has_position)
        answer = client.call(srv.Focus, "/sam3/focus", srv.Focus.Request(track_id=track))
        assert answer.success, answer.message
        yield {"client": client, "instances": instances, "tmp": tmp}
    finally:
        camera.stop()
        launch.send_signal(signal.SIGINT)
        try:
            launch.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
        client.close()


def config_with(enabled: str | None, tmp: Path) -> Path:
    """config/sam3.rviz with, of the node's displays, only check ``enabled`` on ("all": as shipped,
    None: none); KEPT stay on. A display that is off listens to no topic of the node either: rviz2
    subscribes while it loads even a display it then turns off, and an Image display keeps showing
    the frame it got."""
    config = yaml.safe_load(rviz_start.rviz_config((REPO / "config" / "sam3.rviz").read_text(), FRAME, True))
    if enabled != "all":
        name, namespaces, _ = DISPLAYS.get(enabled, (None, None, None))
        for entry in config["Visualization Manager"]["Displays"]:
            entry["Enabled"] = entry["Value"] = entry["Name"] in (name, *KEPT)
            if not entry["Enabled"] and "Topic" in entry:
                entry["Topic"]["Value"] += "_off"  # published by nobody
            if entry["Name"] == name and namespaces is not None:
                entry["Namespaces"] = namespaces
    path = tmp / f"{enabled or 'none'}.rviz"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def screenshot(display: str, config: Path, tmp: Path, settle_s: float = 20.0) -> np.ndarray:
    """rviz2 (through rviz_start, fixed frame FRAME) with ``config``; the screen after ``settle_s``, RGB."""
    env = dict(node_environment(), DISPLAY=display, LIBGL_ALWAYS_SOFTWARE="1", QT_QPA_PLATFORM="xcb")
    log = tmp / f"{config.stem}.log"
    rviz = subprocess.Popen([sys.executable, "-m", "sam3_ros.ros.rviz_start", "--config", str(config),
                             "--fixed-frame", FRAME], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        time.sleep(settle_s)
        assert rviz.poll() is None, log.read_text()[-3000:]
        png = tmp / f"{config.stem}.png"
        subprocess.run(["import", "-display", display, "-window", "root", str(png)], check=True, timeout=60)
        return cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    finally:
        rviz.send_signal(signal.SIGINT)
        try:
            rviz.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(rviz.pid, signal.SIGKILL)


def view_box(baseline: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the 3D view: around the regions of the background colour, which the grid's
    lines cut into several, but not the small ones (the Displays panel's colour swatch)."""
    mask = (np.abs(baseline.astype(int) - BACKGROUND).max(axis=2) <= 2).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    regions = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area >= 5000]
    assert regions, "no 3D view (background colour) on the baseline screen"
    return tuple(int(f(r[i] for r in regions)) for i, f in enumerate((min, min, max, max)))


def changed(shot: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    return np.abs(shot.astype(int) - baseline.astype(int)).max(axis=2) > 30


def near(pixels: np.ndarray, colours: list[tuple[int, int, int]], tolerance: int = 40) -> np.ndarray:
    """Which of ``pixels`` (..., 3) are within ``tolerance`` of one of ``colours``."""
    values, index = np.unique(pixels.reshape(-1, 3).astype(int), axis=0, return_inverse=True)
    hit = np.zeros(len(values), bool)
    for colour in colours:
        hit |= np.abs(values - colour).max(axis=1) <= tolerance
    return hit[index.reshape(-1)].reshape(pixels.shape[:-1])


def layered(colours: list[tuple[int, int, int]], alpha: float, depth: int = 3) -> list[tuple[float, ...]]:
    """The background seen through 1 to ``depth`` translucent layers of distinct ``colours``, in any
    order (overlapping boxes)."""
    seen = []
    for count in range(1, depth + 1):
        for layers in itertools.permutations(colours, count):
            pixel = np.array(BACKGROUND, float)
            for colour in layers:
                pixel = alpha * np.array(colour) + (1 - alpha) * pixel
            seen.append(tuple(pixel))
    return seen


def find_icon(shot: np.ndarray, name: str, region: tuple[int, int, int, int]) -> bool:
    """Whether rviz_common's icons/<name> is drawn in ``region`` (alpha-masked template match)."""
    from ament_index_python.packages import get_package_share_directory

    icon = cv2.imread(os.path.join(get_package_share_directory("rviz_common"), "icons", name), cv2.IMREAD_UNCHANGED)
    rgb, alpha = cv2.cvtColor(icon[:, :, :3], cv2.COLOR_BGR2RGB), icon[:, :, 3]
    mask = (alpha > 200).astype(np.uint8)
    x0, y0, x1, y1 = region
    scores = cv2.matchTemplate(shot[y0:y1, x0:x1].astype(np.float32), rgb.astype(np.float32), cv2.TM_SQDIFF,
                               mask=np.repeat(mask[:, :, None], 3, axis=2).astype(np.float32))
    return float(scores.min()) / max(int(mask.sum()) * 3, 1) < 20.0 ** 2  # mean squared difference per channel


def test_every_display_draws_and_global_status_is_ok(display, scene):
    tmp = scene["tmp"]
    baseline = screenshot(display, config_with(None, tmp), tmp)
    view = view_box(baseline)
    x0, y0, x1, y1 = view
    assert (x1 - x0) * (y1 - y0) > 100_000, f"3D view too small: {view}"
    in_view = np.zeros(baseline.shape[:2], bool)
    in_view[y0:y1, x0:x1] = True
    results = {}
    for check, (_, _, where) in DISPLAYS.items():
        shot = screenshot(display, config_with(check, tmp), tmp)
        recent = scene["instances"].messages[-30:]  # the tracks RViz may be showing now
        tracks = {i.track_id for m in recent for i in m.instances if i.has_position}
        colours = [track_colour(t) for t in tracks]
        diff = changed(shot, baseline)
        region = diff & (in_view if where == "view" else ~in_view)
        if check in ("markers", "points"):
            region &= near(shot, colours)
        elif check == "boxes":  # translucent cubes in track colours over the background, maybe overlapping
            region[region] = near(shot[region], layered(colours, BOX_MARKER_ALPHA), tolerance=15)
        elif check == "focus":
            pixels = shot.astype(int)
            region &= (pixels[:, :, 0] > 100) & (pixels[:, :, 0] > 2 * pixels[:, :, 1]) \
                & (pixels[:, :, 0] > 2 * pixels[:, :, 2])  # its x axis is red
        results[check] = int(region.sum())
    assert all(count >= 30 for count in results.values()), results

    whole = screenshot(display, config_with("all", tmp), tmp)
    keep = os.environ.get("SAM3_RVIZ_SCREENSHOT")
    if keep:
        cv2.imwrite(keep, cv2.cvtColor(whole, cv2.COLOR_RGB2BGR))
    panel = (0, 0, max(x0, 1), whole.shape[0])  # the Displays panel, left of the 3D view
    assert find_icon(whole, "ok.png", panel), "no 'ok' status icon in the Displays panel"
    assert not find_icon(whole, "warning.png", panel), "a 'warning' status icon in the Displays panel"
    assert not find_icon(whole, "error.png", panel), "an 'error' status icon in the Displays panel"
