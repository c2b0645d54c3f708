import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(scope="session")
def tiny():
    """The tiny random-init SAM 3 (real architecture), loaded once per test session."""
    from sam3_ros.model.loading import load_tiny

    return load_tiny(seed=0, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_components(tiny):
    from sam3_ros.backends.torch_backend import torch_components

    return torch_components(tiny)
