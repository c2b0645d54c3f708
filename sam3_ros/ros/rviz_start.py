"""Start rviz2 with config/sam3.rviz in the frame the node's 3D outputs are in (sam3.launch.py rviz:=true).

    python -m sam3_ros.ros.rviz_start --config CONFIG (--fixed-frame FRAME | --frame-from TOPIC)
                                      [--namespace NS] [--use-sim-time]

1. The fixed frame: ``--fixed-frame``, else the frame_id of the first message on ``--frame-from`` (the
   node's depth topic, or its image topic without depth: the frame of its 3D outputs when it has no
   target_frame). It waits for that message as long as it takes, saying so every 10 s.
2. A copy of the config with that Fixed Frame. In a camera frame (learnt from the topic, or a name
   with "optical" in it: REP 103 optical frames are x right, y down, z forward) the 3D view looks
   from behind the camera, image-up on screen; in other frames the config's z-up orbit view stays.
3. RViz's Global Status warns about a fixed frame that no TF message names, even though it draws
   data stamped in that very frame. When nothing on /tf or /tf_static names the frame within
   ``--tf-wait-s`` (3 s), this process publishes one static transform on /tf_static, identity from
   the frame to ``<frame>_sam3_rviz`` (a leaf nothing uses), so that the frame exists; a camera
   with its own TF tree (RealSense) gets nothing extra.
4. rviz2 -d <copy> runs as a child; SIGINT/SIGTERM are passed on and its exit code is returned.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .rviz_cameras import cameras_config

ANCHOR_SUFFIX = "_sam3_rviz"
# Orbit view from behind an optical frame's origin towards +z, screen-up = -y (image up): the
# orbit's up axis is the fixed frame's z, so a pitch near -90 degrees looks along +z and yaw -90
# degrees turns -y to the top of the screen (x to the right).
CAMERA_VIEW = {
    "Class": "rviz_default_plugins/Orbit",
    "Distance": 2.5,
    "Focal Point": {"X": 0.0, "Y": 0.0, "Z": 2.0},
    "Pitch": -1.45,
    "Yaw": -1.5708,
    "Target Frame": "<Fixed Frame>",
}


def is_optical(frame: str) -> bool:
    return "optical" in frame.lower()


def rviz_config(text: str, fixed_frame: str, camera_view: bool) -> str:
    """The RViz config ``text`` with its Fixed Frame set and, with ``camera_view``, the 3D view and
    grid turned for an optical frame (view from behind the camera; grid in the x-z plane)."""
    config = yaml.safe_load(text)
    manager = config["Visualization Manager"]
    manager["Global Options"]["Fixed Frame"] = fixed_frame
    if camera_view:
        view = manager["Views"]["Current"]
        view.update(CAMERA_VIEW)
        for display in manager["Displays"]:
            if display.get("Class") == "rviz_default_plugins/Grid":
                display["Plane"] = "XZ"
    return yaml.safe_dump(config, sort_keys=False)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rviz_start", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="RViz config (config/sam3.rviz)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fixed-frame", help="the fixed frame to use")
    source.add_argument("--frame-from", metavar="TOPIC",
                        help="use the frame_id of the first Image (or CompressedImage: .../compressed) here")
    parser.add_argument("--namespace", default="", help="namespace relative topic names resolve in")
    parser.add_argument("--cameras", nargs="*", default=[],
                        help="the node's cameras: each per-camera display once per camera (rviz_cameras.py)")
    parser.add_argument("--use-sim-time", action="store_true")
    parser.add_argument("--tf-wait-s", type=float, default=3.0,
                        help="how long to listen for TF naming the frame before publishing one")
    parser.add_argument("--rviz", default="rviz2", help="the rviz2 executable")
    return parser.parse_args(argv)


def _log(text: str) -> None:
    print(f"[rviz_start] {text}", flush=True)


class _Ros:
    """The few ROS things this needs: the first header on a topic, TF frame names, one static TF."""

    def __init__(self, namespace: str):
        import rclpy
        from rclpy.node import Node

        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)  # signals: main() handles them
        self.node = Node("sam3_rviz_start", namespace=namespace or "/")

    def first_frame(self, topic: str) -> str:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        kind = CompressedImage if topic.rstrip("/").endswith("/compressed") else Image
        frames: list[str] = []
        subscription = self.node.create_subscription(kind, topic, lambda m: frames.append(m.header.frame_id),
                                                     qos_profile_sensor_data)
        resolved = subscription.topic_name
        _log(f"waiting for the first message on {resolved} to learn the camera frame "
             f"(pass fixed_frame:=<frame> to start RViz at once)")
        start = last_note = time.monotonic()
        while not frames:
            self._rclpy.spin_once(self.node, timeout_sec=0.2)
            if time.monotonic() - last_note > 10.0:
                last_note = time.monotonic()
                _log(f"still waiting for {resolved} ({last_note - start:.0f} s)")
        self.node.destroy_subscription(subscription)
        return frames[0]

    def tf_names(self, frame: str, wait_s: float) -> bool | None:
        """Whether a message on /tf or /tf_static names ``frame`` within ``wait_s``; None when
        tf2_msgs is not installed (then there is no TF to check or publish)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            return None

        seen = []

        def on_tf(msg):
            seen.extend(t for t in msg.transforms if frame in (t.header.frame_id, t.child_frame_id))

        static_qos = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                reliability=ReliabilityPolicy.RELIABLE)
        subscriptions = [self.node.create_subscription(TFMessage, "/tf_static", on_tf, static_qos),
                         self.node.create_subscription(TFMessage, "/tf", on_tf, 100)]
        deadline = time.monotonic() + wait_s
        while not seen and time.monotonic() < deadline:
            self._rclpy.spin_once(self.node, timeout_sec=0.1)
        for subscription in subscriptions:
            self.node.destroy_subscription(subscription)
        return bool(seen)

    def anchor(self, frame: str) -> None:
        """Publish (latched) an identity static transform frame -> frame + ANCHOR_SUFFIX."""
        from geometry_msgs.msg import TransformStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
        self._static = self.node.create_publisher(TFMessage, "/tf_static", qos)
        transform = TransformStamped()
        transform.header.stamp = self.node.get_clock().now().to_msg()
        transform.header.frame_id = frame
        transform.child_frame_id = frame + ANCHOR_SUFFIX
        transform.transform.rotation.w = 1.0
        self._static.publish(TFMessage(transforms=[transform]))

    def spin_while(self, process: subprocess.Popen) -> int:
        while process.poll() is None:
            self._rclpy.spin_once(self.node, timeout_sec=0.2)
        return process.returncode

    def shutdown(self) -> None:
        self.node.destroy_node()
        self._rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ros = _Ros(args.namespace)
    stop = {"signal": None}

    def remember(signum, _frame):
        stop["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, remember)
    signal.signal(signal.SIGTERM, remember)
    try:
        frame = args.fixed_frame or ros.first_frame(args.frame_from)
        camera_view = bool(args.frame_from) or is_optical(frame)
        named = ros.tf_names(frame, args.tf_wait_s)
        if named is None:
            _log(f"fixed frame {frame}; tf2_msgs is not installed, so TF is neither checked nor published")
        elif named:
            _log(f"fixed frame {frame} (named by TF)")
        else:
            ros.anchor(frame)
            _log(f"fixed frame {frame}: no TF names it, so /tf_static gets {frame} -> {frame}{ANCHOR_SUFFIX} "
                 "(identity) for RViz to know the frame")
        text = Path(args.config).read_text()
        text = rviz_config(cameras_config(text, args.cameras) if args.cameras else text, frame, camera_view)
        handle, path = tempfile.mkstemp(prefix="sam3-rviz-", suffix=".rviz")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        command = [args.rviz, "-d", path]
        if args.use_sim_time:
            command += ["--ros-args", "-p", "use_sim_time:=true"]
        _log(" ".join(command))
        process = subprocess.Popen(command)
    except KeyboardInterrupt:
        ros.shutdown()
        return 0

    def forward(signum, _frame):
        if process.poll() is None:
            process.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        code = ros.spin_while(process)
    finally:
        ros.shutdown()
        os.unlink(path)
    return code


if __name__ == "__main__":
    sys.exit(main())
