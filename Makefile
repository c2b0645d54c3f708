# Two commands do all the setup (see README): `make demo` and `make test`.
# Both create .venv on first use: torch and torchvision as a matching PyPI pair, then this package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.* torchvision==0.29.*
STAMP := $(VENV)/.installed

ROS2_STAMP := .ros2/install/.sam3_ros_underlay
# The second ROS 2 runtime (Kilted, rclpy 9.1) and Python 3.10 (ROS 2 Humble's): see README,
# "Which ROS 2 and which Jetson". Each is built once and reused through a hash marker.
KILTED_PYTHON := .venv-kilted/bin/python
KILTED_STAMP := .ros2-kilted/install/.sam3_ros_underlay
KILTED_TESTS := test/test_ros2_runtime_identity.py test/test_ros2_node.py test/test_ros2_manipulation.py \
	test/test_ros2_readme_claims.py
PY310_PYTHON := .venv-py310/bin/python
PY310_STAMP := .venv-py310/.installed
# What catches a Python-version problem: every module compiled and imported, the core, the CLI and
# offline runner, the node's rclpy-free logic, the tiny real model.
PY310_TESTS := test/test_python_versions.py test/test_core_config.py test/test_core_masks.py \
	test/test_core_prompts.py test/test_core_tracking.py test/test_cli_run.py test/test_runner_faults.py \
	test/test_ros_node_logic.py test/test_ros_controller.py test/test_manipulation_core.py \
	test/test_manipulation_controller.py test/test_pipeline_tiny.py
# A Python started by the ROS wheels' bootstrapper passes this on; another venv's Python must not inherit it.
CLEAN_ROS_ENV := env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE

.PHONY: demo test install ros2 ros2-kilted py310 test-kilted test-py310 clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# The real ROS 2 runtime for the node tests: PyPI Jazzy wheels in .venv, then our interface
# packages colcon-built into .ros2/install. A second run checks a hash and costs about a second.
ros2: $(STAMP)
	$(BIN)/python tools/ros2_underlay.py

# The same from PyPI's Kilted wheels, in .venv-kilted (.venv's torch and transformers hard-linked in)
# and .ros2-kilted/install.
ros2-kilted: $(STAMP)
	$(BIN)/python tools/ros2_underlay.py --distro kilted

# .venv-py310: torch (cp310, .venv's CUDA libraries hard-linked) and this package on Python 3.10.
py310: $(STAMP)
	$(BIN)/python tools/py310_venv.py

test-kilted: ros2-kilted
	@if [ -f $(KILTED_STAMP) ]; then \
	  echo "== the real-node tests on ROS 2 Kilted (rclpy 9.1, .venv-kilted)"; \
	  $(CLEAN_ROS_ENV) $(KILTED_PYTHON) -m pytest -q $(KILTED_TESTS); \
	else echo "== no ROS 2 Kilted runtime here (it needs Python 3.11): the Kilted node tests are skipped"; fi

test-py310: py310
	@if [ -f $(PY310_STAMP) ]; then \
	  echo "== the ROS-free tests on Python 3.10 (.venv-py310)"; \
	  $(CLEAN_ROS_ENV) $(PY310_PYTHON) -m pytest -q $(PY310_TESTS); \
	else echo "== no Python 3.10 here: the Python 3.10 tests are skipped"; fi

demo: $(STAMP)
	$(BIN)/sam3-ros demo --output out/demo

test: $(STAMP) ros2
	$(BIN)/pytest -q
	@$(MAKE) --no-print-directory test-py310 test-kilted

clean:
	rm -rf $(VENV) out .ros2 .venv-kilted .ros2-kilted .venv-py310
