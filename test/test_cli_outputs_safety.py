"""The CLI never deletes what it did not write, and stops cleanly on SIGTERM (issue 15, items 1 and 3)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_run import count_video_frames, read_bag

from sam3_ros.cli import EXIT_FAILED, EXIT_OK, main


def test_demo_refuses_a_folder_holding_other_work_and_deletes_nothing(tmp_path, capsys):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "notes.txt").write_text("my notes")
    (work / "src" / "a.py").write_text("print('mine')")
    assert main(["demo", "--output", str(work), "--frames", "2"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "notes.txt" in err and "nothing was deleted" in err
    assert (work / "notes.txt").read_text() == "my notes"
    assert (work / "src" / "a.py").read_text() == "print('mine')"
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "src"]


def test_demo_runs_again_in_its_own_folder(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_OK
    assert main(["demo", "--output", str(out), "--frames", "3"]) == EXIT_OK
    assert len(json.loads((out / "results" / "results.json").read_text())["frames"]) == 3


def test_demo_refuses_a_demo_folder_with_one_extra_file(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_OK
    (out / "results" / "my_labels.csv").write_text("keep me")
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_FAILED
    assert (out / "results" / "my_labels.csv").read_text() == "keep me"
    assert (out / "results" / "results.json").is_file()


# -- SIGTERM and Ctrl-C during `sam3-ros run`, as systemd, Docker, `timeout` and a terminal send them ----------

def _long_clip(path: Path, frames: int = 400) -> Path:
    import cv2

    from sam3_ros.demo_clip import demo_frame

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(frames):
        writer.write(cv2.resize(demo_frame(i, frames), (160, 120))[:, :, ::-1].copy())
    writer.release()
    return path


def _frames_in(results_json: Path) -> int:
    try:
        return results_json.read_text().count('"frame_index"')
    except OSError:
        return 0


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_mid_run_leaves_every_output_readable(tmp_path, signum, code):
    clip = _long_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "sam3_ros.cli", "run", "--input", str(clip), "--prompt", "red ball", "--tiny",
           "--device", "cpu", "--output", str(out), "--no-progress"]
    process = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _frames_in(out / "results.json") < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signum)  # the whole process group, as a terminal or systemd does
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    results = json.loads((out / "results.json").read_text())  # whole JSON
    frames = len(results["frames"])
    assert 3 <= frames < 400
    assert results["complete"] is False and results["frames_written"] == frames
    assert results["error"] == f"stopped by {name} after {frames} frames"
    assert (out / "results.mcap" / "metadata.yaml").is_file()
    bag = read_bag(out / "results.mcap")
    assert len(bag["/sam3/instances"]) == len(bag["/sam3/detections"]) == frames
    assert count_video_frames(out / "overlay.mp4") == frames


def test_the_random_weights_line_is_printed_once(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sam3_ros.cli", "demo", "--output", str(tmp_path / "demo"),
                           "--frames", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stderr.count("RANDOM WEIGHTS") == 1, done.stderr
