"""Build (or reuse) .venv-py310: this package on Python 3.10, the Python of ROS 2 Humble.

    .venv/bin/python tools/py310_venv.py        # `make py310` runs this; `make test` too

Finds a Python 3.10: $PYTHON310, else `python3.10` on PATH, else pyenv's versions
($PYENV_ROOT or ~/.pyenv). Where there is none it says so and exits 0 without a venv, and
`make test` says that the Python 3.10 tests are skipped.

The venv holds torch and torchvision at the versions .venv has (cp310 wheels from PyPI), this
package in editable mode, and what the Python 3.10 tests need. torch's CUDA libraries (the
nvidia-* and cuda-toolkit wheels: `py3-none`, the same files for every Python, about 3 GB) are
hard-linked from .venv instead of downloaded again. A marker holding the hash of every input makes
a second run a no-op. Nothing here is fetched from anywhere but PyPI; the venv is git-ignored.

Must run on .venv's Python (it reads .venv's torch version and CUDA wheels).
"""
from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from ros2_underlay import link_tree  # same folder: run as python tools/py310_venv.py

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-py310"
MARKER = VENV / ".installed"
# What the Python 3.10 tests import beyond the package: pytest, MCAP readers, ONNX (export checks);
# the rest of `.[test]` (Ray, ONNX Runtime) is left out.
TEST_REQUIREMENTS = ["pytest>=8,<9", "mcap>=1.1", "mcap-ros2-support>=0.5", "onnx>=1.16", "onnxscript>=0.1"]


def say(message: str) -> None:
    print(f"[py310] {message}", flush=True)


def find_python310() -> str | None:
    candidates = [os.environ.get("PYTHON310", ""), shutil.which("python3.10") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv / "versions" / "3.10*" / "bin" / "python3.10")), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 10))"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def shared_cuda_distributions() -> list[importlib.metadata.Distribution]:
    """.venv's distributions whose files do not depend on the Python version: every wheel tag
    `py3-none-<platform>` or `py2-none-any` (the CUDA libraries torch loads), never pure-Python
    packages whose versions pip would pick differently for Python 3.10."""
    site = sysconfig.get_paths()["purelib"]
    shared = []
    for dist in importlib.metadata.distributions(path=[site]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not (name.startswith("nvidia-") or name.startswith("cuda-")):
            continue
        wheel = dist.read_text("WHEEL") or ""
        tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
        if tags and all(tag.split("-")[0] in ("py3", "py2", "py2.py3") and tag.split("-")[1] == "none"
                        for tag in tags):
            shared.append(dist)
    return shared


def inputs_hash(python310: str) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update((REPO / "setup.py").read_bytes())
    digest.update(python310.encode())
    digest.update(f"torch=={importlib.metadata.version('torch')}".encode())
    for dist in sorted(shared_cuda_distributions(), key=lambda d: d.metadata["Name"]):
        digest.update(f"{dist.metadata['Name']}=={dist.version}".encode())
    return digest.hexdigest()


def run(command: list[str], failure: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(failure)


def build(python310: str) -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    run([python310, "-m", "venv", str(VENV)], f"could not create {VENV} with {python310}")
    python = VENV / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    source_site = Path(sysconfig.get_paths()["purelib"])
    shared = shared_cuda_distributions()
    for dist in shared:
        tops = {Path(str(f)).parts[0] for f in (dist.files or []) if not str(f).startswith("..")}
        tops.add(Path(dist._path).name)  # type: ignore[attr-defined]  # the .dist-info folder
        for top in sorted(tops):
            if top != "__pycache__" and (source_site / top).exists():
                link_tree(source_site / top, site / top)
    say(f"{len(shared)} CUDA library wheels shared from .venv by hard links")
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("torch", "torchvision")]
    say(f"installing {' '.join(pins)} (cp310) and this package")
    run([str(python), "-m", "pip", "install", "-q", *pins, "-e", str(REPO), *TEST_REQUIREMENTS],
        "pip could not install torch and sam3_ros into the Python 3.10 venv")


def main() -> int:
    python310 = find_python310()
    if python310 is None:
        say("no Python 3.10 found ($PYTHON310, python3.10, pyenv): the Python 3.10 tests are skipped")
        shutil.rmtree(VENV, ignore_errors=True)  # a stale venv must not run them either
        return 0
    started = time.monotonic()
    expected = inputs_hash(python310)
    if MARKER.is_file() and MARKER.read_text().strip() == expected:
        say(f"up to date ({VENV.name}), reused")
        return 0
    say(f"building {VENV.name} with {python310}")
    build(python310)
    MARKER.write_text(expected + "\n")
    say(f"ready in {time.monotonic() - started:.0f} s: {VENV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
