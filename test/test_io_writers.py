"""Result writers, read back with independent readers (rosbags AnyReader, mcap, json, OpenCV)."""
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from synthetic_results import HEIGHT, WIDTH, sample_masks, sample_result

from sam3_ros.core.masks import RleMask
from sam3_ros.io.writers import (
    DETECTIONS_TOPIC,
    INSTANCES_TOPIC,
    JsonResultsWriter,
    McapResultsWriter,
    OverlayVideoWriter,
)

STAMPS = [5 * 10**9 + i * 33_000_000 for i in range(3)]


def results():
    """Three frames; the middle one has no instances."""
    frames = [sample_result(stamp, index) for index, stamp in enumerate(STAMPS)]
    frames[1] = replace(frames[1], instances=[])
    return frames


class Boom(RuntimeError):
    pass


# -- MCAP ---------------------------------------------------------------------------------------------


@pytest.fixture
def bag(tmp_path) -> Path:
    path = tmp_path / "results"
    with McapResultsWriter(path, frame_id="camera_optical") as writer:
        for result in results():
            writer.write(result)
    return path


def test_bag_reads_back_with_rosbags(bag):
    # AnyReader builds its types from the definitions stored in the bag and checks their hashes.
    with AnyReader([bag]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            INSTANCES_TOPIC: "sam3_ros_interfaces/msg/InstanceArray",
            DETECTIONS_TOPIC: "vision_msgs/msg/Detection2DArray",
        }
        read = {INSTANCES_TOPIC: [], DETECTIONS_TOPIC: []}
        for conn, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            assert timestamp == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert msg.header.frame_id == "camera_optical"
            read[conn.topic].append((timestamp, msg))
    assert [t for t, _ in read[INSTANCES_TOPIC]] == [t for t, _ in read[DETECTIONS_TOPIC]] == STAMPS
    masks = sample_masks()
    first = read[INSTANCES_TOPIC][0][1]
    for inst in first.instances:
        decoded = RleMask(inst.mask_height, inst.mask_width, tuple(int(c) for c in inst.mask_rle)).to_array()
        assert np.array_equal(decoded, masks[inst.track_id])
    assert read[INSTANCES_TOPIC][1][1].instances == []
    assert [d.id for d in read[DETECTIONS_TOPIC][2][1].detections] == ["3", "4", "70000", "12"]


def test_bag_metadata_has_types_and_hashes(bag):
    with AnyReader([bag]) as reader:
        for conn in reader.connections:
            assert conn.digest.startswith("RIHS01_")
            assert conn.msgcount == 3


def test_bag_stores_complete_message_definitions_for_mcap_readers(bag):
    (mcap_file,) = bag.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        schemas = {s.name: s for s in summary.schemas.values()}
        assert {c.topic for c in summary.channels.values()} == {INSTANCES_TOPIC, DETECTIONS_TOPIC}
        log_times = [m.log_time for _, _, m in reader.iter_messages(topics=[INSTANCES_TOPIC])]
    assert log_times == STAMPS
    instances = schemas["sam3_ros_interfaces/msg/InstanceArray"]
    assert instances.encoding == "ros2msg"
    text = instances.data.decode()
    for nested in ("sam3_ros_interfaces/Instance", "vision_msgs/BoundingBox2D", "vision_msgs/Pose2D",
                   "vision_msgs/Point2D", "std_msgs/Header", "geometry_msgs/Point", "geometry_msgs/Vector3"):
        assert f"MSG: {nested}\n" in text
    assert "uint32[] mask_rle" in text and "uint8 STATE_LOST=2" in text
    detections = schemas["vision_msgs/msg/Detection2DArray"].data.decode()
    assert "MSG: vision_msgs/ObjectHypothesisWithPose\n" in detections


def test_bag_decodes_with_mcap_ros2_from_the_stored_definitions_alone(bag):
    decoder = pytest.importorskip("mcap_ros2.decoder", reason="mcap-ros2-support is not installed")
    (mcap_file,) = bag.glob("*.mcap")
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[decoder.DecoderFactory()])
        decoded = [(channel.topic, msg) for _, channel, _, msg in reader.iter_decoded_messages()]
    instances = [msg for topic, msg in decoded if topic == INSTANCES_TOPIC]
    track_ids = [[i.track_id for i in msg.instances] for msg in instances]
    assert track_ids == [[3, 4, 70000, 12], [], [3, 4, 70000, 12]]
    assert instances[0].instances[0].mask_rle == list(sample_result().instances[0].mask.counts)


def test_bag_is_finalised_when_the_block_raises(tmp_path):
    path = tmp_path / "results"
    with pytest.raises(Boom):
        with McapResultsWriter(path) as writer:
            writer.write(results()[0])
            raise Boom("pipeline crashed")
    assert (path / "metadata.yaml").exists()
    with AnyReader([path]) as reader:
        assert sum(1 for _ in reader.messages()) == 2  # one message per topic


def test_bag_refuses_to_overwrite_and_needs_stamps(tmp_path, bag):
    with pytest.raises(FileExistsError):
        McapResultsWriter(bag)
    with McapResultsWriter(tmp_path / "other") as writer:
        with pytest.raises(ValueError, match="no stamp_ns"):
            writer.write(replace(results()[0], stamp_ns=None))
    with pytest.raises(ValueError, match="closed"):
        writer.write(results()[0])


# -- JSON -----------------------------------------------------------------------------------------------

HEADER = {"source": "clip.mp4", "prompts": [{"id": "cup", "text": "red cup"}], "model": {"name": "sam3"}}


def test_json_document(tmp_path):
    path = tmp_path / "results.json"
    with JsonResultsWriter(path, **HEADER) as writer:
        for result in results():
            writer.write(result)
    document = json.loads(path.read_text())
    assert document["header"] == HEADER
    assert document["frames"] == [json.loads(json.dumps(r.to_json())) for r in results()]
    assert (document["complete"], document["error"]) == (True, None)


def test_json_stays_valid_after_an_error(tmp_path):
    path = tmp_path / "results.json"
    with pytest.raises(Boom):
        with JsonResultsWriter(path, **HEADER) as writer:
            writer.write(results()[0])
            writer.write(results()[1])
            raise Boom("out of memory")
    document = json.loads(path.read_text())
    assert [f["frame_index"] for f in document["frames"]] == [0, 1]
    assert document["complete"] is False and "Boom: out of memory" in document["error"]


def test_json_refuses_nan_and_stays_valid(tmp_path):
    path = tmp_path / "results.json"
    bad = replace(results()[0], timings_ms={"total": float("nan")})
    with pytest.raises(ValueError):
        with JsonResultsWriter(path) as writer:
            writer.write(bad)
    document = json.loads(path.read_text())
    assert document["frames"] == [] and document["complete"] is False


def test_json_with_no_frames(tmp_path):
    path = tmp_path / "results.json"
    JsonResultsWriter(path).close()
    assert json.loads(path.read_text())["frames"] == []


# -- video -------------------------------------------------------------------------------------------------


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return frames


@pytest.mark.parametrize("size, video_size", [((HEIGHT, WIDTH), (HEIGHT, WIDTH)), ((31, 45), (32, 46))])
def test_overlay_video_has_every_frame(tmp_path, size, video_size):
    path = tmp_path / "overlay.mp4"
    colours = [(220, 40, 40), (40, 220, 40), (40, 40, 220), (200, 200, 200)]
    with OverlayVideoWriter(path, fps=15) as video:
        for colour in colours:
            video.write(np.full((*size, 3), colour, np.uint8))
    assert video.frames_written == 4
    frames = read_video(path)
    assert len(frames) == 4
    assert frames[0].shape[:2] == video_size  # MPEG-4 sizes are even
    for frame, colour in zip(frames, colours):
        assert np.abs(frame.reshape(-1, 3).mean(axis=0) - colour).max() < 12


def test_overlay_video_is_playable_after_an_error(tmp_path):
    path = tmp_path / "overlay.mp4"
    with pytest.raises(Boom):
        with OverlayVideoWriter(path, fps=10) as video:
            for _ in range(3):
                video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
            raise Boom("stop")
    assert len(read_video(path)) == 3


def test_overlay_video_scales_a_frame_of_another_size_with_one_warning(tmp_path):
    warnings = []
    with OverlayVideoWriter(tmp_path / "overlay.mp4", fps=10, on_warning=warnings.append) as video:
        video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        video.write(np.full((2 * HEIGHT, 2 * WIDTH, 3), 200, np.uint8))  # twice the size: fills the frame
        video.write(np.full((10, 10, 3), 200, np.uint8))  # square: bars left and right
    frames = read_video(tmp_path / "overlay.mp4")
    assert len(frames) == 3 and all(f.shape[:2] == (HEIGHT, WIDTH) for f in frames)
    assert frames[1].mean() > 180
    assert frames[2][:, :5].mean() < 20 and frames[2][:, WIDTH // 2].mean() > 180
    assert len(warnings) == 1 and f"{2 * WIDTH}x{2 * HEIGHT}" in warnings[0]


@pytest.mark.parametrize("step_ns, fps", [(100_000_000, 10.0), (66_666_667, 15.0), (33_333_333, 30.0)])
def test_overlay_video_without_a_rate_takes_it_from_the_stamps(tmp_path, step_ns, fps):
    path = tmp_path / "overlay.mp4"
    with OverlayVideoWriter(path, fps=None) as video:
        for i in range(12):
            video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 5 * 10**9 + i * step_ns)
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=1e-3)
    capture.release()
    assert len(read_video(path)) == 12


def test_overlay_video_of_fewer_frames_than_the_rate_probe_is_whole(tmp_path):
    path = tmp_path / "overlay.mp4"
    with OverlayVideoWriter(path, fps=None) as video:
        for i in range(3):
            video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8), i * 200_000_000)
    assert len(read_video(path)) == 3
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0, rel=1e-3)
    capture.release()


def test_overlay_video_checks_its_state(tmp_path):
    with OverlayVideoWriter(tmp_path / "overlay.mp4", fps=10) as video:
        video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with pytest.raises(ValueError, match="closed"):
        video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        OverlayVideoWriter(tmp_path / "x.mp4", fps=0)


def test_the_bag_s_storage_file_is_named_like_ros2_bag_names_it(tmp_path):
    """rosbags would leave results.mcap/results.mcap.mcap; ros2 bag record names it <bag>_0.mcap."""
    bag = tmp_path / "results.mcap"
    with McapResultsWriter(bag) as writer:
        writer.write(sample_result())
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "results_0.mcap"]
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == ["results_0.mcap"] and info["files"][0]["path"] == "results_0.mcap"
    with AnyReader([bag]) as reader:
        assert sum(1 for _ in reader.messages()) == 2


def test_overlay_video_of_stamps_no_camera_has_plays_at_30_fps_with_a_warning(tmp_path):
    """Stamps a microsecond apart (a synthetic bag) would ask mp4v for a million frames per second."""
    path, warnings = tmp_path / "overlay.mp4", []
    with OverlayVideoWriter(path, fps=None, on_warning=warnings.append) as video:
        for i in range(4):
            video.write(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 10**10 + i * 1000)
    assert len(read_video(path)) == 4
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    capture.release()
    assert len(warnings) == 1 and "1e+06 frames per second" in warnings[0]
