"""An Intel RealSense camera with depth aligned to colour, and sam3 on its streams.

    ros2 launch sam3_ros sam3_realsense.launch.py prompts:="yellow forklift,person" \
        checkpoint:=$HOME/models/sam3 rviz:=true

Every argument of sam3.launch.py passes through (and `--show-args` lists them), but image,
camera_info and depth, which are the camera's topics. realsense2_camera's rs_launch.py is included
when that package is installed; otherwise start the camera yourself with the same names.

Topic names are those of realsense-ros 4.54 and later: /<camera_namespace>/<camera_name>/...,
both "camera" by default, so /camera/camera/color/image_raw, /camera/camera/color/camera_info and,
with align_depth.enable:=true, /camera/camera/aligned_depth_to_color/image_raw (16UC1 millimetres,
the colour image's size and frame). Verified against rs_launch.py's declared arguments
(camera_namespace and camera_name default "camera", align_depth.enable, enable_sync) and launch
files of other projects wired to these topics; not run here. Releases before 4.54 publish
/camera/color/... (pass camera_namespace:="" there).

Two cameras (or more), one sam3 node and one model: one realsense2_camera per name, each
camera_name NAME under camera_namespace (serial_numbers picks which device is which), and sam3 with
cameras:=[...], each camera's image, camera info and aligned depth remapped to its topics (the
params file handed to sam3.launch.py gets cameras, NAME.depth and the remappings):

    ros2 launch sam3_ros sam3_realsense.launch.py cameras:="[head, wrist]" \
        serial_numbers:="['123422070001', '123422070002']" prompts:="mug" rviz:=true

RViz (rviz:=true) starts in <camera_name>_color_optical_frame (the first camera's), the frame of the aligned depth and so of
every 3D output, unless fixed_frame or target_frame says otherwise; the camera publishes its TF.
"""
import importlib.util
import os
import tempfile

import yaml

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "sam3_ros"
CAMERA_PACKAGE = "realsense2_camera"
STREAMS = {  # sam3.launch.py argument -> topic below /<camera_namespace>/<camera_name>/
    "image": "color/image_raw",
    "camera_info": "color/camera_info",
    "depth": "aligned_depth_to_color/image_raw",
}
OPTICAL_FRAME_SUFFIX = "_color_optical_frame"  # realsense-ros: <camera_name>_color_optical_frame
CAMERA_ARGUMENTS = {  # rs_launch.py argument -> value
    "align_depth.enable": "true",  # depth registered to the colour image, pixel for pixel
    "enable_sync": "true",         # colour and depth frames with the same stamp
}


def _sam3_launch() -> str:
    return os.path.join(get_package_share_directory(PACKAGE), "launch", "sam3.launch.py")


def _sam3_module():
    spec = importlib.util.spec_from_file_location("sam3_launch", _sam3_launch())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sam3_arguments() -> list:
    """sam3.launch.py's own DeclareLaunchArgument actions, but for the streams set here: declared
    again so that `--show-args` lists them; their values reach the included file unchanged."""
    return [argument for argument in _sam3_module().generate_launch_description().get_launch_arguments()
            if argument.name not in STREAMS]


def _fixed_frame(context, camera_name: str) -> dict:
    """RViz's fixed frame when neither fixed_frame nor target_frame (argument or params_file) names
    one: the colour camera's optical frame, which the aligned depth and so every 3D output is in
    (realsense-ros names it <camera_name>_color_optical_frame and publishes its TF)."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    target_in_file = _sam3_module()._file_parameters(value("params_file")).get("target_frame")
    if value("fixed_frame") or value("target_frame") or target_in_file:
        return {}
    return {"fixed_frame": f"{camera_name or 'camera'}{OPTICAL_FRAME_SUFFIX}"}


def _camera(camera_namespace: str, camera_name: str, serial_number: str = "") -> list:
    """realsense2_camera's rs_launch.py for one camera, or a note that it is not installed."""
    prefix = "/" + "/".join(part for part in (camera_namespace, camera_name) if part)
    try:
        rs_launch = os.path.join(get_package_share_directory(CAMERA_PACKAGE), "launch", "rs_launch.py")
    except PackageNotFoundError:
        return [LogInfo(msg=f"{CAMERA_PACKAGE} is not installed: start the camera yourself "
                            f"(topics {prefix}/...) or apt install ros-$ROS_DISTRO-realsense2-camera")]
    camera_arguments = {"camera_namespace": camera_namespace, "camera_name": camera_name, **CAMERA_ARGUMENTS,
                        **({"serial_no": f"'{serial_number}'"} if serial_number else {})}
    return [GroupAction([IncludeLaunchDescription(  # scoped: the camera's arguments stay its own
        PythonLaunchDescriptionSource(rs_launch), launch_arguments=camera_arguments.items())])]


def _streams(camera_namespace: str, camera_name: str) -> dict:
    """sam3.launch.py argument (image, camera_info, depth) -> that camera's topic."""
    prefix = "/" + "/".join(part for part in (camera_namespace, camera_name) if part)
    return {argument: f"{prefix}/{suffix}" for argument, suffix in STREAMS.items()}


def _cameras_params_file(context, camera_namespace: str, cameras: list) -> str:
    """params_file plus cameras, NAME.depth and the remappings of each camera's inputs to its topics, written
    to a temporary file for sam3.launch.py."""
    sam3 = _sam3_module()
    parameters = sam3._file_parameters(LaunchConfiguration("params_file").perform(context).strip())
    parameters["cameras"] = cameras
    parameters.update({f"{name}.depth": True for name in cameras})
    parameters["remappings"] = [f"{name}/{argument}:={topic}" for name in cameras
                                for argument, topic in _streams(camera_namespace, name).items()]
    handle, path = tempfile.mkstemp(prefix="sam3-cameras-", suffix=".yaml")
    with os.fdopen(handle, "w") as file:
        yaml.safe_dump({sam3.NODE_NAME: {"ros__parameters": parameters}}, file, sort_keys=False)
    return path


def _launch_setup(context):
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    camera_namespace, camera_name = value("camera_namespace").strip("/"), value("camera_name").strip("/")
    if value("cameras"):  # several cameras, one sam3 node
        cameras = _sam3_module()._names("cameras", value("cameras"))
        serials = _sam3_module()._names("serial_numbers", value("serial_numbers")) if value("serial_numbers") else []
        if serials and len(serials) != len(cameras):
            raise ValueError(f"serial_numbers {serials} must name one device per camera {cameras}")
        actions = [action for name, serial in zip(cameras, serials or [""] * len(cameras))
                   for action in _camera(camera_namespace, name, serial)]
        arguments = {"params_file": _cameras_params_file(context, camera_namespace, cameras),
                     **_fixed_frame(context, cameras[0])}
    else:
        actions = _camera(camera_namespace, camera_name)
        arguments = {**_streams(camera_namespace, camera_name), **_fixed_frame(context, camera_name)}
    actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(_sam3_launch()),
                                            launch_arguments=arguments.items()))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("camera_namespace", default_value="camera", description="realsense camera_namespace"),
        DeclareLaunchArgument("camera_name", default_value="camera", description="realsense camera_name"),
        DeclareLaunchArgument("serial_numbers", default_value="",
                              description="with cameras: each camera's device serial number, in order, e.g. "
                                          "\"['123422070001', '123422070002']\" (empty: any devices)"),
        *_sam3_arguments(),
        OpaqueFunction(function=_launch_setup),
    ])
