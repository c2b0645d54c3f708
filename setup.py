"""sam3_ros: pip-installable ROS-free core + CLI, and the ament_python package of the ROS node."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sam3_ros"
HERE = Path(__file__).parent


def data_files():
    """Files colcon installs into the ROS share directory (ignored by a plain pip install)."""
    share = f"share/{PACKAGE}"
    files = [("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
             (share, ["package.xml"])]
    for folder in ("launch", "config"):
        paths = sorted(str(p) for p in (HERE / folder).glob("*") if p.is_file())
        if paths:
            files.append((f"{share}/{folder}", [str(Path(p).relative_to(HERE)) for p in paths]))
    return files


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Open-vocabulary segmentation and persistent tracking with SAM 3 for ROS 2",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["msgdefs/*/*/*.msg", "msgdefs/*/*/*.srv"]},
    data_files=data_files(),
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "transformers>=5.0,<6",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "rosbags>=0.10",
        "tqdm>=4.60",
    ],
    extras_require={
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        # sam3-ros run --inputs; tested with ray 2.60.0 on Python 3.11 (about 240 MB installed)
        "fleet": ["ray>=2.60,<3"],
        "test": ["pytest>=8,<9",  # launch_testing 3.4 (full ROS runtime) fails under pytest 9
                  "onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1", "mcap>=1.1", "mcap-ros2-support>=0.5",
                 "catkin_pkg>=1.0", "ray>=2.60,<3"],
    },
    entry_points={
        "console_scripts": [
            f"sam3-ros={PACKAGE}.cli:main",
            f"sam3_node={PACKAGE}.ros.node:main",
            f"demo_camera={PACKAGE}.ros.demo_camera:main",
        ],
    },
    zip_safe=False,
)
