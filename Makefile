# Two commands do all the setup (see README): `make demo` and `make test`.
# Both create .venv on first use: torch and torchvision as a matching PyPI pair, then this package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.* torchvision==0.29.*
STAMP := $(VENV)/.installed

ROS2_STAMP := .ros2/install/.sam3_ros_underlay

.PHONY: demo test install ros2 clean

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

demo: $(STAMP)
	$(BIN)/sam3-ros demo --output out/demo

test: $(STAMP) ros2
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) out .ros2
