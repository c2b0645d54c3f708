"""`sam3-ros run --inputs` on a real local Ray (2 CPU workers, tiny model): a mixed set of generated
recordings with broken ones, equality with the single-input runner, re-runs, and Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader

from fleet_data import (CAMERA_TOPIC, LOW_BARS, PROMPTS, corrupt_bag, empty_video, image_bag, image_folder,
                        write_clip)
from sam3_ros.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, main
from sam3_ros.io.ros_types import typestore
from test_cli_run import count_video_frames

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'sam3_ros[fleet]'")

DRIVE = "drive__camera_color_image_raw"  # the bag is listed twice, with two topics
GOOD = {"clip": 6, "frames": 5, DRIVE: 4}  # input name -> frames
LONG = 24  # frames of the clips that Ctrl-C interrupts
ARGS = ["--tiny", *PROMPTS, *LOW_BARS, "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray for the module: 2 CPUs, no dashboard, an 80 MiB object store."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def fleet(local_ray, tmp_path_factory):
    """One job over a manifest of good and broken recordings; what it wrote and answered."""
    root = tmp_path_factory.mktemp("fleet")
    data = root / "recordings"
    data.mkdir()
    write_clip(data / "clip.mp4", frames=GOOD["clip"])
    image_folder(data / "frames", GOOD["frames"])
    image_bag(data / "drive", GOOD[DRIVE])
    corrupt_bag(data / "cut_bag", 6)
    empty_video(data / "empty.mp4")
    manifest = root / "manifest.txt"
    manifest.write_text("\n".join([
        "recordings/clip.mp4", "recordings/frames", f"recordings/drive {CAMERA_TOPIC}",
        f"recordings/cut_bag {CAMERA_TOPIC}", "recordings/empty.mp4", "recordings/drive /no/such/topic"]) + "\n")
    command = ["run", "--inputs", str(manifest), "--output", str(root / "labels"), "--workers", "2", *ARGS]
    code = main(command)
    return {"root": root, "command": command, "code": code, "summary": read_summary(root / "labels")}


def read_summary(output: Path) -> dict:
    summary = json.loads((output / "summary.json").read_text())
    summary["by_name"] = {entry["name"]: entry for entry in summary["inputs"]}
    return summary


def bag_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with AnyReader([bag], default_typestore=typestore()) as reader:
        return [(c.topic, stamp, bytes(raw)) for c, stamp, raw in reader.messages()]


def frames_of(results_json: Path) -> list[dict]:
    frames = json.loads(results_json.read_text())["frames"]
    for frame in frames:
        frame.pop("timings_ms")  # wall-clock times, the only thing allowed to differ
    return frames


def test_each_input_gets_its_outputs_and_failures_are_named(fleet):
    summary, labels = fleet["summary"], fleet["root"] / "labels"
    assert fleet["code"] == EXIT_PARTIAL  # some inputs failed, the job went on
    assert summary["finished"] and not summary["interrupted"]
    entries = summary["by_name"]
    assert {n: e["status"] for n, e in entries.items()} == {
        "clip": "done", "frames": "done", DRIVE: "done", "cut_bag": "failed", "empty": "failed",
        "drive__no_such_topic": "failed"}
    for name, frames in GOOD.items():
        entry, out = entries[name], labels / name
        assert entry["frames"] == frames and entry["error"] is None and entry["seconds"] > 0
        results = json.loads((out / "results.json").read_text())
        assert results["complete"] and len(results["frames"]) == frames
        assert entry["instances"] == sum(len(f["instances"]) for f in results["frames"])
        assert entry["tracks"] == len({i["track_id"] for f in results["frames"] for i in f["instances"]})
        assert len(bag_messages(out / "results.mcap")) == 2 * frames
        assert count_video_frames(out / "overlay.mp4") == frames
    assert "cannot read the recording" in entries["cut_bag"]["error"]
    assert "cannot open this file as a video" in entries["empty"]["error"]
    missing_topic = entries["drive__no_such_topic"]["error"]
    assert "no image topic '/no/such/topic'" in missing_topic and CAMERA_TOPIC in missing_topic
    assert summary["totals"]["frames_processed"] == sum(GOOD.values())
    assert summary["totals"]["done"] == 3 and summary["totals"]["failed"] == 3
    assert {e["worker"] for e in entries.values()} == {0, 1}  # both workers took inputs
    assert [w["device"] for w in summary["workers"]] == ["cpu", "cpu"]


def test_outputs_equal_the_single_input_runner(fleet):
    entries = fleet["summary"]["by_name"]
    for name in GOOD:
        entry = entries[name]
        reference = fleet["root"] / "single" / name
        topic = ["--image-topic", entry["image_topic"]] if entry["image_topic"] else []
        assert main(["run", "--input", entry["input"], "--output", str(reference), *topic, *ARGS]) == EXIT_OK
        fleet_out = fleet["root"] / "labels" / name
        assert frames_of(fleet_out / "results.json") == frames_of(reference / "results.json")
        assert any(frame["instances"] for frame in frames_of(reference / "results.json"))
        headers = [json.loads((d / "results.json").read_text())["header"] for d in (fleet_out, reference)]
        assert headers[0]["source"] == headers[1]["source"] and headers[0]["prompts"] == headers[1]["prompts"]
        assert bag_messages(fleet_out / "results.mcap") == bag_messages(reference / "results.mcap")
        assert decoded_frames(fleet_out / "overlay.mp4") == decoded_frames(reference / "overlay.mp4")


def decoded_frames(video: Path) -> list[bytes]:
    import cv2

    capture, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image.tobytes())


def test_a_rerun_skips_complete_inputs_and_redoes_partial_ones(fleet):
    labels = fleet["root"] / "labels"
    cut = labels / "frames" / "results.json"
    cut.write_text(cut.read_text()[:200])  # as if the machine had died while writing
    kept = {p: p.stat().st_mtime_ns for name in ("clip", DRIVE) for p in (labels / name).iterdir()}

    assert main(fleet["command"]) == EXIT_PARTIAL
    entries = read_summary(labels)["by_name"]
    assert {n: e["status"] for n, e in entries.items()} == {
        "clip": "skipped", "frames": "done", DRIVE: "skipped", "cut_bag": "failed", "empty": "failed",
        "drive__no_such_topic": "failed"}
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert entries["clip"]["frames"] == GOOD["clip"] and entries["frames"]["frames"] == GOOD["frames"]
    assert json.loads(cut.read_text())["complete"]


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes_the_rest(local_ray, tmp_path):
    """The command in its own process group gets SIGINT, as from a terminal; it joins this
    module's Ray through --ray-address, as it would a cluster."""
    data = tmp_path / "recordings"
    data.mkdir()
    write_clip(data / "a_short.mp4", frames=2)
    for name in ("b_long", "c_long", "d_long"):
        write_clip(data / f"{name}.mp4", frames=LONG)
    labels = tmp_path / "labels"
    address = local_ray.get_runtime_context().gcs_address
    command = ["run", "--inputs", str(data), "--output", str(labels), *ARGS]
    process = subprocess.Popen([sys.executable, "-m", "sam3_ros.cli", *command, "--ray-address", address],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: read_summary(labels)["by_name"]["a_short"]["status"] == "done", process)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "run the same command again" in err
    summary = read_summary(labels)
    assert summary["interrupted"] and not summary["finished"]
    statuses = {n: e["status"] for n, e in summary["by_name"].items()}
    assert statuses["a_short"] == "done" and "interrupted" in statuses.values()
    assert set(statuses.values()) <= {"done", "interrupted", "pending"}
    for name, status in statuses.items():
        if status == "interrupted":
            assert json.loads((labels / name / "results.json").read_text())["complete"] is False

    assert main(command) == EXIT_OK
    again = read_summary(labels)["by_name"]
    assert {n: e["status"] for n, e in again.items()} == {
        n: "skipped" if s == "done" else "done" for n, s in statuses.items()}
    assert all(e["frames"] == (2 if n == "a_short" else LONG) for n, e in again.items())


def test_sigterm_stops_the_job_like_ctrl_c_and_says_so(local_ray, tmp_path):
    """`timeout`, systemd and Docker send SIGTERM to the command: Ray's own handler would exit at
    once and leave the inputs in progress `running`; the job must close them as interrupted."""
    data = tmp_path / "recordings"
    data.mkdir()
    write_clip(data / "a_short.mp4", frames=2)
    for name in ("b_long", "c_long"):
        write_clip(data / f"{name}.mp4", frames=LONG)
    labels = tmp_path / "labels"
    address = local_ray.get_runtime_context().gcs_address
    command = ["run", "--inputs", str(data), "--output", str(labels), *ARGS, "--ray-address", address]
    process = subprocess.Popen([sys.executable, "-m", "sam3_ros.cli", *command],
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: read_summary(labels)["by_name"]["a_short"]["status"] == "done", process)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    summary = read_summary(labels)
    assert summary["interrupted"] and not summary["finished"]
    statuses = {n: e["status"] for n, e in summary["by_name"].items()}
    assert statuses["a_short"] == "done" and set(statuses.values()) <= {"done", "interrupted", "pending"}
    for name, status in statuses.items():
        if status == "interrupted":
            assert json.loads((labels / name / "results.json").read_text())["complete"] is False


def test_a_worker_that_dies_fails_its_input_alone_and_is_replaced(local_ray, tmp_path):
    data = tmp_path / "recordings"
    data.mkdir()
    for name in ("a", "b", "c", "d"):
        write_clip(data / f"{name}.mp4", frames=LONG)
    labels = tmp_path / "labels"
    command = [sys.executable, "-m", "sam3_ros.cli", "run", "--inputs", str(data), "--output", str(labels), *ARGS,
               "--ray-address", local_ray.get_runtime_context().gcs_address]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for(lambda: read_summary(labels)["workers"][0].get("frames", 0) >= 1, process)
        victim = read_summary(labels)["workers"][0]["pid"]
        os.kill(victim, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == EXIT_PARTIAL, err
    summary = read_summary(labels)
    failed = [e for e in summary["inputs"] if e["status"] == "failed"]
    assert len(failed) == 1 and "worker 0 died" in failed[0]["error"]
    assert all(e["status"] == "done" and e["frames"] == LONG for e in summary["inputs"] if e not in failed)
    assert summary["workers"][0]["pid"] != victim  # a new worker took the dead one's place


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        try:
            if condition():
                return
        except (OSError, ValueError, KeyError):  # summary.json not written yet
            pass
        time.sleep(0.2)
    raise AssertionError("the fleet job did not get going in time")


def test_a_model_that_does_not_load_on_the_workers_stops_the_job_with_the_reason(local_ray, tmp_path, capsys):
    write_clip(tmp_path / "clip.mp4", frames=1)
    code = main(["run", "--inputs", str(tmp_path), "--output", str(tmp_path / "labels"), "--prompt", "cup",
                 "--checkpoint", str(tmp_path / "no_weights"), "--device", "cpu", "--workers", "1", "--no-progress"])
    assert code == EXIT_FAILED
    assert "could not load the model: CheckpointError" in capsys.readouterr().err
    assert read_summary(tmp_path / "labels")["by_name"]["clip"]["status"] == "pending"
