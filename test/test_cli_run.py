"""End to end: `sam3-ros run` with the tiny real model on inputs generated here."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from sam3_ros.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, main, parse_concepts
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.prompts import PromptError
from sam3_ros.demo_clip import demo_frame
from sam3_ros.factory import build_pipeline
from sam3_ros.io.ros_types import typestore
from sam3_ros.io.sources import Frame, FrameSource, SourceError
from sam3_ros.runner import run_offline

LOW_BARS = ["--set", "detection.score_threshold=0.2", "--set", "detection.new_track_threshold=0.2"]
FRAMES = 6


def write_clip(path: Path, frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(frames):
        writer.write(cv2.cvtColor(demo_frame(i, frames), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_bag(path: Path) -> dict[str, list]:
    store = typestore()
    messages: dict[str, list] = {}
    with AnyReader([path], default_typestore=store) as reader:
        for connection, _, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    return messages


def count_video_frames(path: Path) -> int:
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    return count


def test_run_on_a_video_writes_bag_json_and_overlay(tmp_path, caplog):
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    code = main(["run", "--input", str(clip), "--prompt", "red ball", "--prompt", "blue box", "--tiny",
                 "--output", str(out), "--no-progress", *LOW_BARS])
    assert code == EXIT_OK
    assert "RANDOM WEIGHTS" in caplog.text  # on stderr once (test_cli_outputs_safety runs the command)

    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["frames"]) == FRAMES
    assert [p["text"] for p in results["header"]["prompts"]] == ["red ball", "blue box"]

    bag = read_bag(out / "results.mcap")
    assert len(bag["/sam3/instances"]) == len(bag["/sam3/detections"]) == FRAMES
    for frame, instances, detections in zip(results["frames"], bag["/sam3/instances"], bag["/sam3/detections"]):
        assert [i.track_id for i in instances.instances] == [i["track_id"] for i in frame["instances"]]
        assert [d.id for d in detections.detections] == [str(i["track_id"]) for i in frame["instances"]]
        assert instances.header.stamp == detections.header.stamp
        for msg, inst in zip(instances.instances, frame["instances"]):
            assert list(msg.mask_rle) == inst["mask_rle"]["counts"]
            assert (msg.mask_height, msg.mask_width) == (240, 320)
    assert count_video_frames(out / "overlay.mp4") == FRAMES
    assert any(frame["instances"] for frame in results["frames"])


def test_run_on_a_rosbag_topic_and_a_missing_topic(tmp_path, capsys):
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    Image = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    bag = tmp_path / "camera_bag"
    with Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i in range(3):
            rgb = demo_frame(i, 3)
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            msg = Image(Header(Time(10, i * 1000), "camera_color_optical_frame"), 240, 320, "bgr8", 0, 960,
                        bgr.reshape(-1))
            writer.write(conn, 10_000_000_000 + i * 1000, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    out = tmp_path / "out"
    assert main(["run", "--input", str(bag), "--image-topic", "/camera/color/image_raw", "--prompt", "cup",
                 "--tiny", "--output", str(out), "--no-progress", "--no-overlay"]) == EXIT_OK
    instances = read_bag(out / "results.mcap")["/sam3/instances"]
    assert [m.header.frame_id for m in instances] == ["camera_color_optical_frame"] * 3
    assert [m.header.stamp.nanosec for m in instances] == [0, 1000, 2000]

    code = main(["run", "--input", str(bag), "--image-topic", "/nope", "--prompt", "cup", "--tiny",
                 "--output", str(tmp_path / "out2"), "--no-progress"])
    assert code == EXIT_FAILED
    assert "/camera/color/image_raw" in capsys.readouterr().err


def test_image_folder_with_a_corrupt_file_skips_it_with_a_warning(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), demo_frame(i, 4)[:, :, ::-1])
    (folder / "2.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--prompt", "cup", "--tiny", "--output", str(out),
                 "--no-progress", "--max-frames", "10"]) == EXIT_OK
    assert len(json.loads((out / "results.json").read_text())["frames"]) == 3
    assert "2.png" in capsys.readouterr().err


class BreaksAfter(FrameSource):
    """An input that fails mid-stream, like a camera recording cut short."""

    def __init__(self, good: int):
        self.good = good

    def __iter__(self):
        for i in range(self.good):
            yield Frame(i, i * 1_000_000, demo_frame(i, self.good), "camera")
        raise SourceError("stream ended abruptly")


def test_failure_mid_stream_keeps_everything_written_before(tmp_path, monkeypatch, tiny):
    import sam3_ros.runner as runner

    monkeypatch.setattr(runner, "open_source", lambda *a, **k: BreaksAfter(3))
    config = PipelineConfig().updated({"model.tiny": True})
    summary = run_offline(build_pipeline(config, tiny), parse_concepts(["cup"], []), "camera", tmp_path / "out",
                          progress=False)
    assert summary.frames == 3 and "abruptly" in summary.error
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results["frames"]) == 3 and results["complete"] is False and "abruptly" in results["error"]
    assert len(read_bag(tmp_path / "out" / "results.mcap")["/sam3/instances"]) == 3
    assert count_video_frames(tmp_path / "out" / "overlay.mp4") == 3


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "/nonexistent/sam3"], "hf download facebook/sam3"),
    ([], "--checkpoint DIR"),
    (["--tiny", "--prompt", ""], "empty"),
])
def test_setup_errors_exit_2_with_a_clear_message(tmp_path, capsys, argv, message):
    clip = write_clip(tmp_path / "clip.mp4", frames=1)
    args = ["run", "--input", str(clip), "--output", str(tmp_path / "out"), *argv]
    if "--prompt" not in argv:
        args += ["--prompt", "cup"]
    assert main(args) == EXIT_FAILED
    assert message in capsys.readouterr().err


def test_unreadable_video_and_existing_output_are_refused(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    assert main(["run", "--input", str(bad), "--prompt", "cup", "--tiny", "--output", str(tmp_path / "o")]) == EXIT_FAILED
    assert "broken.mp4" in capsys.readouterr().err
    clip = write_clip(tmp_path / "clip.mp4", frames=1)
    args = ["run", "--input", str(clip), "--prompt", "cup", "--tiny", "--output", str(tmp_path / "o2"), "--no-progress"]
    assert main(args) == EXIT_OK
    assert main(args) == EXIT_FAILED
    assert "already holds" in capsys.readouterr().err


def test_box_arguments_build_exemplar_concepts():
    concepts = parse_concepts(["pallet"], ["pallet:10,10,50,40", "pallet:60,10,90,30:neg", "widget:0,0,8,8"])
    assert [(c.id, c.text, [b.positive for b in c.exemplars]) for c in concepts] == [
        ("pallet", "pallet", [True, False]), ("widget", "", [True])]
    with pytest.raises(PromptError):
        parse_concepts([], ["pallet:1,2,3"])


def test_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--output", str(tmp_path / "demo"), "--frames", "4"]) == EXIT_OK
    results = json.loads((tmp_path / "demo" / "results" / "results.json").read_text())
    assert len(results["frames"]) == 4


def test_bench_holds_the_requested_number_of_tracks(capsys):
    assert main(["bench", "--tiny", "--tracks", "1", "3", "--frames", "3", "--warmup", "1", "--image", "48", "64"]) == EXIT_OK
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tracks")]
    assert [int(line.split()[1].rstrip(":")) for line in lines] == [1, 3]
    assert all("fps" in line and "tracker" in line for line in lines)
