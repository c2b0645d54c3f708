"""Start the sam3 lifecycle node, configure and activate it (autostart), and optionally RViz.

    ros2 launch sam3_ros sam3.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info depth:=/camera/aligned_depth/image_raw \
        prompts:="yellow forklift,person" checkpoint:=$HOME/models/sam3 rviz:=true

Several cameras on one model (each NAME subscribes NAME/image, NAME/camera_info and, with
NAME.depth: true, NAME/depth; outputs under /sam3/NAME/), remapped to the drivers' topics by the
params file's `remappings` (read here; see config/cameras_example.yaml):

    ros2 launch sam3_ros sam3.launch.py cameras:="[head, wrist]" \
        params_file:=$(ros2 pkg prefix sam3_ros)/share/sam3_ros/config/cameras_example.yaml

With rviz:=true, RViz's fixed frame is fixed_frame, else target_frame, else the camera frame read from
the first depth (or image) message; a frame no TF message names gets a leaf static transform so that
RViz knows it (sam3_ros/ros/rviz_start.py).

`ros2 launch sam3_ros sam3.launch.py --show-args` lists the arguments. The parameter file is read
here and handed to the node as values, so its `sam3:` section applies under any `namespace`.
"""
import os
import sys

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "sam3_ros"
EXECUTABLE = "sam3_node"
NODE_NAME = "sam3"

ARGUMENTS = {  # name -> (default, description); an empty default leaves the value to params_file
    "image": ("image", "image topic (sensor_msgs/Image, or CompressedImage if it ends in /compressed)"),
    "camera_info": ("camera_info", "camera info topic of the image, needed for 3D; none: no camera info"),
    "depth": ("", "depth image aligned to the image (16UC1 mm or 32FC1 m); empty or none: no 3D"),
    "prompts": ("", 'comma-separated noun phrases to track from the start, e.g. "yellow forklift,person"'),
    "cameras": ("", 'camera names, e.g. "[head, wrist]": one node and model serve them all, each on NAME/image, '
                    "NAME/camera_info (NAME/depth), outputs under ~/NAME/ (empty: params_file, else one camera on "
                    "image)"),
    "backend": ("", "torch | onnxruntime | tensorrt (empty: params_file, default torch)"),
    "checkpoint": ("", "local facebook/sam3 checkpoint directory (empty: params_file)"),
    "engines_dir": ("", "folder of exported ONNX files / TensorRT engines (empty: params_file)"),
    "tiny": ("", "true: tiny random-init model, no weights needed, meaningless outputs (tests only)"),
    "device": ("", "auto | cpu | cuda | cuda:N (empty: params_file, default auto)"),
    "target_frame": ("", "TF frame for 3D positions (empty: params_file, default the camera frame)"),
    "namespace": ("", "namespace of the node; its topics and services are <namespace>/sam3/..."),
    "autostart": ("true", "at start-up: configure the node, then activate it if configure succeeded "
                          "(later transitions are yours: ros2 lifecycle set)"),
    "rviz": ("false", "start rviz2 with config/sam3.rviz"),
    "fixed_frame": ("", "RViz fixed frame (empty: target_frame if set, else the frame_id of the first "
                        "depth image, or image without depth: RViz starts once it arrives)"),
    "use_sim_time": ("false", "use the /clock topic (bag playback, simulation)"),
    "log_level": ("info", "debug | info | warn | error | fatal"),
}
# Launch argument -> node parameter (sam3_ros/ros/params.py, sam3_ros/core/config.py).
PARAMETERS = {
    "image": "image_topic",
    "camera_info": "camera_info_topic",
    "depth": "depth_topic",
    "prompts": "prompts",
    "cameras": "cameras",
    "backend": "model.backend",
    "checkpoint": "model.checkpoint",
    "engines_dir": "model.engines_dir",
    "tiny": "model.tiny",
    "device": "model.device",
    "target_frame": "target_frame",
    "use_sim_time": "use_sim_time",
}
TOPIC_ARGUMENTS = ("image", "camera_info", "depth")  # always set: an empty topic disables that input


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return text.lower() == "true"


def _phrases(name: str, text: str) -> list:
    phrases = [p.strip() for p in text.split(",") if p.strip()]
    if not phrases:
        raise ValueError(f"launch argument {name} needs comma-separated noun phrases, got {text!r}")
    return phrases


def _optional_topic(name: str, text: str) -> str:
    """`none` disables an input: ros2 launch refuses an empty value (`camera_info:=`)."""
    return "" if text.lower() == "none" else text


def _names(name: str, text: str) -> list:
    """`[head, wrist]` (YAML) or `head,wrist`."""
    names = yaml.safe_load(text) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"launch argument {name} needs camera names like [head, wrist], got {text!r}")
    return names


CONVERSIONS = {"tiny": _flag, "use_sim_time": _flag, "prompts": _phrases, "cameras": _names,
               "camera_info": _optional_topic, "depth": _optional_topic}  # others stay strings


def _parameter_overrides(argument) -> dict:
    """Node parameters from the launch arguments that were given (topics: always)."""
    values = {}
    for name, parameter in PARAMETERS.items():
        text = argument(name)
        if text or name in TOPIC_ARGUMENTS:
            values[parameter] = CONVERSIONS.get(name, lambda _, t: t)(name, text)
    return values


def _file_parameters(path: str) -> dict:
    """The ros__parameters of the params file's sections for this node ('sam3', '/sam3',
    '/<ns>/sam3' or '/**'), merged in file order. Empty lists are left out (launch_ros rejects them)."""
    with open(path) as file:
        sections = yaml.safe_load(file) or {}
    values = {}
    for key, section in sections.items():
        names_this_node = key == "/**" or str(key).rstrip("/").split("/")[-1] == NODE_NAME
        if names_this_node and isinstance(section, dict) and "ros__parameters" in section:
            values.update(section["ros__parameters"])
    if not values:
        raise ValueError(f"params_file {path} has no '{NODE_NAME}:' or '/**:' section with ros__parameters")
    return {name: value for name, value in values.items() if value != []}


def _remappings(path: str, file_parameters: dict) -> list:
    """The params file's `remappings` ("from:=to" strings, e.g. head/image:=/head_camera/color/image_raw),
    taken out of the node's parameters: this file applies them, the node never declares them."""
    given = file_parameters.pop("remappings", [])
    if not isinstance(given, list) or not all(isinstance(r, str) and ":=" in r for r in given):
        raise ValueError(f"params_file {path}: remappings must be a list of 'from:=to' strings, got {given!r}")
    return [tuple(part.strip() for part in r.split(":=", 1)) for r in given]


def _rviz_command(argument, file_parameters: dict, cameras: list, remappings: list) -> list:
    """rviz2 through sam3_ros.ros.rviz_start: the fixed frame is fixed_frame, else target_frame (launch
    argument, else params_file), else learnt from the first message on the depth topic (the image topic
    without depth), the frame the node's 3D outputs are in: with cameras, the first camera's (after the
    remappings). With cameras, each camera's overlay, IDs, markers and points are shown (--cameras)."""
    config = os.path.join(get_package_share_directory(PACKAGE), "config", "sam3.rviz")
    command = [sys.executable, "-m", "sam3_ros.ros.rviz_start", "--config", config,
               "--namespace", argument("namespace")]
    frame = argument("fixed_frame") or argument("target_frame") or str(file_parameters.get("target_frame") or "")
    if frame:
        command += ["--fixed-frame", frame]
    elif cameras:
        first = cameras[0]
        topic = f"{first}/depth" if str(file_parameters.get(f"{first}.depth", "")).lower() == "true" \
            else f"{first}/image"
        command += ["--frame-from", dict(remappings).get(topic, topic)]
    else:
        command += ["--frame-from", _optional_topic("depth", argument("depth")) or argument("image")]
    if cameras:
        command += ["--cameras", *cameras]
    if _flag("use_sim_time", argument("use_sim_time")):
        command.append("--use-sim-time")
    return command


def _launch_setup(context):
    def argument(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    file_parameters = _file_parameters(argument("params_file"))
    remappings = _remappings(argument("params_file"), file_parameters)
    overrides = _parameter_overrides(argument)
    cameras = overrides.get("cameras") or file_parameters.get("cameras") or []
    node = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME, namespace=argument("namespace"),
        parameters=[file_parameters, overrides], remappings=remappings,
        arguments=["--ros-args", "--log-level", argument("log_level")],
        output="screen", emulate_tty=True,
    )
    actions = [node]
    if _flag("autostart", argument("autostart")):
        def change_state(transition_id):
            return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                               transition_id=transition_id))
        # configuring -> inactive happens only when configure succeeded (a failure goes back to
        # unconfigured), so activate never follows a failed configure or a later deactivate. It acts
        # once, at start-up: a later configure by hand (deactivate, cleanup, configure to apply new
        # parameters) stays inactive until you activate it.
        actions += [
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
                entities=[change_state(Transition.TRANSITION_ACTIVATE)], handle_once=True)),
            change_state(Transition.TRANSITION_CONFIGURE),
        ]
    if _flag("rviz", argument("rviz")):
        actions.append(ExecuteProcess(cmd=_rviz_command(argument, file_parameters, cameras, remappings), name="rviz2",
                                      output="screen", emulate_tty=True))
    return actions


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "sam3.yaml")
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, (default, description) in ARGUMENTS.items()),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="ROS 2 parameter file; launch arguments override it"),
        OpaqueFunction(function=_launch_setup),
    ])
