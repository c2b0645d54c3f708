"""sam3_ros: SAM 3 open-vocabulary segmentation and persistent tracking for ROS 2 robots."""
__version__ = "0.1.0"
