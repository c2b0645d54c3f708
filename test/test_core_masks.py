"""COCO RLE masks, checked against an independent numpy encoder."""
import numpy as np
import pytest
import torch

from sam3_ros.core.masks import RleMask, mask_bbox_xyxy, masks_bbox_xyxy


def reference_rle(mask: np.ndarray) -> list[int]:
    """Plain-Python COCO RLE: column-major runs starting with zeros."""
    counts, current, run = [], False, 0
    for value in mask.flatten(order="F"):
        if bool(value) != current:
            counts.append(run)
            current, run = bool(value), 0
        run += 1
    counts.append(run)
    return counts


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48), (3, 200)])
def test_rle_round_trip_matches_reference_encoder(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.3, 1.0):
        mask = rng.random(shape) < density
        rle = RleMask.from_array(mask)
        assert list(rle.counts) == reference_rle(mask)
        assert np.array_equal(rle.to_array(), mask)
        assert rle.area == int(mask.sum())
        assert RleMask.from_coco(rle.to_coco()) == rle


def test_rle_from_torch_matches_numpy():
    mask = torch.rand(33, 17) > 0.5
    assert RleMask.from_array(mask) == RleMask.from_array(mask.numpy())


def test_rle_rejects_inconsistent_counts():
    with pytest.raises(ValueError):
        RleMask(4, 4, (3, 2))


def test_boxes_are_tight_pixel_edges():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 11:20] = True
    assert mask_bbox_xyxy(mask) == (11.0, 5.0, 20.0, 9.0)
    assert RleMask.from_array(mask).bbox_xyxy() == (11.0, 5.0, 20.0, 9.0)
    assert RleMask.from_array(np.zeros((3, 3), bool)).bbox_xyxy() is None
    batch = torch.stack([torch.from_numpy(mask), torch.zeros(20, 30, dtype=torch.bool)])
    assert masks_bbox_xyxy(batch).tolist() == [[11.0, 5.0, 20.0, 9.0], [0.0, 0.0, 0.0, 0.0]]
