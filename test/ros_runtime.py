"""The real ROS 2 runtime for tests: the node executable as a process, driven over DDS.

The runtime is either a sourced ROS 2 workspace, or a PyPI-only underlay that
``tools/ros2_underlay.py`` builds (``make test`` does): Jazzy in .venv and .ros2/install, Kilted
in .venv-kilted and .ros2-kilted/install. Which one follows from the Python running the tests
(``SAM3_ROS2_UNDERLAY`` names another install folder). Importing this module prepares this
process for it; ``SKIP_REASON`` says what is missing otherwise.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The colcon workspace that goes with this Python's venv (tools/ros2_underlay.py, DISTROS).
_WORKSPACES = {REPO / ".venv-kilted": REPO / ".ros2-kilted"}
UNDERLAY = Path(os.environ.get("SAM3_ROS2_UNDERLAY")
                or _WORKSPACES.get(Path(sys.prefix).resolve(), REPO / ".ros2") / "install")
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
# One DDS domain per test session, on loopback only: parallel sessions do not see each other.
DOMAIN_ID = os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A test run started in the background by a non-interactive shell ignores SIGINT, and processes
# inherit an ignored signal: `ros2 launch` would then never see the Ctrl-C the tests send it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _use_underlay() -> None:
    """Make the colcon-built interface packages importable and loadable in this process.

    rosidl's typesupport dispatch dlopens libraries by file name, which the loader resolves from
    LD_LIBRARY_PATH as it was at process start; loading them by path first lets that succeed
    (glibc matches an already-loaded library by its soname).
    """
    sys.path.insert(0, str(UNDERLAY / SITE))
    for name in ("AMENT_PREFIX_PATH", "LD_LIBRARY_PATH"):
        extra = str(UNDERLAY) if name == "AMENT_PREFIX_PATH" else str(UNDERLAY / "lib")
        os.environ[name] = os.pathsep.join(p for p in (extra, os.environ.get(name, "")) if p)
    if sys.prefix not in os.environ["AMENT_PREFIX_PATH"].split(os.pathsep):
        os.environ["AMENT_PREFIX_PATH"] += os.pathsep + sys.prefix
    for library in sorted((UNDERLAY / "lib").glob("lib*.so")):
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)


def _prepare() -> str | None:
    try:
        import rclpy  # noqa: F401
    except ImportError as err:
        return f"rclpy is not importable ({err}): run `make ros2` (PyPI ROS 2 Jazzy underlay) or source ROS 2"
    try:
        import sam3_ros_interfaces  # noqa: F401  (a sourced workspace)
        return None
    except ImportError:
        pass
    if not (UNDERLAY / ".sam3_ros_underlay").is_file():
        return f"sam3_ros_interfaces is not built: run `make ros2` (builds {UNDERLAY})"
    _use_underlay()
    try:
        import sam3_ros_interfaces.msg  # noqa: F401
        import vision_msgs.msg  # noqa: F401
    except ImportError as err:
        return f"the underlay in {UNDERLAY} does not import ({err}): rebuild it with `make ros2`"
    return None


SKIP_REASON = _prepare()


def node_executable() -> Path:
    """colcon's lib/sam3_ros/sam3_node where sam3_ros is in a sourced workspace, else pip's script."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        installed = Path(get_package_prefix("sam3_ros")) / "lib" / "sam3_ros" / "sam3_node"
        if installed.is_file():
            return installed
    except (ImportError, PackageNotFoundError):
        pass
    return Path(sys.executable).with_name("sam3_node")


def node_environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
               RCUTILS_CONSOLE_OUTPUT_FORMAT="[{severity}] [{name}]: {message}")
    if (UNDERLAY / SITE).is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(UNDERLAY / SITE), env.get("PYTHONPATH", "")) if p)
    return env


def ros_value(value: Any) -> str:
    """A parameter value as `ros2 run ... --ros-args -p name:=VALUE` spells it (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # YAML single quotes: '' is the empty string, 'true' stays a string
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ros_value(v) for v in value) + "]"
    return str(value)


def stamp_ns(message: Any) -> int:
    """A stamped message's header stamp in nanoseconds."""
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class NodeProcess:
    """The sam3_node executable, started like `ros2 run sam3_ros sam3_node --ros-args ...`."""

    def __init__(self, name: str, params: dict[str, Any] | None = None, ros_args: list[str] | None = None):
        self.name = name
        args = ["--ros-args", "-r", f"__node:={name}"]
        for key, value in (params or {}).items():
            args += ["-p", f"{key}:={ros_value(value)}"]
        self.command = [str(node_executable()), *args, *(ros_args or [])]
        self._log = tempfile.NamedTemporaryFile("w+", prefix=f"{name}-", suffix=".log", delete=False)
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=node_environment(), start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self, signum: int = signal.SIGINT, timeout_s: float = 30.0) -> int:
        """Send ``signum`` and wait; a process that hangs is killed and reported as -9."""
        if self.alive:
            self.process.send_signal(signum)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                return -9
        return self.process.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop(timeout_s=15.0)


class Inbox:
    """Messages received on one subscription, with waiting."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._changed = threading.Condition()

    def add(self, message: Any) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()

    def wait_for(self, predicate: Callable[[Any], bool] = lambda m: True, timeout_s: float = 60.0) -> Any:
        """The first message (old or new) satisfying ``predicate``; raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching message in {timeout_s:g} s ({len(self.messages)} received)")
                self._changed.wait(remaining)

    def count(self) -> int:
        with self._changed:
            return len(self.messages)


class RosClient:
    """An rclpy node in this process, in its own context, spinning on a background thread."""

    def __init__(self, name: str = "sam3_test_client"):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        self._clients: dict[tuple[Any, str], Any] = {}

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # the context went away while closing
                if self.context.ok():
                    raise

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self._spinner.join(5.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()

    # -- services -------------------------------------------------------------------------------------
    def call(self, srv_type: Any, name: str, request: Any = None, timeout_s: float = 60.0) -> Any:
        future = self.call_async(srv_type, name, request, timeout_s)
        return self.result(future, timeout_s, name)

    def call_async(self, srv_type: Any, name: str, request: Any = None, wait_s: float = 60.0):
        key = (srv_type, name)
        if key not in self._clients:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            burst = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # many calls in flight at once
            self._clients[key] = self.node.create_client(srv_type, name, qos_profile=burst)
        client = self._clients[key]
        if not client.wait_for_service(timeout_sec=wait_s):
            raise TimeoutError(f"service {name} did not appear in {wait_s:g} s")
        return client.call_async(request if request is not None else srv_type.Request())

    @staticmethod
    def result(future, timeout_s: float, what: str = "call") -> Any:
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            raise TimeoutError(f"{what} did not answer in {timeout_s:g} s")
        return future.result()

    # -- actions ----------------------------------------------------------------------------------------
    def send_goal(self, action_type: Any, name: str, goal: Any, feedback: "Inbox | None" = None,
                  wait_s: float = 60.0) -> Any:
        """Send a goal and return its accepted goal handle; feedback messages go to ``feedback``."""
        from rclpy.action import ActionClient

        key = (action_type, name)
        if key not in self._clients:
            self._clients[key] = ActionClient(self.node, action_type, name)
        client = self._clients[key]
        if not client.wait_for_server(timeout_sec=wait_s):
            raise TimeoutError(f"action {name} did not appear in {wait_s:g} s")
        on_feedback = (lambda message: feedback.add(message.feedback)) if feedback is not None else None
        handle = self.result(client.send_goal_async(goal, feedback_callback=on_feedback), wait_s, f"goal to {name}")
        if not handle.accepted:
            raise RuntimeError(f"goal to {name} was rejected")
        return handle

    def goal_result(self, handle: Any, timeout_s: float = 60.0) -> Any:
        """(status, result) of an accepted goal once it ends (status: action_msgs/GoalStatus)."""
        response = self.result(handle.get_result_async(), timeout_s, "goal result")
        return response.status, response.result

    def cancel_goal(self, handle: Any, timeout_s: float = 60.0) -> Any:
        return self.result(handle.cancel_goal_async(), timeout_s, "cancel")

    # -- lifecycle -------------------------------------------------------------------------------------
    def state(self, node: str, timeout_s: float = 30.0) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{node}/get_state", timeout_s=timeout_s).current_state.label

    def transition(self, node: str, label: str = "", transition_id: int = 0, timeout_s: float = 120.0) -> bool:
        """ChangeState by label (as `ros2 lifecycle set` does) or by id (as launch does)."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.label, request.transition.id = label, transition_id
        return self.call(ChangeState, f"{node}/change_state", request, timeout_s=timeout_s).success

    # -- parameters ------------------------------------------------------------------------------------
    def set_parameters(self, node: str, values: dict[str, Any]) -> list[Any]:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(self.call(SetParameters, f"{node}/set_parameters", request).results)

    def get_parameters(self, node: str, names: list[str]) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names))
        return {name: parameter_value_to_python(v) for name, v in zip(names, response.values)}

    # -- topics -----------------------------------------------------------------------------------------
    def subscribe(self, msg_type: Any, topic: str, qos: Any = 10) -> Inbox:
        inbox = Inbox()
        self.node.create_subscription(msg_type, topic, inbox.add, qos)
        return inbox


class SyntheticCamera:
    """Publishes a bright square sliding over a dark background, with camera info and metric depth.

    Every message of one frame carries the same stamp; stamps increase by ``1 / fps``.
    """

    def __init__(self, client: RosClient, namespace: str, width: int = 64, height: int = 48, fps: float = 10.0,
                 frame_id: str = "sam3_test_camera", qos: Any = None, depth_m: float = 2.0,
                 compressed: bool = False):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        qos = qos if qos is not None else qos_profile_sensor_data
        node = client.node
        self.client, self.width, self.height, self.fps, self.frame_id = client, width, height, fps, frame_id
        self.depth_m, self.compressed, self.focal = depth_m, compressed, 50.0
        self.image_pub = (node.create_publisher(CompressedImage, f"{namespace}/image/compressed", qos) if compressed
                          else node.create_publisher(Image, f"{namespace}/image", qos))
        self.info_pub = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos)
        self.depth_pub = node.create_publisher(Image, f"{namespace}/depth", qos)
        self.frames = 0
        self.stamps: list[int] = []
        self._start_ns = time.time_ns()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def frame(self, index: int) -> np.ndarray:
        image = np.full((self.height, self.width, 3), 30, dtype=np.uint8)
        x = 4 + (index * 2) % (self.width - 24)
        image[12:32, x:x + 20] = (220, 40, 40)
        return image

    def wait_for_subscribers(self, depth: bool = True, timeout_s: float = 30.0) -> "SyntheticCamera":
        """Block until the node's subscriptions have matched this camera's publishers: DDS drops what a
        fresh publisher sends before discovery completes."""
        publishers = [self.image_pub, self.info_pub] + [self.depth_pub] * depth
        if not wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers), timeout_s):
            raise TimeoutError(f"no subscriber matched the camera publishers in {timeout_s:g} s")
        return self

    def publish_until_answered(self, *inboxes: "Inbox", timeout_s: float = 60.0) -> list[Any]:
        """Publish one frame, again every second until every inbox holds the node's answer for it
        (a fresh subscription on either side may miss the first message while DDS matches it)."""
        stamp = time.time_ns()
        deadline = time.monotonic() + timeout_s
        answers: dict[int, Any] = {}
        while len(answers) < len(inboxes):
            self.publish_frame(stamp_ns=stamp)
            for i, inbox in enumerate(inboxes):
                if i not in answers:
                    try:
                        answers[i] = inbox.wait_for(lambda m: stamp_ns(m) == stamp, min(1.0, deadline - time.monotonic()))
                    except TimeoutError:
                        if time.monotonic() >= deadline:
                            raise
        return [answers[i] for i in range(len(inboxes))]

    def mask_centroid(self, instance: Any) -> np.ndarray:
        """Where an Instance's centroid must be, in the camera frame: its mask's pixels back-projected
        onto this camera's depth plane with its intrinsics (a plane has no outliers to drop)."""
        from sam3_ros.core.masks import RleMask

        mask = RleMask.from_coco({"size": [instance.mask_height, instance.mask_width], "counts": instance.mask_rle})
        rows, cols = np.nonzero(mask.to_array())
        z = self.depth_m
        return np.array([((cols - self.width / 2) * z / self.focal).mean(),
                         ((rows - self.height / 2) * z / self.focal).mean(), z])

    def stamp_ns(self, index: int) -> int:
        return self._start_ns + int(index * 1e9 / self.fps)

    def publish_frame(self, index: int | None = None, stamp_ns: int | None = None, image: Any = None) -> int:
        """Publish frame ``index`` (the next one by default), or ``image`` instead of its picture, with
        its camera info and depth; returns the stamp in ns."""
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        index = self.frames if index is None else index
        stamp_ns = self.stamp_ns(index) if stamp_ns is None else stamp_ns
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        rgb = self.frame(index)
        if image is not None:
            pass
        elif self.compressed:
            import cv2

            ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
            image = CompressedImage(format="png", data=png.tobytes())
        else:
            image = Image(height=self.height, width=self.width, encoding="rgb8", step=self.width * 3,
                          data=rgb.tobytes())
        image.header.stamp, image.header.frame_id = stamp, self.frame_id
        info = CameraInfo(height=self.height, width=self.width, distortion_model="plumb_bob",
                          k=[self.focal, 0.0, self.width / 2, 0.0, self.focal, self.height / 2, 0.0, 0.0, 1.0])
        info.header.stamp, info.header.frame_id = stamp, self.frame_id
        depth = np.full((self.height, self.width), self.depth_m, dtype=np.float32)
        depth_msg = Image(height=self.height, width=self.width, encoding="32FC1", step=self.width * 4,
                          data=depth.tobytes())
        depth_msg.header.stamp, depth_msg.header.frame_id = stamp, self.frame_id
        self.image_pub.publish(image)
        self.info_pub.publish(info)
        self.depth_pub.publish(depth_msg)
        self.frames = max(self.frames, index + 1)
        self.stamps.append(stamp_ns)
        return stamp_ns

    def start(self) -> "SyntheticCamera":
        self._running.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while self._running.is_set() and self.client.context.ok():
            self.publish_frame()
            time.sleep(1.0 / self.fps)

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(5.0)
