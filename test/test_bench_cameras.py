"""benchmarks/bench_cameras.py at its smallest, so that the script cannot rot unnoticed: every mode
runs and reports (the figures themselves are the benchmark's business, not a test's)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_cameras.py"

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cameras_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "cameras.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--frames", "1", "--warmup", "1", "--threads", "1",
                           "--json", str(out), *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "frames/s" in proc.stdout
    return report


def test_one_process_batched_and_one_camera_at_a_time(tmp_path):
    report = _run(tmp_path, "--no-subprocess", "--models", "tiny", "standin", "--cameras", "1", "2")  # one torch import
    rows = [(r["model"], r["cameras"], r["mode"]) for r in report["rows"]]
    assert rows == [(m, n, mode) for m in ("tiny", "standin")
                    for n, mode in ((1, "single"), (2, "sequential"), (2, "batched"))]
    for row in report["rows"]:
        assert row["frames"] == row["cameras"] and row["fps"] > 0 and row["processes"] == 1
        assert row["peak_rss_mib"] >= row["torch_baseline_rss_mib"] > 0
        assert row["rss_vs_one_camera"] > 0
        assert "total" in row["round_stage_ms"]
        assert {"vision", "detector", "tracker", "memory_encoder", "outside components", "round"} <= set(
            row["round_component_ms"])
    assert all(r["fps_vs_one_at_a_time"] for r in report["rows"] if r["cameras"] == 2)
    # one camera at a time ran in alternating rounds with batched, in the same process
    assert all(r["paired_batched_fps"] > 0 for r in report["rows"] if r["mode"] == "sequential")
    assert all(r["fps_vs_one_at_a_time_paired"] > 0 for r in report["rows"] if r["mode"] == "batched")
    assert any("target >= 1.2x" in t for t in report["targets"])
    assert report["environment"]["separate_processes"] is False


def test_a_worker_process_warms_up_then_waits_for_go(tmp_path):
    report = _run(tmp_path, "--models", "standin", "--cameras", "1")
    (row,) = report["rows"]
    assert (row["cameras"], row["mode"], row["processes"], row["frames"]) == (1, "single", 1, 1)
    (part,) = row["per_process"]
    assert part["ready_at"] <= part["wall_start"] < part["wall_end"]
    assert part["memory_mib"]["torch"]["rss_mib"] < part["memory_mib"]["model"]["rss_mib"]
    assert report["environment"]["separate_processes"] is True


def test_separate_processes_sum_memory_and_count_frames_over_their_joint_window(bench):
    def part(start, end, peak):
        return {"model": "tiny", "mode": "single", "device": "cpu", "clock": "wall", "torch_threads": 1,
                "cameras": 1, "frames": 10, "seconds": end - start, "modes": {}, "wall_start": start, "wall_end": end,
                "round_stage_ms": {}, "round_component_ms": {}, "round_page_faults": 3, "memory_mib": {k: {"rss_mib": peak, "peak_rss_mib": peak, "pss_mib": peak / 2}
                                                     for k in ("torch", "model", "end")}}
    row = bench.combine([part(100.0, 102.0, 800.0), part(101.0, 104.0, 900.0)])
    assert (row["cameras"], row["processes"], row["frames"]) == (2, 2, 20)
    assert row["fps"] == pytest.approx(20 / 4.0)  # from the first start to the last end
    assert (row["peak_rss_mib"], row["pss_mib"], row["round_page_faults"]) == (1700.0, 850.0, 6)
    cpu = bench.combine([{**part(100.0, 102.0, 800.0), "clock": "cpu"}, {**part(101.0, 104.0, 900.0), "clock": "cpu"}])
    assert cpu["fps"] == pytest.approx(20 / 5.0)  # CPU seconds add up
