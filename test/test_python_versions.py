"""Every module of sam3_ros compiles and imports on the Python running the tests.

`make test` runs this file, with the core, CLI, offline-runner and node-logic tests, on Python 3.11
(.venv) and on Python 3.10 (.venv-py310, the Python of ROS 2 Humble; see tools/py310_venv.py). A
module may only fail to import for want of an optional runtime named in OPTIONAL (rclpy and the ROS
message packages a sourced ROS 2 provides, TensorRT, ONNX Runtime, Ray); any other import error,
and any syntax this Python does not have, fails.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sam3_ros"
# Top-level modules whose absence is a missing optional runtime, not a bug.
OPTIONAL = {"rclpy", "sam3_ros_interfaces", "vision_msgs", "std_msgs", "sensor_msgs", "geometry_msgs",
            "diagnostic_msgs", "visualization_msgs", "lifecycle_msgs", "rcl_interfaces", "builtin_interfaces",
            "action_msgs", "unique_identifier_msgs", "tf2_ros", "tensorrt", "onnxruntime", "onnx", "onnxscript",
            "ray", "pycuda", "cuda"}
MODULES = sorted(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                 for path in PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_check():
    assert "sam3_ros.core.pipeline" in MODULES and "sam3_ros.ros.node" in MODULES and len(MODULES) > 40


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_compiles(path):
    compile(path.read_text(), str(path), "exec", dont_inherit=True)


@pytest.mark.parametrize("name", MODULES)
def test_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing in OPTIONAL:
            pytest.skip(f"{name} needs {missing}, an optional runtime not installed in this Python")
        raise


def test_runs_on_a_python_the_package_declares():
    setup = (REPO / "setup.py").read_text()
    assert 'python_requires=">=3.10"' in setup
    assert sys.version_info >= (3, 10)
