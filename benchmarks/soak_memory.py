"""Memory soak: process RSS over thousands of streamed frames with the tiny SAM 3.

Our pipeline keeps a bounded memory per track and caps tracks, so RSS must stay flat once
warm. Tracks are reset every 25 frames and a concept is replaced every 100 frames, so births,
removals and prompt changes happen all along. For contrast, the same frames go through transformers' own streaming session
(Sam3VideoModel + Sam3VideoInferenceSession), which keeps every frame's state.

    python benchmarks/soak_memory.py --frames 2000 [--baseline-frames 300]

Prints RSS at checkpoints and the growth per 1000 frames after warm-up, for both.
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.prompts import make_concept
from sam3_ros.backends.torch_backend import torch_components
from sam3_ros.model.loading import load_tiny

WARMUP = 200
HEIGHT, WIDTH = 120, 160


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def frame(i: int, base: np.ndarray) -> np.ndarray:
    """A drifting scene with a fresh noise patch every frame, so tracks are born and die all along."""
    image = np.roll(base, 2 * i, axis=1)
    rng = np.random.default_rng(i)
    y, x = rng.integers(0, HEIGHT // 2), rng.integers(0, WIDTH // 2)
    image[y:y + HEIGHT // 2, x:x + WIDTH // 2] = rng.integers(0, 256, (HEIGHT // 2, WIDTH // 2, 3), dtype=np.uint8)
    return image


def growth_per_1000(samples: list[tuple[int, float]]) -> float:
    warm = [(f, r) for f, r in samples if f >= WARMUP]
    if len(warm) < 2:
        return float("nan")
    frames, rss = np.array(warm).T
    return float(np.polyfit(frames, rss, 1)[0] * 1000)


def soak_ours(loaded, frames: int, every: int) -> list[tuple[int, float]]:
    config = PipelineConfig().updated({"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02,
                                       "tracking.max_tracks": 8})
    pipeline = Sam3Pipeline(torch_components(loaded), loaded.tokenizer, config)
    pipeline.set_concepts([make_concept(None, "person"), make_concept(None, "forklift")])
    base = (np.random.default_rng(0).random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    samples, births, removed = [], 0, 0
    start = time.perf_counter()
    for i in range(frames):
        if i % 25 == 24:
            pipeline.request_reset()  # churn: every track ends and new ones (new IDs) are born
        if i % 100 == 99:
            pipeline.set_concepts([make_concept(None, "person"), make_concept(None, f"pallet {i // 100}")])
        result = pipeline.step(frame(i, base))
        births = max(births, max((inst.track_id for inst in result.instances), default=0))
        removed += len(result.removed_track_ids)
        if i % every == 0 or i == frames - 1:
            gc.collect()
            samples.append((i, rss_mib()))
            print(f"  ours     frame {i:5d}  RSS {samples[-1][1]:8.1f} MiB  live tracks {result.live_tracks:2d}"
                  f"  highest track id {births:4d}  removed {removed:4d}", flush=True)
    print(f"  ours: {frames / (time.perf_counter() - start):.1f} frames/s on CPU")
    return samples


def soak_transformers_session(loaded, frames: int, every: int) -> list[tuple[int, float]]:
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    model = loaded.model
    saved = (model.score_threshold_detection, model.new_det_thresh, model.max_num_objects)
    model.score_threshold_detection, model.new_det_thresh, model.max_num_objects = 0.02, 0.02, 8
    session = Sam3VideoInferenceSession(inference_device="cpu", inference_state_device="cpu",
                                        video_storage_device="cpu", dtype=torch.float32)
    for phrase in ("person", "forklift"):
        prompt_id = session.add_prompt(phrase)
        encoded = loaded.tokenizer([phrase], padding="max_length", max_length=32, return_tensors="pt")
        session.prompt_input_ids[prompt_id] = encoded.input_ids
        session.prompt_attention_masks[prompt_id] = encoded.attention_mask
    base = (np.random.default_rng(0).random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    size = loaded.model.config.image_size
    samples = []
    try:
        for i in range(frames):
            pixels = torch.nn.functional.interpolate(
                torch.from_numpy(frame(i, base)).permute(2, 0, 1)[None].float() / 127.5 - 1, size=(size, size))[0]
            out = model(inference_session=session, frame=pixels)
            if i % every == 0 or i == frames - 1:
                gc.collect()
                samples.append((i, rss_mib()))
                print(f"  session  frame {i:5d}  RSS {samples[-1][1]:8.1f} MiB  objects {len(out.object_ids):3d}"
                      f"  stored frames {len(session.processed_frames)}", flush=True)
    finally:
        model.score_threshold_detection, model.new_det_thresh, model.max_num_objects = saved
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--baseline-frames", type=int, default=400, help="0 skips the transformers session")
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_tiny(device="cpu", dtype="float32", image_size=112)
    print(f"model: {loaded.describe()}; {torch.get_num_threads()} CPU threads")
    ours = soak_ours(loaded, args.frames, args.every)
    print(f"ours: RSS growth after frame {WARMUP}: {growth_per_1000(ours):+.2f} MiB per 1000 frames "
          f"({ours[-1][1] - [r for f, r in ours if f >= WARMUP][0]:+.1f} MiB from frame {WARMUP} to {ours[-1][0]})")
    if args.baseline_frames:
        theirs = soak_transformers_session(loaded, args.baseline_frames, args.every)
        print(f"transformers session: RSS growth after frame {WARMUP}: "
              f"{growth_per_1000(theirs):+.2f} MiB per 1000 frames")


if __name__ == "__main__":
    main()
