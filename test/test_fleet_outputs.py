"""One input of a fleet job without Ray (the tiny model in this process): complete outputs are
skipped only after checking the files, partial or outdated ones are redone, a bad input fails alone."""
import json

import pytest

from fleet_data import empty_video, write_clip
from sam3_ros.cli import parse_concepts
from sam3_ros.core.config import PipelineConfig
from sam3_ros.factory import load_pipeline
from sam3_ros.fleet.inputs import FleetInput
from sam3_ros.fleet.label import LabelSpec, StopRequested, label_input
from sam3_ros.fleet.outputs import MARKER, check_outputs, clear_outputs, input_settings, job_settings
from sam3_ros.fleet.summary import FleetSummary
from test_cli_run import count_video_frames

FRAMES = 4


@pytest.fixture(scope="module")
def loaded(tiny):
    config = PipelineConfig().updated({"model.tiny": True, "detection.score_threshold": 0.2,
                                       "detection.new_track_threshold": 0.2})
    return load_pipeline(config, tiny)


def spec_for(loaded, root, prompts=("red ball", "blue box")):
    concepts = parse_concepts(list(prompts), [])
    return LabelSpec(concepts, str(root), job_settings(loaded.pipeline.config, concepts, None, True))


@pytest.fixture
def clip_item(tmp_path):
    return FleetInput("clip", str(write_clip(tmp_path / "clip.mp4", frames=FRAMES)))


def test_a_finished_input_is_skipped_after_checking_its_files(loaded, tmp_path, clip_item):
    spec = spec_for(loaded, tmp_path / "out")
    first = label_input(loaded, spec, clip_item)
    assert first["status"] == "done" and first["frames"] == FRAMES and first["error"] is None
    assert first["tracks"] > 0 and first["instances"] >= first["tracks"]
    out = spec.output_dir(clip_item)
    assert count_video_frames(out / "overlay.mp4") == FRAMES
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = label_input(loaded, spec, clip_item)
    assert again["status"] == "skipped"
    assert {k: again[k] for k in ("frames", "instances", "tracks")} == {k: first[k] for k in ("frames", "instances", "tracks")}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten


def _cut_results_json(out):
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text[: len(text) // 2])


def _mark_incomplete(out):
    results = json.loads((out / "results.json").read_text())
    results["complete"] = False
    (out / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize("damage, reason", [
    (lambda out: (out / MARKER).unlink(), "unfinished"),
    (_cut_results_json, "results.json is missing or cut short"),
    (_mark_incomplete, "results.json is incomplete"),
    (lambda out: (out / "results.mcap" / "metadata.yaml").unlink(), "results.mcap is missing"),
    (lambda out: (out / "overlay.mp4").unlink(), "overlay.mp4 is missing"),
    (lambda out: (out / MARKER).write_text("{"), "unreadable fleet.json"),
])
def test_partial_outputs_are_found_and_redone(loaded, tmp_path, clip_item, damage, reason):
    spec = spec_for(loaded, tmp_path / "out")
    first = label_input(loaded, spec, clip_item)
    out = spec.output_dir(clip_item)
    damage(out)
    state = check_outputs(out, input_settings(spec.settings, clip_item))
    assert not state.complete and state.started and reason in state.reason

    redo = label_input(loaded, spec, clip_item)
    assert redo["status"] == "done" and redo["frames"] == first["frames"]
    assert check_outputs(out, input_settings(spec.settings, clip_item)).complete


def test_outputs_made_with_other_settings_are_redone(loaded, tmp_path, clip_item):
    label_input(loaded, spec_for(loaded, tmp_path / "out"), clip_item)
    other = spec_for(loaded, tmp_path / "out", prompts=("cup",))
    state = check_outputs(other.output_dir(clip_item), input_settings(other.settings, clip_item))
    assert not state.complete and "other settings" in state.reason
    assert label_input(loaded, other, clip_item)["status"] == "done"
    header = json.loads((other.output_dir(clip_item) / "results.json").read_text())["header"]
    assert [p["text"] for p in header["prompts"]] == ["cup"]


def test_a_stopped_input_is_left_partial_and_redone_next_time(loaded, tmp_path, clip_item):
    spec = spec_for(loaded, tmp_path / "out")

    def stop_after_two(run):
        if run.frames == 2:
            raise StopRequested()

    stopped = label_input(loaded, spec, clip_item, on_frame=stop_after_two)
    assert stopped["status"] == "interrupted" and stopped["frames"] == 2
    results = json.loads((spec.output_dir(clip_item) / "results.json").read_text())
    assert results["complete"] is False and len(results["frames"]) == 2
    assert label_input(loaded, spec, clip_item)["status"] == "done"


def test_an_unreadable_input_fails_alone_with_its_reason(loaded, tmp_path):
    spec = spec_for(loaded, tmp_path / "out")
    item = FleetInput("empty", str(empty_video(tmp_path / "empty.mp4")))
    outcome = label_input(loaded, spec, item)
    assert outcome["status"] == "failed" and "SourceError" in outcome["error"] and "empty.mp4" in outcome["error"]
    assert not check_outputs(spec.output_dir(item), input_settings(spec.settings, item)).complete


def test_clearing_removes_only_what_a_run_writes(loaded, tmp_path, clip_item):
    spec = spec_for(loaded, tmp_path / "out")
    label_input(loaded, spec, clip_item)
    out = spec.output_dir(clip_item)
    (out / "notes.txt").write_text("mine")
    clear_outputs(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_summary_json_counts_statuses_and_frames(tmp_path):
    items = [FleetInput(n, f"/data/{n}.mp4") for n in ("a", "b", "c", "d")]
    summary = FleetSummary(tmp_path, items, {"inputs": "/data"})
    summary.running("a", 0)
    summary.finish("a", {"status": "done", "frames": 5, "instances": 7, "tracks": 2, "seconds": 1.0})
    summary.finish("b", {"status": "skipped", "frames": 3, "instances": 1, "tracks": 1, "seconds": 0.5})
    summary.finish("c", {"status": "failed", "frames": 1, "error": "SourceError: broken"})
    summary.workers = [{"index": 0, "input": "d", "frames": 2}]
    summary.write()
    written = json.loads((tmp_path / "summary.json").read_text())
    totals = written["totals"]
    assert (totals["done"], totals["skipped"], totals["failed"], totals["pending"]) == (1, 1, 1, 1)
    assert totals["frames_processed"] == 5 + 1 + 2 and totals["frames_skipped"] == 3
    assert [e["status"] for e in written["inputs"]] == ["done", "skipped", "failed", "pending"]
    assert "c: SourceError: broken" in summary.describe()
