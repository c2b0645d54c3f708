"""benchmarks/bench_cameras.py at its smallest, so that the script cannot rot unnoticed: every mode
runs and reports (the figures themselves are the benchmark's business, not a test's)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_cameras.py"

pytest.importorskip("torch")
pytest.importorskip("transformers")


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "cameras.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--frames", "1", "--warmup", "1", "--threads", "1",
                           "--json", str(out), *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "frames/s" in proc.stdout
    return report


def test_one_process_batched_and_one_camera_at_a_time(tmp_path):
    report = _run(tmp_path, "--no-subprocess", "--models", "tiny", "standin", "--cameras", "1", "2")
    rows = [(r["model"], r["cameras"], r["mode"]) for r in report["rows"]]
    assert rows == [(m, n, mode) for m in ("tiny", "standin")
                    for n, mode in ((1, "single"), (2, "sequential"), (2, "batched"))]
    for row in report["rows"]:
        assert row["frames"] == row["cameras"] and row["fps"] > 0 and row["processes"] == 1
        assert row["peak_rss_mib"] >= row["torch_baseline_rss_mib"] > 0
        assert row["rss_vs_one_camera"] > 0
        assert "total" in row["round_stage_ms"]
    assert all(r["fps_vs_one_at_a_time"] for r in report["rows"] if r["cameras"] == 2)
    assert any("target >= 1.2x" in t for t in report["targets"])
    assert report["environment"]["separate_processes"] is False


def test_separate_processes_are_started_together_and_their_memory_summed(tmp_path):
    report = _run(tmp_path, "--models", "standin", "--cameras", "2", "--modes", "processes")
    (row,) = report["rows"]
    assert (row["cameras"], row["mode"], row["processes"], row["frames"]) == (2, "processes", 2, 2)
    parts = row["per_process"]
    assert row["peak_rss_mib"] == pytest.approx(sum(p["memory_mib"]["end"]["peak_rss_mib"] for p in parts))
    # every worker had warmed up before any started measuring (each waits for "go")
    assert max(p["ready_at"] for p in parts) <= min(p["wall_start"] for p in parts)
