"""`sam3-ros run` on the inputs a new user brings: videos and bags at their own rates, image folders of
mixed sizes (issue 15, items 4 and 11)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_cli_run import count_video_frames, read_bag

from sam3_ros.cli import EXIT_OK, main
from sam3_ros.demo_clip import demo_frame
from sam3_ros.io.ros_types import typestore

RUN = ["--prompt", "red ball", "--tiny", "--device", "cpu", "--no-progress"]


def video_fps(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    try:
        return capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()


def small_frame(i: int, frames: int, size=(160, 120)) -> np.ndarray:
    return cv2.resize(demo_frame(i, frames), size)


@pytest.mark.parametrize("fps", [10, 15])
def test_the_overlay_plays_at_the_video_rate(tmp_path, fps):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    for i in range(5):
        writer.write(small_frame(i, 5)[:, :, ::-1].copy())
    writer.release()
    assert main(["run", "--input", str(clip), "--output", str(tmp_path / "out"), *RUN]) == EXIT_OK
    assert video_fps(tmp_path / "out" / "overlay.mp4") == pytest.approx(fps, rel=1e-3)


def test_the_overlay_of_a_10_hz_bag_plays_at_10_fps(tmp_path):
    store = typestore()
    Image, Header, Time = (store.types[t] for t in
                           ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    bag = tmp_path / "bag"
    frames = 12
    with Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i in range(frames):
            stamp = 1_700_000_000 * 10**9 + i * 100_000_000  # 10 Hz
            rgb = small_frame(i, frames)
            msg = Image(Header(Time(stamp // 10**9, stamp % 10**9), "cam"), 120, 160, "rgb8", 0, 480, rgb.reshape(-1))
            writer.write(conn, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    out = tmp_path / "out"
    assert main(["run", "--input", str(bag), "--output", str(out), *RUN]) == EXIT_OK
    assert video_fps(out / "overlay.mp4") == pytest.approx(10.0, rel=1e-3)
    assert count_video_frames(out / "overlay.mp4") == frames


def test_the_demo_overlay_plays_at_the_demo_clip_rate(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "3"]) == EXIT_OK
    assert video_fps(out / "results" / "overlay.mp4") == pytest.approx(video_fps(out / "input.mp4"), rel=1e-3)


def test_an_image_folder_with_one_larger_image_is_labelled_whole(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        size = (320, 240) if i == 2 else (160, 120)
        cv2.imwrite(str(folder / f"{i:04d}.png"), small_frame(i, 4, size)[:, :, ::-1])
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), *RUN]) == EXIT_OK
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["frames"]) == 4
    assert [f["image_size"] for f in results["frames"]] == [[120, 160], [120, 160], [240, 320], [120, 160]]
    assert len(read_bag(out / "results.mcap")["/sam3/instances"]) == 4
    assert count_video_frames(out / "overlay.mp4") == 4
    assert "320x240" in capsys.readouterr().err


def test_results_json_names_each_frame_s_file_and_the_effective_settings(tmp_path):
    """After a corrupt image is skipped, frame numbers no longer match file positions: each frame
    names its file. The header holds the settings the run used and the package version."""
    from importlib.metadata import version

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), small_frame(i, 4)[:, :, ::-1])
    (folder / "img2.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder), "--output", str(out), *RUN,
                 "--set", "tracking.max_tracks=7"]) == EXIT_OK
    results = json.loads((out / "results.json").read_text())
    assert [(f["input_file"], f["input_index"]) for f in results["frames"]] == [
        ("img1.png", 0), ("img3.png", 2), ("img4.png", 3)]
    header = results["header"]
    assert header["settings"]["tracking.max_tracks"] == 7
    assert header["settings"]["model.device"] == "cpu" and header["settings"]["model.tiny"] is True
    assert header["sam3_ros_version"] == version("sam3_ros")


def test_start_time_stamps_a_video_from_that_moment_and_is_refused_for_a_bag(tmp_path, capsys):
    from datetime import datetime, timezone

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(3):
        writer.write(small_frame(i, 3)[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    assert main(["run", "--input", str(clip), "--output", str(out), *RUN,
                 "--start-time", "2026-12-01T09:30:00Z"]) == EXIT_OK
    start = int(datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc).timestamp())
    instances = read_bag(out / "results.mcap")["/sam3/instances"]
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in instances] == [
        (start, 0), (start, 100_000_000), (start, 200_000_000)]
    assert json.loads((out / "results.json").read_text())["frames"][0]["stamp_ns"] == start * 10**9

    bag = tmp_path / "bag"
    store = typestore()
    with Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
        Image, Header, Time = (store.types[t] for t in
                               ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
        msg = Image(Header(Time(5, 0), "cam"), 120, 160, "rgb8", 0, 480, small_frame(0, 1).reshape(-1))
        w.write(conn, 5 * 10**9, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    capsys.readouterr()
    assert main(["run", "--input", str(bag), "--output", str(tmp_path / "o2"), *RUN, "--start-time", "100"]) == 2
    assert "rosbag2 keeps the stamps" in capsys.readouterr().err
