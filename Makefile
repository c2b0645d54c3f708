# Two commands do all the setup (see README): `make demo` and `make test`.
# Both create .venv on first use: torch and torchvision as a matching PyPI pair, then this package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.* torchvision==0.29.*
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sam3-ros demo --output out/demo

test: $(STAMP)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) out
