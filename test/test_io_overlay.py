"""Overlay drawing and track colours."""
import colorsys
import itertools

import numpy as np
import pytest
from synthetic_results import HEIGHT, WIDTH, disc, instance

from sam3_ros.core.results import FrameResult, TrackState
from sam3_ros.io.overlay import draw_overlay, instance_caption, track_colour

GREY = 100


def canvas() -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), GREY, np.uint8)


def one_disc(state=TrackState.CONFIRMED, track_id=5) -> FrameResult:
    # A large disc low in the image, so its centre is clear of the label above the box.
    mask = disc(32, 34, 12)
    return FrameResult(0, HEIGHT, WIDTH, [instance(track_id, mask, "ball", 0.87, state)])


def test_colours_are_stable_valid_and_well_spread():
    colours = [track_colour(i) for i in range(1, 13)]
    assert colours == [track_colour(i) for i in range(1, 13)]
    assert all(0 <= c <= 255 for colour in colours for c in colour)
    distances = [np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(colours, 2)]
    assert min(distances) > 20
    # Consecutive tracks get clearly different hues.
    hues = [colorsys.rgb_to_hsv(*(np.array(c) / 255))[0] for c in colours]
    assert all(min(abs(a - b), 1 - abs(a - b)) > 0.2 for a, b in zip(hues, hues[1:]))


def test_captions():
    assert instance_caption(one_disc().instances[0]) == "ball #5 0.87"
    assert instance_caption(one_disc(TrackState.TENTATIVE).instances[0]) == "ball #5? 0.87"


def test_mask_is_blended_with_the_track_colour():
    image = canvas()
    drawn = draw_overlay(image, one_disc(), alpha=0.5)
    expected = np.rint((np.full(3, GREY) + np.array(track_colour(5))) / 2)
    assert np.abs(drawn[34, 32].astype(int) - expected).max() <= 1
    assert np.array_equal(drawn[2:5, 58:62], canvas()[2:5, 58:62])  # far from the instance: untouched
    assert np.array_equal(image, canvas())  # the input is not modified


def test_contour_and_box_use_the_track_colour():
    drawn = draw_overlay(canvas(), one_disc())
    colour = track_colour(5)
    assert tuple(drawn[34, 20]) == colour  # the disc's leftmost pixel, on its contour
    assert tuple(drawn[40, 20]) == colour  # the box's left edge below the disc's widest row


def test_label_is_drawn_near_the_box():
    drawn = draw_overlay(canvas(), one_disc())
    box_top = 34 - 12
    above = drawn[box_top - 14:box_top, 20:60]
    assert (above != GREY).any()


def test_lost_instances_are_not_drawn():
    drawn = draw_overlay(canvas(), one_disc(TrackState.LOST))
    assert np.array_equal(drawn, canvas())


def blend(under, colour):
    return np.rint((np.asarray(under, float) + colour) / 2)


def test_better_instance_is_drawn_on_top():
    result = FrameResult(0, HEIGHT, WIDTH, [instance(1, disc(30, 34, 10), score=0.9),
                                            instance(2, disc(38, 36, 10), score=0.6)])
    # Pixel (x=34, y=36) is inside both discs, clear of their contours, boxes and labels.
    drawn = draw_overlay(canvas(), result)[36, 34]
    expected = blend([GREY] * 3, track_colour(1))  # the better instance's colour alone, not blended twice
    assert np.abs(drawn - expected).max() <= 1


def test_image_size_must_match():
    with pytest.raises(ValueError, match="64x48"):
        draw_overlay(np.zeros((10, 10, 3), np.uint8), one_disc())
