"""A camera without a driver: the demo clip (a red ball and a blue box crossing a floor) published
as ``image`` (sensor_msgs/Image, rgb8) and ``camera_info``, looping, for trying the node.

    ros2 run sam3_ros demo_camera                     # 10 Hz, 320x240, frame camera
    ros2 run sam3_ros demo_camera --ros-args -r image:=/cam/image -p rate_hz:=5.0

Parameters: ``rate_hz`` (> 0, default 10), ``frames`` (clip length before it loops, >= 2,
default 48). Stops on Ctrl-C or SIGTERM with exit 0.
"""
from __future__ import annotations

import signal
import threading

import rclpy
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image

from ..demo_clip import HEIGHT, WIDTH, demo_frame

FRAME_ID = "camera"
FOCAL_PX = 300.0


def camera_info(stamp, frame_id: str = FRAME_ID) -> CameraInfo:
    """Pinhole intrinsics of the clip: focal FOCAL_PX, principal point at the image centre."""
    info = CameraInfo()
    info.header.stamp, info.header.frame_id = stamp, frame_id
    info.height, info.width, info.distortion_model = HEIGHT, WIDTH, "plumb_bob"
    info.d = [0.0] * 5
    info.k = [FOCAL_PX, 0.0, WIDTH / 2, 0.0, FOCAL_PX, HEIGHT / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [FOCAL_PX, 0.0, WIDTH / 2, 0.0, 0.0, FOCAL_PX, HEIGHT / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = rclpy.create_node("demo_camera")
    rate = node.declare_parameter("rate_hz", 10.0).value
    frames = node.declare_parameter("frames", 48).value
    if not rate > 0 or frames < 2:
        node.get_logger().error(f"rate_hz must be > 0 and frames >= 2; got {rate} and {frames}")
        node.destroy_node()
        rclpy.try_shutdown()
        raise SystemExit(2)
    images = node.create_publisher(Image, "image", qos_profile_sensor_data)
    infos = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    clip = [demo_frame(i, frames).tobytes() for i in range(frames)]
    node.get_logger().info(f"publishing a {WIDTH}x{HEIGHT} test clip at {rate:g} Hz on "
                           f"{images.topic_name} and {infos.topic_name}")
    index = 0
    try:
        while not stop.wait(1.0 / rate):
            stamp = node.get_clock().now().to_msg()
            image = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, data=clip[index % frames])
            image.header.stamp, image.header.frame_id = stamp, FRAME_ID
            images.publish(image)
            infos.publish(camera_info(stamp))
            index += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
