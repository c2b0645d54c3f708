"""One input of a fleet job on an already loaded model, through the single-input runner.

The outputs equal those of ``sam3-ros run --input`` with the same weights and settings: the same
``run_offline`` writes them, on a fresh pipeline (no tracks, IDs from 1) for every input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.prompts import Concept
from ..factory import LoadedPipeline
from ..runner import RunSummary, run_offline
from .inputs import FleetInput
from .outputs import check_outputs, clear_outputs, input_settings, mark_complete

MAX_WARNINGS = 5  # distinct warnings kept per input in the summary


class StopRequested(Exception):
    """The job is stopping (Ctrl-C): the input in progress is left partial, to be redone."""


@dataclass(frozen=True)
class LabelSpec:
    """What is the same for every input of a job."""

    concepts: list[Concept]
    output_root: str
    settings: dict  # outputs.job_settings(...)
    max_frames: int | None = None
    overlay: bool = True

    def output_dir(self, item: FleetInput) -> Path:
        return Path(self.output_root) / item.name


def label_input(loaded: LoadedPipeline, spec: LabelSpec, item: FleetInput,
                on_frame: Callable[[RunSummary], None] | None = None) -> dict[str, Any]:
    """Skip ``item`` if its outputs are complete, else (re)do it. Never raises for a bad input.

    Returns its summary entry: status (skipped, done, failed, interrupted), frames, instances,
    tracks, seconds, error, warnings.
    """
    output_dir = spec.output_dir(item)
    settings = input_settings(spec.settings, item)
    state = check_outputs(output_dir, settings)
    if state.complete:
        return {"status": "skipped", **state.counts, "error": None, "warnings": []}
    if state.started:
        clear_outputs(output_dir)
    start = time.perf_counter()
    seen: list[RunSummary] = []  # the run so far, for the counts when it raises

    def frame_done(run: RunSummary) -> None:
        seen[:] = [run]
        if on_frame is not None:
            on_frame(run)

    try:
        run = run_offline(loaded.fresh(), spec.concepts, item.path, output_dir, image_topic=item.image_topic,
                          max_frames=spec.max_frames, overlay=spec.overlay, progress=False,
                          model_description=loaded.description, on_frame=frame_done)
    except StopRequested:
        return _outcome("interrupted", seen[0] if seen else None, time.perf_counter() - start,
                        "stopped by the user; redone on re-run")
    except Exception as err:  # a bad input fails alone, whatever it raised
        return _outcome("failed", seen[0] if seen else None, time.perf_counter() - start,
                        f"{type(err).__name__}: {err}")
    outcome = _outcome("failed" if run.error else "done", run, run.seconds, run.error)
    if not run.error:
        mark_complete(output_dir, settings, {k: outcome[k] for k in ("frames", "instances", "tracks", "seconds")})
    return outcome


def _outcome(status: str, run: RunSummary | None, seconds: float, error: str | None) -> dict[str, Any]:
    return {
        "status": status,
        "frames": run.frames if run else 0,
        "instances": run.instances if run else 0,
        "tracks": len(run.track_ids) if run else 0,
        "seconds": round(seconds, 3),
        "error": error,
        "warnings": list(dict.fromkeys(run.warnings))[:MAX_WARNINGS] if run else [],
    }
