"""benchmarks/gpu_session.py, the one-shot GPU session: its CPU dry run goes through every part
(so a GPU lease is never spent on a script bug), and its deadlines keep one slow or broken part
from taking the other parts' time."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_session.py"
HOST_PATH = ROOT / "benchmarks" / "bench_host_path.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_session_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gs():
    return _module()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_session_dry")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    report_path = out / "gpu_session.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return proc, out, report, time.monotonic() - start


def _parts(report: dict) -> dict:
    return report["parts"]


def test_dry_run_goes_through_every_part(gs, dry_run):
    proc, out, report, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert report["dry_run"] is True
    assert report["elapsed_s"] < report["budget_s"]
    assert list(_parts(report)) == [name for name, _, _ in gs.PARTS]
    for name, part in _parts(report).items():
        if name == "host_path" and not HOST_PATH.is_file():
            assert part["status"] == "skipped" and "absent" in part["reason"]
        else:
            assert part["status"] == "ok", (name, part.get("reason"), part.get("traceback"))
        assert part["seconds"] <= part.get("limit_s", 0) + 1.0, name


def test_dry_run_pipelines_held_the_requested_tracks(gs, dry_run):
    _, _, report, _ = dry_run
    parts = _parts(report)
    eager = parts["pipeline_eager"]["data"]["rows"]
    assert [r["tracks"] for r in eager] == list(gs.DRY.tracks)
    for row in eager:
        assert row["frames_timed"] == gs.DRY.frames - gs.DRY.warmup
        assert {"vision", "detector", "tracker", "memory", "total"} <= set(row["stages_ms"])
        assert 0 < row["stages_ms"]["vision"] < row["total_ms"] <= row["wall_ms"] * 1.01
        assert row["fps"] == pytest.approx(1000 / row["total_ms"], rel=0.01, abs=0.006)  # fps has 2 decimals
    compiled = parts["pipeline_compiled"]["data"]
    assert compiled["backend"] == "eager"
    assert [r["tracks"] for r in compiled["rows"]] == list(gs.DRY.compiled_tracks)
    for name in ("transformers_bf16", "transformers_fp32"):
        rows = parts[name]["data"]["rows"]
        assert [r["tracks"] for r in rows] == list(gs.DRY.tracks), name
        assert all(r["median_ms"] > 0 for r in rows)
    cameras = parts["cameras"]["data"]["rows"]
    assert [(r["cameras"], r["mode"]) for r in cameras] == [(n, m) for n in gs.DRY.cameras
                                                            for m in ("in turn", "batched")]
    # more cameras keep more track memory, whether in one pipeline or one per camera
    by_mode = {m: [r["pipeline_state_bytes"] for r in cameras if r["mode"] == m] for m in ("in turn", "batched")}
    assert all(states[-1] > states[0] > 0 for states in by_mode.values())


def test_dry_run_floor_ratios_use_the_counted_flops(dry_run):
    _, _, report, _ = dry_run
    parts = _parts(report)
    floors = parts["floor"]["data"]["components"]
    assert set(floors) == {"vision", "text", "detector", "tracker", "memory_encoder"}
    assert all(f["gflop"] > 0 and f["floor_ms_h200"] > 0 for f in floors.values())
    # attention FLOPs are counted (eager attention while counting): a track's memory attention over
    # 10 memories of grid^2 tokens costs more than the memory encoder's convolutions
    assert floors["tracker"]["gflop"] > floors["memory_encoder"]["gflop"]
    rows = parts["components"]["data"]["rows"]
    assert {r["component"] for r in rows} == {"vision", "text", "detector", "tracker", "memory_encoder"}
    assert sorted({r["units"] for r in rows if r["component"] == "detector"}) == [1, 4]
    for row in rows:
        floor = floors[row["component"]]["floor_ms_h200"] * row["units"]
        assert row["ratio_ms_h200"] == pytest.approx(row["median_ms"] / floor, rel=1e-3)


def test_dry_run_markdown_has_the_tables(gs, dry_run):
    _, out, report, _ = dry_run
    text = (out / "gpu_session.md").read_text()
    assert "DRY RUN" in text
    for name, _, _ in gs.PARTS:
        assert f"| {name} | " in text
    pipeline = text.split("## Pipeline against live tracks")[1].split("##")[0]
    for tracks in gs.DRY.tracks:
        assert f"\n| {tracks} | " in pipeline
    assert "## Components alone against the arithmetic floor" in text
    assert "## Cameras sharing one model" in text


# -- deadlines, without a model ------------------------------------------------------------------------


def _session(gs, tmp_path, budget):
    return gs.Session(tmp_path, gs.DRY, True, "cpu", budget, ["--dry-run"])


def test_a_part_past_its_deadline_is_stopped_its_rows_kept_and_the_next_part_runs(gs, tmp_path):
    session = _session(gs, tmp_path, 60)

    def slow(session, data, clock):
        data["rows"] = [{"tracks": 1}]
        time.sleep(30)
        data["rows"].append({"tracks": 5})

    def quick(session, data, clock):
        data["value"] = clock.left()

    start = time.monotonic()
    gs.run_part(session, "slow", slow, 1.0, needs_model=False)
    assert time.monotonic() - start < 10
    gs.run_part(session, "quick", quick, 5.0, needs_model=False)
    on_disk = json.loads(session.json_path.read_text())["parts"]
    assert on_disk["slow"]["status"] == "timeout"
    assert on_disk["slow"]["data"]["rows"] == [{"tracks": 1}]
    assert on_disk["quick"]["status"] == "ok"
    assert 0 < on_disk["quick"]["data"]["value"] <= 5.0


def test_a_failing_part_is_recorded_and_the_session_goes_on(gs, tmp_path):
    session = _session(gs, tmp_path, 60)

    def broken(session, data, clock):
        raise ValueError("bad shape")

    gs.run_part(session, "broken", broken, 5.0, needs_model=False)
    gs.run_part(session, "needs", lambda s, d, c: None, 5.0, needs_model=True)
    parts = json.loads(session.json_path.read_text())["parts"]
    assert parts["broken"]["status"] == "failed" and "bad shape" in parts["broken"]["reason"]
    assert parts["needs"]["status"] == "skipped" and "build" in parts["needs"]["reason"]


def test_a_part_gets_no_more_than_the_session_has_left(gs, tmp_path):
    session = _session(gs, tmp_path, gs.RESERVE_S + 2.5)
    seen = {}
    gs.run_part(session, "first", lambda s, d, c: seen.setdefault("left", c.left()), 100.0, needs_model=False)
    assert seen["left"] <= 2.5
    time.sleep(1.0)
    gs.run_part(session, "second", lambda s, d, c: None, 100.0, needs_model=False)
    parts = json.loads(session.json_path.read_text())["parts"]
    assert parts["second"]["status"] == "skipped" and "budget" in parts["second"]["reason"]


def test_without_cuda_the_full_run_refuses_and_says_why():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "--dry-run" in proc.stderr
