"""Which ROS 2 the real-runtime tests run on, and that it is one distribution, not a mix.

`make test` runs the node tests twice: on the PyPI Jazzy underlay (.venv, rclpy 7.1) and on the
PyPI Kilted one (.venv-kilted, rclpy 9.1, with .venv's torch and transformers hard-linked in; see
tools/ros2_underlay.py). These tests check, in whichever runtime runs them, that this process and
the node process it starts load that venv's rclpy and rcl, and no module of another venv.
"""
from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import pytest

from ros_runtime import REPO, SKIP_REASON, NodeProcess

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

PREFIX = Path(sys.prefix).resolve()
# The rclpy release each PyPI underlay pins (tools/ros2_underlay.py).
RCLPY_SERIES = {REPO / ".venv": "7.1.", REPO / ".venv-kilted": "9.1."}
OUR_VENVS = [venv for venv in RCLPY_SERIES if venv.is_dir()]


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def _needs_pypi_underlay() -> None:
    if PREFIX not in RCLPY_SERIES:
        pytest.skip(f"rclpy comes from a sourced ROS 2, not from a PyPI underlay of this repository ({PREFIX})")


def test_rclpy_is_the_release_this_venv_pins():
    _needs_pypi_underlay()
    import rclpy

    assert _inside(rclpy.__file__, PREFIX), rclpy.__file__
    assert importlib.metadata.version("ros-rclpy").startswith(RCLPY_SERIES[PREFIX])


def test_no_module_comes_from_another_venv():
    _needs_pypi_underlay()
    import rclpy.action  # noqa: F401
    import rclpy.lifecycle  # noqa: F401
    import sam3_ros.ros.node  # noqa: F401  (the node module: rclpy, messages, torch, transformers)
    import vision_msgs.msg  # noqa: F401

    others = [venv for venv in OUR_VENVS if venv.resolve() != PREFIX]
    if not others:
        pytest.skip("no other ROS 2 venv of this repository exists yet to leak modules from")
    leaked = sorted(name for name, module in list(sys.modules.items())
                    if getattr(module, "__file__", None) and any(_inside(module.__file__, o) for o in others))
    assert leaked == []


def test_the_node_process_loads_this_venvs_rcl():
    """The node under test runs the same distribution: the librcl it maps is this venv's."""
    _needs_pypi_underlay()
    with NodeProcess("sam3_runtime_identity") as node:
        maps = Path(f"/proc/{node.process.pid}/maps")
        deadline, rcl = time.monotonic() + 60.0, set()
        while not rcl and time.monotonic() < deadline and node.alive:
            mapped = {line.split()[-1] for line in maps.read_text().splitlines() if line.strip()}
            rcl = {path for path in mapped if path.endswith("/librcl.so")}
            time.sleep(0.2)
        assert rcl, node.output()[-2000:]
        assert all(_inside(path, PREFIX) for path in rcl), rcl
