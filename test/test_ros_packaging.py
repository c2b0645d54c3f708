"""The repository builds as two ROS 2 packages: sam3_ros (ament_python) and sam3_ros_interfaces."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

catkin_pkg = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg (test extra) parses package.xml")

REPO = Path(__file__).resolve().parents[1]


def manifest(path: Path):
    package = catkin_pkg.parse_package(str(path))
    package.validate()
    return package


def names(deps):
    return {d.name for d in deps}


def test_node_package_is_ament_python_and_depends_on_the_interfaces():
    node = manifest(REPO / "package.xml")
    assert node.name == "sam3_ros" and node.package_format == 3
    assert node.get_build_type() == "ament_python"
    runtime = names(node.exec_depends) | names(node.build_depends)
    assert {"sam3_ros_interfaces", "rclpy", "vision_msgs", "diagnostic_msgs",
            "visualization_msgs", "lifecycle_msgs", "tf2_ros"} <= runtime
    assert "message_filters" not in runtime  # the node pairs its inputs itself (ros/stamp_sync.py)


def test_interfaces_package_generates_every_definition_with_its_dependencies():
    interfaces = manifest(REPO / "interfaces" / "package.xml")
    assert interfaces.name == "sam3_ros_interfaces" and interfaces.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in {g.name for g in interfaces.member_of_groups}
    used = set()
    for path in [*REPO.glob("msg/*.msg"), *REPO.glob("srv/*.srv")]:
        used |= set(re.findall(r"^\s*([a-z_]+)/\w+", path.read_text(), flags=re.M))
    assert used <= names(interfaces.build_depends) | names(interfaces.exec_depends)
    cmake = (REPO / "interfaces" / "CMakeLists.txt").read_text()
    assert 'msg/*.msg' in cmake and 'srv/*.srv' in cmake and "rosidl_generate_interfaces" in cmake
    for dep in used:
        assert f"find_package({dep} REQUIRED)" in cmake


def test_versions_agree():
    from setuptools import setup  # noqa: F401  (setup.py parses without running)

    version = re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    assert manifest(REPO / "package.xml").version == version == manifest(REPO / "interfaces" / "package.xml").version


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon is not installed (CI installs python3-colcon-ros)")
def test_colcon_discovers_both_packages_with_their_build_types():
    out = subprocess.run(["colcon", "list", "--paths", ".", "interfaces"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    found = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert found == {"sam3_ros": "(ros.ament_python)", "sam3_ros_interfaces": "(ros.ament_cmake)"}
