"""`--image-topic` values to the cameras of a recording (issue 16)."""
import pytest

from sam3_ros.io.camera_topics import camera_name, camera_topics


@pytest.mark.parametrize("topic, name", [
    ("/head/image", "head"),
    ("/head/image/compressed", "head"),
    ("/camera/color/image_raw", "camera_color"),
    ("/image", "image"),
    ("/image/compressed", "image"),
])
def test_a_camera_is_named_after_its_topics_namespace(topic, name):
    assert camera_name(topic) == name


def test_one_unnamed_topic_or_none_is_the_single_camera_run():
    assert camera_topics([]) is None
    assert camera_topics(["/camera/color/image_raw"]) is None


def test_several_topics_or_a_named_one_are_cameras_in_the_order_given():
    assert camera_topics(["/wrist/image/compressed", "nav_left=/nav/left/image", "/head/image"]) == {
        "wrist": "/wrist/image/compressed", "nav_left": "/nav/left/image", "head": "/head/image"}
    assert camera_topics(["front=/camera/color/image_raw"]) == {"front": "/camera/color/image_raw"}


@pytest.mark.parametrize("values, message", [
    (["/head/image", "/head/image"], "/head/image is given twice"),
    (["/head/image", "left=/head/image"], "/head/image is given twice"),
    (["/head/image", "/head/image/compressed"], "both camera 'head'; name them"),
    (["a=/x/image", "a=/y/image"], "both camera 'a'"),
    (["/1st/image", "/b/image"], "the camera name '1st' made from /1st/image is not a name"),
    (["head-cam=/a/image"], "the camera name 'head-cam' is not a name"),
    (["head="], "names no topic"),
])
def test_ambiguous_or_bad_cameras_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        camera_topics(values)
