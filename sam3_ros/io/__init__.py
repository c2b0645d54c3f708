"""Conversions between sam3_ros results and the outside world: ROS 2 messages, files, recordings."""
