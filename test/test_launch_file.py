"""The launch files and the RViz config, checked without ROS 2: the launch files are parsed with
ast (never imported: they import launch_ros), node.py too (it imports rclpy)."""
import ast
from pathlib import Path

import pytest
import yaml

from sam3_ros.ros.params import all_parameters

REPO = Path(__file__).resolve().parents[1]
SAM3_LAUNCH = REPO / "launch" / "sam3.launch.py"
REALSENSE_LAUNCH = REPO / "launch" / "sam3_realsense.launch.py"
NODE = REPO / "sam3_ros" / "ros" / "node.py"

SAM3_ARGUMENTS = {"image", "camera_info", "depth", "prompts", "backend", "checkpoint", "engines_dir", "tiny",
                  "device", "namespace", "params_file", "target_frame", "rviz", "autostart", "use_sim_time",
                  "log_level", "fixed_frame"}
EXPECTED_PARAMETERS = {  # launch argument -> the node parameter it must set
    "image": "image_topic", "camera_info": "camera_info_topic", "depth": "depth_topic", "prompts": "prompts",
    "backend": "model.backend", "checkpoint": "model.checkpoint", "engines_dir": "model.engines_dir",
    "tiny": "model.tiny", "device": "model.device", "target_frame": "target_frame",
}
ROS_PARAMETERS = {"use_sim_time"}  # declared by every ROS 2 node, not by ours


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def module_dict(module: ast.Module, name: str) -> ast.Dict:
    for statement in module.body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == name for t in statement.targets):
            assert isinstance(statement.value, ast.Dict), f"{name} is not a dict literal"
            return statement.value
    raise AssertionError(f"no module-level {name} = {{...}}")


def string_constants(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def declared_arguments(module: ast.Module) -> set[str]:
    """Keys of ARGUMENTS (declared in a loop) and the names of literal DeclareLaunchArgument calls."""
    names = {ast.literal_eval(k) for k in module_dict(module, "ARGUMENTS").keys}
    for call in ast.walk(module):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument" \
                and call.args and isinstance(call.args[0], ast.Constant):
            names.add(call.args[0].value)
    return names


def node_name() -> str:
    """The name node.py passes to LifecycleNode.__init__ (super().__init__("sam3", ...))."""
    for call in ast.walk(tree(NODE)):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "__init__" \
                and isinstance(call.func.value, ast.Call) and getattr(call.func.value.func, "id", None) == "super" \
                and call.args:
            return call.args[0].value
    raise AssertionError("node.py: no super().__init__(name)")


def node_outputs() -> dict[str, str]:
    """node.py's OUTPUTS as {key: absolute topic}, "~/x" resolved under the node's name."""
    outputs = module_dict(tree(NODE), "OUTPUTS")
    return {ast.literal_eval(key): value.elts[0].value.replace("~", "/" + node_name(), 1)
            for key, value in zip(outputs.keys, outputs.values)}


def test_launch_files_parse_and_define_a_launch_description():
    for path in sorted((REPO / "launch").glob("*.launch.py")):
        functions = {f.name for f in tree(path).body if isinstance(f, ast.FunctionDef)}
        assert "generate_launch_description" in functions, path.name


def test_sam3_launch_declares_every_argument():
    assert SAM3_ARGUMENTS <= declared_arguments(tree(SAM3_LAUNCH))


def test_every_parameter_the_launch_file_sets_is_one_the_node_declares():
    module = tree(SAM3_LAUNCH)
    parameters = ast.literal_eval(module_dict(module, "PARAMETERS"))
    assert set(parameters) <= declared_arguments(module)
    assert set(parameters.values()) <= set(all_parameters()) | ROS_PARAMETERS
    assert EXPECTED_PARAMETERS.items() <= parameters.items()
    converted = {ast.literal_eval(k) for k in module_dict(module, "CONVERSIONS").keys}
    assert {"tiny", "prompts", "use_sim_time"} <= converted <= set(parameters)


def test_sam3_launch_starts_the_installed_executable_under_the_node_name():
    module = tree(SAM3_LAUNCH)
    constants = {t.id: s.value.value for s in module.body if isinstance(s, ast.Assign)
                 for t in s.targets if isinstance(s.value, ast.Constant)}
    assert constants["PACKAGE"] == "sam3_ros" and constants["NODE_NAME"] == node_name()
    assert f'"{constants["EXECUTABLE"]}={{PACKAGE}}.ros.node:main"' in (REPO / "setup.py").read_text()
    assert {"configuring", "inactive", "sam3.rviz", "sam3.yaml"} <= string_constants(module)


def test_realsense_launch_wires_the_aligned_streams_into_sam3_launch():
    module = tree(REALSENSE_LAUNCH)
    streams = ast.literal_eval(module_dict(module, "STREAMS"))
    assert streams == {"image": "color/image_raw", "camera_info": "color/camera_info",
                       "depth": "aligned_depth_to_color/image_raw"}
    assert set(streams) <= SAM3_ARGUMENTS
    assert ast.literal_eval(module_dict(module, "CAMERA_ARGUMENTS"))["align_depth.enable"] == "true"
    assert {"realsense2_camera", "rs_launch.py", "sam3.launch.py", "camera_namespace", "camera_name"} \
        <= string_constants(module)


@pytest.fixture(scope="module")
def rviz_displays():
    config = yaml.safe_load((REPO / "config" / "sam3.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"]
    return manager["Displays"]


def test_rviz_config_shows_the_overlay_id_image_markers_and_tf(rviz_displays):
    outputs = node_outputs()
    topics = {(d["Class"], d.get("Topic", {}).get("Value")) for d in rviz_displays}
    assert ("rviz_default_plugins/Image", outputs["overlay"]) in topics
    assert ("rviz_default_plugins/Image", outputs["id_image"]) in topics
    assert ("rviz_default_plugins/MarkerArray", outputs["markers"]) in topics
    assert ("rviz_default_plugins/TF", None) in topics
    assert outputs["overlay"] == "/sam3/overlay"  # the config assumes the node at /sam3
