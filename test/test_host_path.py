"""The real-time host path gives the same results as plain, obviously-correct references.

References written here: full-frame ``F.interpolate`` + threshold, COCO RLE by its definition,
tight boxes by ``np.nonzero``, 3D statistics over every pixel, greedy NMS per concept. They run on
the stand-in network's scenes (``standin_network.py``: 288 x 288 logits, the real mask size) and on
the tiny model's logits.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from standin_network import StandInComponents, StaticScene
from test_ros_controller import T, camera_info, image_msg

import sam3_ros.core.pipeline as pipeline_module
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.depth import crop_points, position_of_points
from sam3_ros.core.frame_masks import upsample_masks
from sam3_ros.core.geometry import MAX_STATISTICS_POINTS
from sam3_ros.core.mask_ops import mask_iou, mask_nms
from sam3_ros.core.masks import MaskCrop, RleMask
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.prompts import make_concept
from sam3_ros.factory import LoadedPipeline
from sam3_ros.io import messages
from sam3_ros.model.tiny import byte_level_clip_tokenizer
from sam3_ros.ros.controller import NodeCore
from sam3_ros.ros.params import NodeParams

ROUNDING = 1e-4  # a reference logit this close to 0 may land on either side of the threshold


# -- references --------------------------------------------------------------------------------------------

def reference_masks(logits: torch.Tensor, size) -> tuple[np.ndarray, np.ndarray]:
    """Full-frame bilinear upsampling of every mask, thresholded at 0: (masks, values)."""
    values = F.interpolate(logits[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return (values > 0).numpy(), values.numpy()


def reference_rle(mask: np.ndarray) -> tuple[int, ...]:
    """COCO RLE by definition: run lengths over the column-major pixels, starting with a run of 0s."""
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(edges).tolist()
    return tuple([0] + counts if flat[0] else counts)


def reference_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)


def assert_same_mask(mask: RleMask, box, reference: np.ndarray, values: np.ndarray) -> None:
    """Identical RLE and box; or, only where the reference logit is within rounding of 0, a
    differing pixel, with IoU >= 0.999."""
    if mask.counts != reference_rle(reference):
        ours = mask.to_array()
        differ = ours != reference
        assert np.abs(values[differ]).max() < ROUNDING, "pixels differ beyond rounding at the threshold"
        assert (ours & reference).sum() / (ours | reference).sum() >= 0.999
        return
    assert box == reference_box(reference)
    crop = mask.crop()
    assert np.array_equal(crop.bits, reference[crop.y1:crop.y2, crop.x1:crop.x2])


def edge_case_logits() -> torch.Tensor:
    """Masks that reach every border, whole columns, single pixels, many runs, and nothing."""
    size = 288
    cases = torch.full((8, size, size), -4.0)
    cases[0] = 4.0                                   # the whole frame
    cases[1, :, -30:] = 4.0                          # whole columns on the right edge
    cases[2, 0, 0] = 9.0                             # one pixel, top-left
    cases[3, -1, -1] = 9.0                           # one pixel, bottom-right
    cases[4, :, 100:101] = 6.0                       # one whole column in the middle
    cases[5] = torch.sin(torch.arange(size)[:, None] / 3.0) * torch.cos(torch.arange(size)[None, :] / 5.0) * 5
    cases[6, 140:150, :] = 3.0                       # a band across the whole width
    return cases                                     # cases[7]: nothing


def smooth_random_logits(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 1, 288, 288, generator=generator) * 3 + torch.randn(count, 1, 1, 1, generator=generator) * 4
    return F.avg_pool2d(noise, 9, 1, 4)[:, 0]


# -- masks ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (1080, 1920), (37, 53), (288, 288), (600, 200)])
def test_region_upsampling_equals_full_frame_upsampling(size):
    height, width = size
    logits = torch.cat([StaticScene(width, height, 7).logits(), smooth_random_logits(6, seed=height),
                        edge_case_logits()])
    out = upsample_masks(logits, size)
    references, values = reference_masks(logits, size)
    assert len(out.masks) == len(logits)
    for mask, box, reference, value in zip(out.masks, out.boxes, references, values):
        if not reference.any():
            assert mask is None and box is None
            continue
        assert mask.height == height and mask.width == width
        assert_same_mask(mask, box, reference, value)


def test_low_res_logits_of_another_size_and_dtype():
    logits = smooth_random_logits(3, seed=1)[:, :200, :]  # a non-square low-res grid
    out = upsample_masks(logits.to(torch.bfloat16), (300, 500))
    references, values = reference_masks(logits.to(torch.bfloat16), (300, 500))
    for mask, box, reference, value in zip(out.masks, out.boxes, references, values):
        assert_same_mask(mask, box, reference, value)


def test_no_instances():
    assert upsample_masks(torch.zeros(0, 288, 288), (480, 640)).masks == []


@pytest.mark.parametrize("width, height, count", [(640, 480, 1), (1280, 720, 20), (1920, 1080, 5)])
def test_pipeline_instances_equal_the_reference_on_stand_in_scenes(width, height, count):
    scene = StaticScene(width, height, count)
    pipeline = Sam3Pipeline(StandInComponents(scene).components(), byte_level_clip_tokenizer(),
                            PipelineConfig().updated({"tracking.max_tracks": count}))
    pipeline.set_concepts([make_concept(None, "object")])
    references, values = reference_masks(scene.logits(), (height, width))
    image = np.zeros((height, width, 3), np.uint8)
    for frame in range(4):  # frame 0: masks from detections; later: from the tracker
        result = pipeline.step(image)
        assert len(result.instances) == count
        matched = set()
        for inst in result.instances:
            ours = inst.mask.to_array()
            k = int(np.argmax([(ours & r).sum() for r in references]))
            matched.add(k)
            assert_same_mask(inst.mask, inst.box_xyxy, references[k], values[k])
        assert len(matched) == count


def test_pipeline_instances_equal_the_reference_on_the_tiny_model(tiny, tiny_components, monkeypatch):
    seen = []

    def recording(logits, image_size):
        seen.append((logits.detach().clone(), image_size))
        return upsample_masks(logits, image_size)
    monkeypatch.setattr(pipeline_module, "upsample_masks", recording)
    config = PipelineConfig().updated({"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02,
                                       "tracking.max_tracks": 8})
    pipeline = Sam3Pipeline(tiny_components, tiny.tokenizer, config)
    pipeline.set_concepts([make_concept(None, "red cup"), make_concept(None, "box")])
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(3):
        result = pipeline.step((rng.random((90, 160, 3)) * 255).astype(np.uint8))
        if not result.instances:
            continue
        logits, size = seen[-1]
        references, values = reference_masks(logits, size)
        reported = [r for r, v in zip(references, values) if r.any()]
        reported_values = [v for r, v in zip(references, values) if r.any()]
        assert len(result.instances) == len(reported)
        for inst, reference, value in zip(result.instances, reported, reported_values):
            assert_same_mask(inst.mask, inst.box_xyxy, reference, value)
            compared += 1
    assert compared > 0, "the tiny model gave no instance to compare"


def test_nms_over_all_concepts_equals_greedy_nms_per_concept():
    generator = torch.Generator().manual_seed(3)
    masks = F.avg_pool2d(torch.randn(30, 1, 64, 64, generator=generator), 15, 1, 7)[:, 0] > 0
    scores = torch.rand(30, generator=generator)
    groups = torch.randint(0, 3, (30,), generator=generator)
    kept = mask_nms(scores, masks, 0.3, groups=groups).tolist()

    expected = []
    for group in range(3):
        members = sorted(np.flatnonzero(groups.numpy() == group), key=lambda i: -float(scores[i]))
        chosen = []
        for i in members:
            if all(float(mask_iou(masks[i:i + 1], masks[j:j + 1])) <= 0.3 for j in chosen):
                chosen.append(i)
        expected += chosen
    assert kept == expected


# -- 3D --------------------------------------------------------------------------------------------------------

def reference_points(mask, depth_m, fx, fy, cx, cy):
    """Every mask pixel with depth, outliers (beyond max(5 cm, 3 robust sigmas) of the median) removed."""
    rows, cols = np.nonzero(mask & np.isfinite(depth_m) & (depth_m > 0))
    z = depth_m[rows, cols].astype(np.float64)
    median = np.median(z)
    band = max(0.05, 3 * 1.4826 * np.median(np.abs(z - median)))
    keep = np.abs(z - median) <= band
    rows, cols, z = rows[keep], cols[keep], z[keep]
    return np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1)


def reference_pca_box(points):
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    local = centred @ vectors[:, ::-1]
    low, high = local.min(axis=0), local.max(axis=0)
    return points.mean(axis=0) + vectors[:, ::-1] @ ((low + high) / 2), high - low


def assert_position_within_1mm(position, points):
    assert np.abs(np.subtract(position.centroid, points.mean(axis=0))).max() < 1e-3
    low, high = np.percentile(points, (2, 98), axis=0)
    assert np.abs(np.subtract(position.size, high - low)).max() < 1e-3
    centre, size = reference_pca_box(points)
    assert np.abs(np.subtract(position.box.center, centre)).max() < 1e-3
    assert np.abs(np.subtract(position.box.size, size)).max() < 1e-3


def test_3d_from_crops_equals_every_pixel_on_the_stand_in_scene():
    scene = StaticScene(1280, 720, 20)
    depth = scene.depth_mm().astype(np.float32) / 1000
    depth[depth == 0] = np.nan
    fx, fy, cx, cy = scene.camera_k()
    masks = upsample_masks(scene.logits(), (720, 1280)).masks
    for mask in masks:
        points = crop_points(mask.crop(), depth, fx, fy, cx, cy)
        reference = reference_points(mask.to_array(), depth, fx, fy, cx, cy)
        assert len(points) == len(reference) < MAX_STATISTICS_POINTS
        assert_position_within_1mm(position_of_points(points, "cam"), reference)


@pytest.mark.parametrize("shape", ["plane", "cuboid"])
def test_3d_of_an_instance_larger_than_the_statistics_cap_stays_within_1mm(shape):
    height, width = 1080, 1920
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 2.0 + 0.0004 * cols + 0.0002 * rows                  # a tilted plane
    if shape == "cuboid":                                        # a box face jutting out of it
        depth[300:800, 500:1500] = 1.2 + 0.0001 * cols[300:800, 500:1500]
    depth[::53, ::41] = np.nan                                   # missing readings
    mask = np.zeros((height, width), bool)
    mask[200:900, 300:1700] = True                               # ~980,000 pixels
    fx = fy = 1000.0
    points = crop_points(MaskCrop.of(mask), depth, fx, fy, width / 2, height / 2)
    reference = reference_points(mask, depth, fx, fy, width / 2, height / 2)
    assert len(reference) > 5 * MAX_STATISTICS_POINTS  # the cuboid keeps its face, the plane goes
    assert len(points) == len(reference)
    assert_position_within_1mm(position_of_points(points, "cam"), reference)


# -- the node -------------------------------------------------------------------------------------------------

def standin_core(scene: StaticScene) -> NodeCore:
    components = StandInComponents(scene).components()
    factory = lambda config: LoadedPipeline(Sam3Pipeline(components, byte_level_clip_tokenizer(), config),  # noqa: E731
                                            "stand-in network", True)
    params = NodeParams(prompts=["object"], depth_topic="depth", publish_instance_points=True, warmup_frames=1)
    core = NodeCore(params, PipelineConfig().updated({"tracking.max_tracks": scene.count}), T, factory)
    core.configure()
    core.activate()
    return core


def feed_frame(core: NodeCore, scene: StaticScene, stamp_ns: int):
    rgb = np.full((scene.height, scene.width, 3), 90, np.uint8)
    depth = scene.depth_mm()
    depth_msg = T.new("sensor_msgs/msg/Image", header=messages.header(stamp_ns, "camera_optical", T),
                      height=scene.height, width=scene.width, encoding="16UC1", is_bigendian=0,
                      step=scene.width * 2, data=depth.view(np.uint8).reshape(-1))
    info = camera_info(stamp_ns, f=scene.camera_k()[0], size=scene.width)
    info.k[5] = scene.height / 2
    core.on_camera(image_msg(rgb, stamp_ns), info, depth_msg)
    return core.process_next(timeout_s=0.0)


def test_the_node_never_decodes_rle(monkeypatch):
    def decode(self):
        raise AssertionError("an RLE mask was decoded inside the node")
    monkeypatch.setattr(RleMask, "_decode", decode)
    scene = StaticScene(320, 240, 5)
    core = standin_core(scene)
    core.focus.set(1, [1])
    for i in range(4):
        outputs = feed_frame(core, scene, 1_000_000_000 + i * 33_000_000)
        assert core.counters.failed_frames == 0
    assert len(outputs.result.instances) == 5
    assert all(inst.position_3d is not None for inst in outputs.result.instances)
    for name in ("id_image", "overlay", "markers", "instance_points", "focus_mask"):
        assert getattr(outputs, name) is not None, name


def test_outputs_nobody_subscribes_to_are_not_built():
    scene = StaticScene(320, 240, 3)
    core = standin_core(scene)
    robot = {"instances", "detections", "detections_3d", "label_info"}
    core.subscribed = lambda output: output in robot
    outputs = feed_frame(core, scene, 1_000_000_000)
    assert outputs.instances is not None and outputs.detections is not None and outputs.detections_3d is not None
    for name in ("id_image", "overlay", "markers", "instance_points", "focus_mask"):
        assert getattr(outputs, name) is None, name
    assert outputs.result._id_image is None  # the ID image was never painted
    core.subscribed = lambda output: output == "overlay"
    outputs = feed_frame(core, scene, 1_033_000_000)
    assert outputs.overlay is not None and outputs.id_image is None
    assert outputs.result._id_image is None  # the overlay paints its own palette index image
