"""`sam3-ros run` over several cameras of one rosbag2, batched through one model (issue 16)."""
import json
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_cli_run import count_video_frames, read_bag
from test_readme_cli import readme_commands

from sam3_ros.cli import EXIT_FAILED, EXIT_OK, main
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.demo_clip import demo_frame
from sam3_ros.io.messages import header
from sam3_ros.io.ros_types import RosbagsTypes
from sam3_ros.io.sources import Frame
from sam3_ros.runner import in_steps

TYPES = RosbagsTypes()
T0 = 1_700_000_000 * 10**9
MS = 1_000_000
# head at 10 Hz (raw, 160x120), wrist at about 3 Hz (png, 128x96, another size): in recording order
# H0 W0 H1 H2 H3 W1 H4, so the steps are [H0 W0] [H1] [H2] [H3 W1] [H4].
HEAD_MS = [0, 100, 200, 300, 400]
WRIST_MS = [50, 350]
STEPS = [["head", "wrist"], ["head"], ["head"], ["head", "wrist"], ["head"]]
MODEL = ["--tiny", "--device", "cpu", "--no-progress",
         "--set", "detection.score_threshold=0.1", "--set", "detection.new_track_threshold=0.1"]
RUN = ["--prompt", "red ball", *MODEL]
CAMERAS = ["--image-topic", "/head/image", "--image-topic", "/wrist/image/compressed"]


def header_stamp(ms: int) -> int:
    return T0 + ms * MS


def write_two_camera_bag(path: Path) -> Path:
    """/head/image and /wrist/image/compressed at their rates, recorded 1 ms after their header
    stamps, and a text topic /chatter."""
    store = TYPES.store
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        head = writer.add_connection("/head/image", "sensor_msgs/msg/Image", typestore=store)
        wrist = writer.add_connection("/wrist/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        messages = []
        for i, ms in enumerate(HEAD_MS):
            rgb = cv2.resize(demo_frame(i, len(HEAD_MS)), (160, 120))
            msg = TYPES.new("sensor_msgs/msg/Image", header=header(header_stamp(ms), "head_optical", TYPES),
                            height=120, width=160, encoding="rgb8", is_bigendian=0, step=480, data=rgb.reshape(-1))
            messages.append((ms, head, msg))
        for i, ms in enumerate(WRIST_MS):
            ok, png = cv2.imencode(".png", cv2.resize(demo_frame(4 - i, 5), (128, 96))[..., ::-1])
            assert ok
            msg = TYPES.new("sensor_msgs/msg/CompressedImage", header=header(header_stamp(ms), "wrist_optical", TYPES),
                            format="png", data=png.reshape(-1))
            messages.append((ms, wrist, msg))
        messages.append((10, chatter, TYPES.new("std_msgs/msg/String", data="hello")))
        for ms, connection, msg in sorted(messages, key=lambda m: m[0]):
            writer.write(connection, header_stamp(ms) + MS, store.serialize_cdr(msg, msg.__msgtype__))
    return path


@pytest.fixture(scope="module")
def two_camera_bag(tmp_path_factory) -> Path:
    return write_two_camera_bag(tmp_path_factory.mktemp("cameras") / "bag")


def readme_command(bag: Path, out: Path) -> list[str]:
    """The README's two-camera command line, on ``bag`` into ``out``."""
    (line,) = [c for c in readme_commands() if "--image-topic /head/image --image-topic" in c]
    words = shlex.split(line)[1:]  # after "sam3-ros"
    words[words.index("--input") + 1], words[words.index("--output") + 1] = str(bag), str(out)
    return words


@pytest.fixture(scope="module")
def two_camera_run(two_camera_bag, tmp_path_factory):
    """The README's run of both cameras, recording the cameras of every batched step."""
    out = tmp_path_factory.mktemp("run") / "out"
    steps: list[list[str]] = []
    original = Sam3Pipeline.step_cameras

    def recording(self, frames):
        steps.append(list(frames))
        return original(self, frames)

    with pytest.MonkeyPatch.context() as patch:  # a spy: the real step_cameras runs
        patch.setattr(Sam3Pipeline, "step_cameras", recording)
        code = main([*readme_command(two_camera_bag, out), "--prompt", "blue box", *MODEL])
    assert code == EXIT_OK
    return out, steps


def test_every_frame_of_every_camera_is_processed_once_in_batched_steps(two_camera_run):
    out, steps = two_camera_run
    assert steps == STEPS
    results = json.loads((out / "results.json").read_text())
    assert results["complete"]
    assert results["header"]["cameras"] == {"head": "/head/image", "wrist": "/wrist/image/compressed"}
    frames = results["frames"]
    assert [(f["camera"], f["input_index"]) for f in frames] == [
        ("head", 0), ("wrist", 0), ("head", 1), ("head", 2), ("head", 3), ("wrist", 1), ("head", 4)]
    for camera, stamps_ms, size in [("head", HEAD_MS, [120, 160]), ("wrist", WRIST_MS, [96, 128])]:
        mine = [f for f in frames if f["camera"] == camera]
        assert [f["stamp_ns"] for f in mine] == [header_stamp(ms) for ms in stamps_ms]
        assert [f["frame_index"] for f in mine] == list(range(len(stamps_ms)))  # each camera counts its own
        assert all(f["image_size"] == size for f in mine)
        assert all(i["camera"] == camera for f in mine for i in f["instances"])


def test_each_camera_has_its_own_topics_and_overlay(two_camera_run):
    out, _ = two_camera_run
    bag = read_bag(out / "results.mcap")
    assert set(bag) == {"/sam3/head/instances", "/sam3/head/detections",
                        "/sam3/wrist/instances", "/sam3/wrist/detections"}
    results = json.loads((out / "results.json").read_text())
    for camera, stamps_ms in [("head", HEAD_MS), ("wrist", WRIST_MS)]:
        instances, detections = bag[f"/sam3/{camera}/instances"], bag[f"/sam3/{camera}/detections"]
        for messages in (instances, detections):
            assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in messages] == [
                header_stamp(ms) for ms in stamps_ms]
            assert {m.header.frame_id for m in messages} == {f"{camera}_optical"}
        frames = [f for f in results["frames"] if f["camera"] == camera]
        assert [[i.track_id for i in m.instances] for m in instances] == [
            [i["track_id"] for i in f["instances"]] for f in frames]
        assert count_video_frames(out / f"overlay_{camera}.mp4") == len(stamps_ms)
    assert not (out / "overlay.mp4").exists()


def test_track_ids_are_unique_across_cameras(two_camera_run):
    out, _ = two_camera_run
    frames = json.loads((out / "results.json").read_text())["frames"]
    ids = {camera: {i["track_id"] for f in frames if f["camera"] == camera for i in f["instances"]}
           for camera in ("head", "wrist")}
    assert ids["head"] and ids["wrist"], "the low bars should make tracks on both cameras"
    assert not ids["head"] & ids["wrist"]


def frame(camera: str, index: int) -> Frame:
    return Frame(index, index, np.zeros((2, 2, 3), np.uint8), "", camera=camera)


def test_steps_end_when_every_camera_is_in_or_one_comes_again():
    order = [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("c", 0), ("b", 1), ("a", 3), ("a", 4)]
    steps = [[(f.camera, f.index) for f in step] for step in in_steps((frame(*f) for f in order), cameras=3)]
    assert steps == [[("a", 0), ("b", 0)], [("a", 1)], [("a", 2), ("c", 0), ("b", 1)], [("a", 3)], [("a", 4)]]


def test_a_broken_stream_still_steps_the_frames_read_before_it():
    def frames():
        yield frame("a", 0)
        raise OSError("cut short")

    steps = in_steps(frames(), cameras=2)
    assert [f.index for f in next(steps)] == [0]
    with pytest.raises(OSError, match="cut short"):
        next(steps)


@pytest.mark.parametrize("topics, message", [
    (["/head/image", "/nope/image"], "no image topic '/nope/image'; image topics: /head/image, /wrist/image/compressed"),
    (["/head/image", "/chatter"], "no image topic '/chatter': it carries std_msgs/msg/String"),
    (["/head/image", "/head/image"], "/head/image is given twice"),
    (["/head/image", "head=/wrist/image/compressed"], "both camera 'head'"),
])
def test_bad_camera_topics_are_refused_before_the_model_loads(two_camera_bag, tmp_path, capsys, topics, message):
    args = ["run", "--input", str(two_camera_bag), "--output", str(tmp_path / "out"), *RUN]
    assert main([*args, *(word for topic in topics for word in ("--image-topic", topic))]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert message in err and "loading SAM 3" not in err
    assert not (tmp_path / "out").exists()


def test_cameras_need_a_rosbag2_and_one_run_each_with_inputs(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    video = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    video.write(np.zeros((24, 32, 3), np.uint8))
    video.release()
    assert main(["run", "--input", str(clip), "--output", str(tmp_path / "out"), *CAMERAS, *RUN]) == EXIT_FAILED
    assert "is not a rosbag2 recording: an image topic per camera" in capsys.readouterr().err
    assert main(["run", "--inputs", str(tmp_path), "--output", str(tmp_path / "out"), *CAMERAS, *RUN]) == EXIT_FAILED
    assert "with --inputs, give one --image-topic" in capsys.readouterr().err


def test_a_user_file_named_like_a_cameras_overlay_is_never_overwritten(two_camera_bag, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlay_wrist.mp4").write_text("my video")
    assert main(["run", "--input", str(two_camera_bag), "--output", str(out), *CAMERAS, *RUN]) == EXIT_FAILED
    assert "already holds overlay_wrist.mp4" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["overlay_wrist.mp4"]
    assert (out / "overlay_wrist.mp4").read_text() == "my video"
