"""Per-stage latency and frames per second against the number of live tracks, plus the HF baseline.

    # GPU (full-size architecture, random weights = the real FLOPs), all in one run:
    python benchmarks/bench_pipeline.py --full-size --device cuda --tracks 1 5 10 20 50 --baseline
    # CPU scaling curve with the tiny model:
    python benchmarks/bench_pipeline.py --tiny --device cpu --tracks 1 2 4 8 16

Live tracks are held at exactly N (see sam3_ros/bench.py). ``--baseline``
times transformers' own streaming ``Sam3VideoModel`` (eager, float32 and bfloat16) on the same
frames with ``max_num_objects = N`` in the same process, and prints our speed-up as a ratio.
Timings are medians after warm-up; CUDA is synchronised around every stage.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from sam3_ros.backends.torch_backend import torch_components
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.bench import describe, holding_tracks, median_stage_ms, synthetic_frames
from sam3_ros.model.loading import LoadedSam3, load_tiny, resolve_device, resolve_dtype
from sam3_ros.model.tiny import byte_level_clip_tokenizer

def full_size_model(device: str, dtype: str) -> LoadedSam3:
    """The real SAM 3 architecture (transformers' default Sam3VideoConfig) with random weights."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    with torch.device(torch_device):
        model = Sam3VideoModel(Sam3VideoConfig()).eval()
    model = model.to(dtype=torch_dtype)
    tokenizer = byte_level_clip_tokenizer()  # ids only matter as ids for random weights
    return LoadedSam3(model, tokenizer, torch_device, torch_dtype, True, "full-size random-init SAM 3", "n/a")


def time_ours(loaded: LoadedSam3, tracks: int, images: list[np.ndarray], warmup: int, compile_: bool) -> dict:
    components = torch_components(loaded)
    if compile_:
        from sam3_ros.backends.torch_fast import compile_components

        components = compile_components(components)
    pipeline = Sam3Pipeline(components, loaded.tokenizer, holding_tracks(PipelineConfig(), tracks))
    return median_stage_ms(pipeline, images, warmup, tracks)


def time_transformers(loaded: LoadedSam3, tracks: int, images: list[np.ndarray], warmup: int) -> float:
    """Median ms per frame of transformers' streaming Sam3VideoModel holding ``tracks`` objects."""
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession
    from transformers.utils import logging as hf_logging

    from sam3_ros.model.preprocess import image_to_pixel_values, tokenize

    hf_logging.set_verbosity_error()
    model = loaded.model
    model.score_threshold_detection, model.new_det_thresh, model.max_num_objects = 1e-6, 1e-6, tracks
    session = Sam3VideoInferenceSession(inference_device=loaded.device, inference_state_device=loaded.device,
                                        video_storage_device=loaded.device, dtype=loaded.dtype)
    prompt = session.add_prompt("forklift")
    ids, mask, _ = tokenize(loaded.tokenizer, ["forklift"])
    session.prompt_input_ids[prompt], session.prompt_attention_masks[prompt] = ids.to(loaded.device), mask.to(loaded.device)
    size = model.config.image_size
    times = []
    for i, image in enumerate(images):
        pixels = image_to_pixel_values(image, size, loaded.device, loaded.dtype)[0]
        _sync(loaded.device)
        start = time.perf_counter()
        with torch.inference_mode():
            model(inference_session=session, frame=pixels)
        _sync(loaded.device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--full-size", action="store_true")
    size.add_argument("--tiny", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tracks", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--image", type=int, nargs=2, default=[720, 1280], metavar=("H", "W"))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd components")
    parser.add_argument("--baseline", action="store_true", help="also time transformers eager fp32 and bf16")
    parser.add_argument("--json", help="write all numbers to this file")
    args = parser.parse_args()

    loaded = full_size_model(args.device, args.dtype) if args.full_size else load_tiny(device=args.device, dtype=args.dtype)
    device = loaded.device
    print(f"model: {loaded.source}; device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}"
          f" ({torch.get_num_threads()} threads); dtype {loaded.dtype}; input {loaded.model.config.image_size}px; "
          f"camera {args.image[1]}x{args.image[0]}; torch {torch.__version__}")
    images = synthetic_frames(args.frames, *args.image)
    report = {"model": loaded.source, "device": str(device), "dtype": str(loaded.dtype), "rows": []}
    variants = [("ours", False)] + ([("ours+compile", True)] if args.compile else [])
    for tracks in args.tracks:
        row = {"tracks": tracks}
        for name, compile_ in variants:
            row[name] = time_ours(loaded, tracks, images, args.warmup, compile_)
        if args.baseline:
            for dtype in (torch.float32, torch.bfloat16) if device.type == "cuda" else (torch.float32,):
                base = LoadedSam3(loaded.model.to(dtype), loaded.tokenizer, device, dtype, True, loaded.source, "n/a")
                row[f"transformers eager {str(dtype)[6:]}"] = time_transformers(base, tracks, images, args.warmup)
            loaded.model.to(loaded.dtype)
        report["rows"].append(row)
        ours = row["ours"]
        line = describe(tracks, ours)
        for key, value in row.items():
            if key.startswith("transformers"):
                line += f" | {key} {value:.1f} ms = {value / ours['total']:.2f}x ours"
            elif key == "ours+compile":
                line += f" | compiled total {value['total']:.2f} ms"
        print(line, flush=True)
    if len(args.tracks) > 1:
        xs = np.array(args.tracks, float)
        per_track = np.array([r["ours"]["tracker"] + r["ours"]["memory"] for r in report["rows"]])
        slope = float(np.polyfit(xs, per_track, 1)[0])
        report["ms_per_additional_track"] = slope
        print(f"tracker + memory cost per additional live track: {slope:.3f} ms (least-squares slope)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
