"""A fleet worker: a plain class that ``ray_job`` turns into a Ray actor, one per GPU or CPU slot."""
from __future__ import annotations

import os
import socket
import threading
from typing import Any

from ..core.config import PipelineConfig
from ..runner import RunSummary
from .inputs import FleetInput
from .label import LabelSpec, StopRequested, label_input


class LabelWorker:
    """The model, loaded once, and the inputs it is given, one at a time.

    Runs with two threads so that ``status`` and ``stop`` answer while ``label`` works.
    """

    def __init__(self, config: PipelineConfig, spec: LabelSpec, cpus: float):
        import torch

        from ..factory import load_pipeline

        if config.model.device == "cpu":
            torch.set_num_threads(max(1, int(cpus)))
        self.load_error = None  # told by describe(): Ray's own error would hide the reason
        try:
            self.loaded = load_pipeline(config)
        except Exception as err:  # CheckpointError, CUDA errors, ...
            self.load_error = f"{type(err).__name__}: {err}"
        self.spec = spec
        self._status: dict[str, Any] = {"input": None}
        self._stop = threading.Event()

    def describe(self) -> dict[str, Any]:
        where = {"node": socket.gethostname(), "pid": os.getpid()}
        if self.load_error:
            return {**where, "error": self.load_error}
        return {**where, "device": str(self.loaded.pipeline.device), "model": self.loaded.description}

    def label(self, item: FleetInput) -> dict[str, Any]:
        def on_frame(run: RunSummary) -> None:
            self._status = {"input": item.name, "frames": run.frames, "total": run.total}
            if self._stop.is_set():
                raise StopRequested()

        if self.load_error:
            return {"status": "failed", "error": f"the worker could not load the model: {self.load_error}"}
        self._status = {"input": item.name, "frames": 0, "total": None}
        try:
            return label_input(self.loaded, self.spec, item, on_frame)
        finally:
            self._status = {"input": None}

    def status(self) -> dict[str, Any]:
        return self._status

    def stop(self) -> None:
        self._stop.set()
