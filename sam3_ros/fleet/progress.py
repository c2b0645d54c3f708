"""The terminal view of a fleet job: one overall bar and one status line per worker (stderr)."""
from __future__ import annotations

from typing import Any

from tqdm import tqdm


class FleetProgress:
    def __init__(self, inputs: int, workers: int, enabled: bool = True):
        self.bar = tqdm(total=inputs, unit="input", desc="inputs", position=0, disable=not enabled, leave=True)
        self.lines = [tqdm(total=0, bar_format="{desc}", position=i + 1, disable=not enabled, leave=False)
                      for i in range(workers)]

    def update(self, totals: dict[str, Any], workers: list[dict[str, Any]]) -> None:
        self.bar.n = totals["done"] + totals["skipped"] + totals["failed"] + totals["interrupted"]
        self.bar.set_postfix_str(f"{totals['frames_processed']} frames, {totals['frames_per_second']:.1f} fps, "
                                 f"{totals['failed']} failed", refresh=False)
        self.bar.refresh()
        for line, worker in zip(self.lines, workers):
            line.set_description_str(worker_line(worker))

    def close(self) -> None:
        for line in self.lines:
            line.close()
        self.bar.close()


def worker_line(worker: dict[str, Any]) -> str:
    head = f"worker {worker['index']} ({worker.get('device', '?')}, {worker.get('ended', 0)} ended)"
    if worker.get("input"):
        total = worker.get("total")
        return f"{head}: {worker['input']} {worker.get('frames', 0)}/{total if total else '?'} frames"
    return f"{head}: {worker.get('state', 'idle')}"
