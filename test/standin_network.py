"""A stand-in SAM 3 network at the real mask size, for host-path tests and benchmarks.

``StaticScene`` lays N ellipses that together cover a quarter of the camera frame on a grid,
as smooth low-res mask logits at SAM 3's real mask size (288 x 288), plus an aligned depth image
(a tilted floor, each object a raised block). ``StandInComponents`` implements every component
interface of ``Sam3Components`` over that scene: the "detector" finds every object each frame,
the "tracker" returns the object a track's memory points at. The network's own cost is timed
(``network_ms``) so a benchmark can subtract it. This is a test double for the network only;
nothing here ships.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from sam3_ros.backends import base

MASK_SIZE = 288   # SAM 3's low-res mask side (1008 / 14 * 4)
IMAGE_SIZE = 1008
GRID = 72
HIDDEN = 32
MEMORY_DIM = 8
LOGIT_SCALE = 8.0  # logit at an object's centre; 0 on its outline


@dataclass
class StaticScene:
    """N static elliptical objects covering a quarter of a ``width`` x ``height`` frame."""

    width: int
    height: int
    count: int
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        cols = max(1, math.ceil(math.sqrt(self.count * self.width / self.height)))
        rows = math.ceil(self.count / cols)
        cell_w, cell_h = MASK_SIZE / cols, MASK_SIZE / rows
        area = MASK_SIZE * MASK_SIZE / 4 / self.count  # low-res pixels per object
        aspect = cell_w / cell_h
        self.semi_axes = (math.sqrt(area / math.pi * aspect), math.sqrt(area / math.pi / aspect))
        centres = [((c + 0.5) * cell_w, (r + 0.5) * cell_h) for r in range(rows) for c in range(cols)]
        jitter = rng.uniform(-0.05, 0.05, size=(self.count, 2)) * np.array([cell_w, cell_h])
        self.centres = np.array(centres[: self.count]) + jitter
        self.depths_m = 1.0 + 0.5 * rng.random(self.count)

    def logits(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(N, 288, 288) float32 mask logits: LOGIT_SCALE at the centre, 0 on the ellipse, negative outside."""
        ys, xs = torch.meshgrid(torch.arange(MASK_SIZE) + 0.5, torch.arange(MASK_SIZE) + 0.5, indexing="ij")
        a, b = self.semi_axes
        out = []
        for cx, cy in self.centres:
            radius = torch.sqrt(((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2)
            out.append(LOGIT_SCALE * (1 - radius))
        return torch.stack(out).float().to(device)

    def depth_mm(self) -> np.ndarray:
        """(H, W) uint16 millimetres: a floor from 2.5 m (top) to 1.8 m (bottom), objects 20 cm nearer
        than their own depth (a block per object's bounding box), and a few missing readings."""
        rows = np.linspace(2.5, 1.8, self.height, dtype=np.float32)[:, None]
        depth = np.repeat(rows, self.width, axis=1)
        sx, sy = self.width / MASK_SIZE, self.height / MASK_SIZE
        a, b = self.semi_axes
        for (cx, cy), z in zip(self.centres, self.depths_m):
            x1, x2 = int((cx - a) * sx), int(math.ceil((cx + a) * sx))
            y1, y2 = int((cy - b) * sy), int(math.ceil((cy + b) * sy))
            depth[max(y1, 0):y2, max(x1, 0):x2] = z - 0.2 * np.linspace(0, 1, max(x2 - max(x1, 0), 1))[None, :]
        depth[::97, ::89] = 0.0  # holes: no reading
        return (depth * 1000).round().astype(np.uint16)

    def camera_k(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy of a camera with a 70 degree horizontal field of view."""
        f = self.width / 2 / math.tan(math.radians(35))
        return f, f, self.width / 2, self.height / 2


class StandInComponents:
    """Sam3Components over a StaticScene: every object detected every frame, an ideal tracker."""

    def __init__(self, scene: StaticScene, device: torch.device | str = "cpu", clock=time.perf_counter):
        self.scene = scene
        self.clock = clock  # what network_ms counts: wall time, or the process's CPU time
        self.device = torch.device(device)
        self.object_logits = scene.logits(self.device)
        centres = torch.tensor(scene.centres, dtype=torch.float32, device=self.device)
        self._centres = centres
        self.network_ms = 0.0
        self.calls = 0

    def components(self) -> base.Sam3Components:
        geometry = base.ModelGeometry(image_size=IMAGE_SIZE, grid=GRID, mask_size=MASK_SIZE, hidden=HIDDEN,
                                 memory_dim=MEMORY_DIM, num_maskmem=7, max_object_pointers=16, num_queries=200)
        timed = self._timed
        return base.Sam3Components(
            name="stand-in", geometry=geometry, device=self.device, dtype=torch.float32,
            vision=timed(self.vision), text=timed(self.text), exemplars=timed(self.exemplars),
            detector=timed(self.detector), tracker=timed(self.tracker), mask_prompter=timed(self.mask_prompter),
            memory_encoder=timed(self.memory_encoder), **_mixing_cameras(),
        )

    def _timed(self, component):
        def call(*args, **kwargs):
            start = self.clock()
            out = component(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.network_ms += (self.clock() - start) * 1e3
            self.calls += 1
            return out
        return call

    # -- components ---------------------------------------------------------------------------------
    def vision(self, pixel_values: torch.Tensor) -> base.VisionFeatures:
        zero = torch.zeros(pixel_values.shape[0], 1, 1, 1, device=self.device)  # one row per camera
        return base.VisionFeatures((zero,) * 3, (zero,) * 3, (zero, zero), zero, zero)

    def text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> base.PromptFeatures:
        features = torch.zeros(input_ids.shape[0], input_ids.shape[1], HIDDEN, device=self.device)
        return base.PromptFeatures(features, attention_mask.bool().to(self.device))

    def exemplars(self, vision, boxes_cxcywh, labels) -> base.PromptFeatures:
        n = boxes_cxcywh.shape[1]
        return base.PromptFeatures(torch.zeros(1, n, HIDDEN, device=self.device),
                              torch.ones(1, n, dtype=torch.bool, device=self.device))

    def detector(self, vision: base.VisionFeatures, prompts: base.PromptFeatures) -> base.DetectorOutput:
        k, n = prompts.features.shape[0], self.scene.count
        queries = n + 4
        scores = torch.zeros(k, queries, device=self.device)
        scores[:, :n] = 0.9
        masks = torch.full((k, queries, MASK_SIZE, MASK_SIZE), -LOGIT_SCALE, device=self.device)
        masks[:, :n] = self.object_logits
        return base.DetectorOutput(scores=scores, boxes_xyxy=torch.zeros(k, queries, 4, device=self.device),
                              mask_logits=masks)

    def tracker(self, vision: base.VisionFeatures, memory: base.MemoryBatch) -> base.TrackerOutput:
        index = memory.spatial[:, 0, 0, 0].round().long()  # the object the conditioning memory holds
        logits = self.object_logits[index]
        return base.TrackerOutput(mask_logits=logits, object_logits=torch.full((len(index),), 10.0, device=self.device),
                             pointers=torch.zeros(len(index), HIDDEN, device=self.device))

    def mask_prompter(self, vision: base.VisionFeatures, masks: torch.Tensor) -> base.TrackerOutput:
        return base.TrackerOutput(mask_logits=torch.where(masks, 50.0, -50.0),
                             object_logits=torch.full((len(masks),), 10.0, device=self.device),
                             pointers=torch.zeros(len(masks), HIDDEN, device=self.device))

    def memory_encoder(self, vision: base.VisionFeatures, mask_logits: torch.Tensor, object_logits: torch.Tensor):
        """Channel 0 of each memory holds the index of the object nearest the mask's centroid."""
        positive = (mask_logits > 0).float()
        area = positive.sum(dim=(1, 2)).clamp(min=1)
        coords = torch.arange(MASK_SIZE, device=self.device, dtype=torch.float32) + 0.5
        cx = (positive.sum(dim=1) * coords).sum(dim=1) / area
        cy = (positive.sum(dim=2) * coords).sum(dim=1) / area
        distance = torch.cdist(torch.stack([cx, cy], dim=1), self._centres)
        features = torch.zeros(mask_logits.shape[0], 1, MEMORY_DIM, device=self.device)
        features[:, 0, 0] = distance.argmin(dim=1).float()
        return features


def _mixing_cameras() -> dict:
    """Its components serve several cameras in one call; older trees (bench_host_path.py's old side)
    have no such setting."""
    names = {f.name for f in dataclasses.fields(base.Sam3Components)}
    return {"mixes_cameras": True} if "mixes_cameras" in names else {}
