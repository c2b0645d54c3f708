"""summary.json: per input its status and counts, the job's totals and the workers' status.

Rewritten atomically whenever an input starts or ends and on every progress tick, so it can be
watched while the job runs. Statuses: pending, running, done, skipped (complete from an earlier
run), failed (the error says why; outputs so far are kept), interrupted (Ctrl-C; redone on re-run).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .inputs import FleetInput
from .outputs import write_json_atomic

SUMMARY = "summary.json"
STATUSES = ("pending", "running", "done", "skipped", "failed", "interrupted")


class FleetSummary:
    def __init__(self, output_root: str | Path, inputs: list[FleetInput], job: dict[str, Any]):
        self.path = Path(output_root) / SUMMARY
        self.job = job  # how the job was asked for (inputs, prompts, workers, ...)
        self.inputs: dict[str, dict[str, Any]] = {
            item.name: {"name": item.name, "input": item.path, "image_topic": item.image_topic,
                        "output": str(Path(output_root) / item.name), "status": "pending", "worker": None,
                        "frames": 0, "instances": 0, "tracks": 0, "seconds": 0.0, "error": None, "warnings": []}
            for item in inputs}
        self.workers: list[dict[str, Any]] = []
        self.started_at = _now()
        self._job_start = self._start = time.perf_counter()  # _start: when the workers were ready
        self.finished = False
        self.interrupted = False

    def workers_ready(self) -> None:
        self._start = time.perf_counter()

    def running(self, name: str, worker: int) -> None:
        self.inputs[name].update(status="running", worker=worker)

    def finish(self, name: str, outcome: dict[str, Any]) -> None:
        self.inputs[name].update(outcome)

    def names(self, status: str) -> list[str]:
        return [name for name, entry in self.inputs.items() if entry["status"] == status]

    def frames_processed(self) -> int:
        """Frames this run worked on: ended inputs (not skipped ones) and those in progress."""
        ended = sum(e["frames"] for e in self.inputs.values() if e["status"] in ("done", "failed", "interrupted"))
        return ended + sum(w.get("frames", 0) for w in self.workers if w.get("input"))

    def totals(self) -> dict[str, Any]:
        now = time.perf_counter()
        elapsed = now - self._start
        processed = self.frames_processed()
        counts = {status: len(self.names(status)) for status in STATUSES}
        return {
            "inputs": len(self.inputs), **counts,
            "frames_processed": processed,
            "frames_skipped": sum(e["frames"] for e in self.inputs.values() if e["status"] == "skipped"),
            "instances": sum(e["instances"] for e in self.inputs.values()),
            "seconds": round(now - self._job_start, 3),
            "labelling_seconds": round(elapsed, 3),  # since the workers had loaded the model
            "frames_per_second": round(processed / elapsed, 3) if elapsed > 0 else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started_at, "updated": _now(), "finished": self.finished,
                "interrupted": self.interrupted, "job": self.job, "totals": self.totals(),
                "workers": self.workers, "inputs": list(self.inputs.values())}

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.to_json())

    def describe(self) -> str:
        totals = self.totals()
        text = (f"{totals['done']} done, {totals['skipped']} skipped (already complete), {totals['failed']} failed"
                f" of {totals['inputs']} inputs; {totals['frames_processed']} frames at "
                f"{totals['frames_per_second']:.1f} fps; summary in {self.path}")
        failures = [f"  {name}: {self.inputs[name]['error']}" for name in self.names("failed")]
        return "\n".join([text, *failures])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
