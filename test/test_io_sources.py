"""Frame sources on files made here: an mp4, an image folder, and rosbag2 bags in MCAP and sqlite3."""
import operator
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from sam3_ros.io.messages import header
from sam3_ros.io.ros_types import RosbagsTypes
from sam3_ros.io.sources import (
    ImageFolderSource,
    RosbagSource,
    SourceError,
    VideoFileSource,
    open_source,
)

TYPES = RosbagsTypes()


def picture(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """An RGB image that differs per seed and survives lossless storage exactly."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# -- video ---------------------------------------------------------------------------------------


def write_video(path: Path, colours: list[tuple[int, int, int]], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (32, 24))
    for colour in colours:
        writer.write(np.full((24, 32, 3), colour[::-1], np.uint8))  # OpenCV wants BGR
    writer.release()


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220)]


def test_video_frames_are_rgb_in_order_with_increasing_stamps(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, COLOURS, fps=10.0)
    source = VideoFileSource(path)
    frames = list(source)
    assert source.frame_count() == len(frames) == len(COLOURS)
    assert operator.length_hint(source) == len(COLOURS)  # what a progress bar can ask
    assert [f.index for f in frames] == list(range(len(COLOURS)))
    for frame, colour in zip(frames, COLOURS):
        assert frame.rgb.shape == (24, 32, 3) and frame.rgb.dtype == np.uint8
        assert np.abs(frame.rgb.reshape(-1, 3).mean(axis=0) - colour).max() < 12
    stamps = [f.stamp_ns for f in frames]
    np.testing.assert_allclose(stamps, [i * 100_000_000 for i in range(len(COLOURS))], atol=2_000_000)
    assert list(source)[0].stamp_ns == stamps[0]  # iterating again starts over


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 10])
def test_unreadable_video(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="broken.mp4"):
        VideoFileSource(path)


def test_missing_video():
    with pytest.raises(SourceError, match="does not exist"):
        VideoFileSource("/no/such/clip.mp4")


# -- image folder ------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for number in (10, 1, 2):
        cv2.imwrite(str(folder / f"img{number}.png"), picture(number)[..., ::-1])
    (folder / "img3.png").write_bytes(b"\x89PNG but then garbage")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_folder_in_natural_order_skipping_a_corrupt_file(image_folder):
    warnings: list[str] = []
    source = ImageFolderSource(image_folder, fps=4, on_warning=warnings.append)
    frames = list(source)
    assert source.frame_count() == 4
    # Files in order: img1, img2, img3 (corrupt), img10.
    assert [f.index for f in frames] == [0, 1, 3]
    assert [f.stamp_ns for f in frames] == [0, 250_000_000, 750_000_000]
    for frame, number in zip(frames, (1, 2, 10)):
        assert np.array_equal(frame.rgb, picture(number))
    assert len(warnings) == 1 and "img3.png" in warnings[0]


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.md").write_text("hello")
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path)


# -- rosbag2 ---------------------------------------------------------------------------------------------

HEADER_STAMPS = [1_000 * 10**9 + i * 50_000_000 for i in range(4)]
RECORDED_OFFSET_NS = 7_000_000  # recording time lags the header stamp


def image_msg(rgb: np.ndarray, stamp_ns: int, padding: int = 4):
    """bgr8 sensor_msgs/Image with `padding` junk bytes after each row."""
    rows = np.concatenate([rgb[..., ::-1].reshape(rgb.shape[0], -1),
                           np.full((rgb.shape[0], padding), 0xEE, np.uint8)], axis=1)
    return TYPES.new("sensor_msgs/msg/Image", header=header(stamp_ns, "cam_optical", TYPES),
                     height=rgb.shape[0], width=rgb.shape[1], encoding="bgr8", is_bigendian=0,
                     step=rows.shape[1], data=rows.reshape(-1))


def compressed_msg(rgb: np.ndarray, stamp_ns: int):
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    return TYPES.new("sensor_msgs/msg/CompressedImage", header=header(stamp_ns, "cam_optical", TYPES),
                     format="png", data=png.reshape(-1))


def write_bag(path: Path, storage: StoragePlugin) -> None:
    """/cam/image: frames 0, 2 and 3 fine, 1 truncated; /cam/compressed: all four as png; /chatter: text.
    Frame 3 has a zero header stamp."""
    store = TYPES.store
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=storage) as writer:
        topics = {name: writer.add_connection(name, msgtype, typestore=store) for name, msgtype in [
            ("/cam/image", "sensor_msgs/msg/Image"),
            ("/cam/compressed", "sensor_msgs/msg/CompressedImage"),
            ("/chatter", "std_msgs/msg/String"),
        ]}
        for i, stamp in enumerate(HEADER_STAMPS):
            header_stamp = 0 if i == 3 else stamp
            image = image_msg(picture(i), header_stamp)
            if i == 1:
                image.data = image.data[:-10]
            recorded = stamp + RECORDED_OFFSET_NS
            for topic, msg in [("/cam/image", image),
                               ("/cam/compressed", compressed_msg(picture(i), header_stamp)),
                               ("/chatter", TYPES.new("std_msgs/msg/String", data=f"hello {i}"))]:
                writer.write(topics[topic], recorded, store.serialize_cdr(msg, msg.__msgtype__))


@pytest.fixture(params=[StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def bag(request, tmp_path) -> Path:
    path = tmp_path / "recording"
    write_bag(path, request.param)
    return path


def test_raw_images_from_a_bag(bag):
    warnings: list[str] = []
    source = RosbagSource(bag, "/cam/image", on_warning=warnings.append)
    frames = list(source)
    assert source.frame_count() == 4
    assert [f.index for f in frames] == [0, 2, 3]
    for frame in frames:
        assert np.array_equal(frame.rgb, picture(frame.index))
        assert frame.frame_id == "cam_optical"
    # Frame 3 has no header stamp: it gets the recording time.
    assert [f.stamp_ns for f in frames] == [HEADER_STAMPS[0], HEADER_STAMPS[2],
                                            HEADER_STAMPS[3] + RECORDED_OFFSET_NS]
    assert len(warnings) == 1 and "message 1" in warnings[0] and "bytes of data" in warnings[0]


def test_compressed_images_from_a_bag(bag):
    frames = list(RosbagSource(bag, "/cam/compressed"))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    for frame in frames:
        assert np.array_equal(frame.rgb, picture(frame.index))


def test_missing_topic_lists_the_image_topics(bag):
    with pytest.raises(SourceError, match="no image topic '/camera'; image topics: /cam/compressed, /cam/image"):
        RosbagSource(bag, "/camera")
    with pytest.raises(SourceError, match="no image topic '/chatter'"):
        RosbagSource(bag, "/chatter")


def test_one_topic_per_camera_merged_in_recording_order(bag):
    warnings: list[str] = []
    source = RosbagSource(bag, cameras={"raw": "/cam/image", "packed": "/cam/compressed"}, on_warning=warnings.append)
    assert source.frame_count() == 8 and source.camera_frame_count("raw") == 4
    frames = list(source)
    # Recording order; each frame's index counts its own camera's messages (raw 1 is truncated).
    assert [(f.camera, f.index) for f in frames if f.camera == "raw"] == [("raw", 0), ("raw", 2), ("raw", 3)]
    assert [(f.camera, f.index) for f in frames if f.camera == "packed"] == [("packed", i) for i in range(4)]
    recorded = [HEADER_STAMPS[f.index] for f in frames]
    assert recorded == sorted(recorded)
    for frame in frames:
        assert np.array_equal(frame.rgb, picture(frame.index))
    assert len(warnings) == 1 and "message 1 on /cam/image" in warnings[0]


def test_a_camera_topic_must_be_an_image_topic_of_a_recording(bag, image_folder):
    with pytest.raises(SourceError, match="no image topic '/chatter': it carries std_msgs/msg/String; image topics"):
        RosbagSource(bag, cameras={"raw": "/cam/image", "talk": "/chatter"})
    with pytest.raises(SourceError, match="no image topic '/cam/depth'"):
        open_source(bag, cameras={"raw": "/cam/image", "depth": "/cam/depth"})
    with pytest.raises(SourceError, match="is not a rosbag2 recording: an image topic per camera"):
        open_source(image_folder, cameras={"raw": "/cam/image"})


def test_topic_is_required_when_several_image_topics_exist(bag):
    with pytest.raises(SourceError, match="choose an image topic"):
        RosbagSource(bag)


def test_bare_mcap_file(tmp_path):
    write_bag(tmp_path / "recording", StoragePlugin.MCAP)
    (mcap_file,) = (tmp_path / "recording").glob("*.mcap")
    source = open_source(mcap_file, "/cam/compressed")
    assert isinstance(source, RosbagSource) and source.frame_count() == 4
    (tmp_path / "recording" / "metadata.yaml").unlink()
    source = open_source(tmp_path / "recording", "/cam/compressed")  # a folder with one .mcap
    assert len(list(source)) == 4


def test_unreadable_bag(tmp_path):
    path = tmp_path / "broken.mcap"
    path.write_bytes(b"not an mcap file")
    with pytest.raises(SourceError, match="cannot read the recording"):
        RosbagSource(path, "/cam/image")


# -- choosing a source ---------------------------------------------------------------------------------


def test_open_source_chooses_by_path(tmp_path, image_folder):
    write_bag(tmp_path / "bag", StoragePlugin.SQLITE3)
    write_video(tmp_path / "clip.mp4", COLOURS[:2])
    assert isinstance(open_source(tmp_path / "bag", "/cam/image"), RosbagSource)
    assert isinstance(open_source(image_folder), ImageFolderSource)
    assert isinstance(open_source(tmp_path / "clip.mp4"), VideoFileSource)


def test_open_source_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="neither a rosbag2 recording nor a folder of images"):
        open_source(tmp_path / "empty")
    write_bag(tmp_path / "bag", StoragePlugin.MCAP)
    with pytest.raises(SourceError, match="/cam/compressed, /cam/image"):
        open_source(tmp_path / "bag")
