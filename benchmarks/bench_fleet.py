"""Fleet scaling: the same recordings labelled by 1 and by N Ray workers, in one run.

    python benchmarks/bench_fleet.py                      # 2-core CPU: 1 vs 2 CPU workers, tiny model
    python benchmarks/bench_fleet.py --device cuda --workers 1 4 --checkpoint ~/models/sam3

Generates ``--inputs`` clips of ``--frames`` frames (the demo scene), starts one local Ray with as
many CPUs as the largest worker count (GPUs as the machine has), and runs the whole job once per
worker count into a fresh output folder. Throughput is frames per second of labelling, from the
moment every worker had loaded the model to the end (summary.json's ``frames_per_second``); the
wall time including start-up is printed too. The ratio compares the last count with the first.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from sam3_ros.cli import parse_concepts
from sam3_ros.core.config import PipelineConfig
from sam3_ros.demo_clip import demo_frame
from sam3_ros.fleet.inputs import discover_inputs
from sam3_ros.fleet.ray_job import FleetJob, import_ray, run_fleet


def write_clips(folder: Path, count: int, frames: int) -> None:
    folder.mkdir(parents=True)
    for n in range(count):
        video = cv2.VideoWriter(str(folder / f"clip{n:03d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
        for i in range(frames):
            video.write(cv2.cvtColor(demo_frame(i + n, frames + count), cv2.COLOR_RGB2BGR))
        video.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--inputs", type=int, default=8, help="clips to label")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", help="SAM 3 weights (default: the tiny random-init model)")
    args = parser.parse_args()

    ray = import_ray()
    work = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    try:
        write_clips(work / "clips", args.inputs, args.frames)
        inputs = discover_inputs(work / "clips")
        model = {"model.checkpoint": args.checkpoint} if args.checkpoint else {"model.tiny": True}
        config = PipelineConfig().updated({**model, "model.device": args.device})
        concepts = parse_concepts(["red ball", "blue box"], [])
        ray.init(num_cpus=max(args.workers), include_dashboard=False, object_store_memory=80 * 2**20,
                 log_to_driver=False)
        rates = {}
        for workers in args.workers:
            start = time.perf_counter()
            job = FleetJob(config, concepts, inputs, str(work / f"out_{workers}"), workers=workers, progress=False)
            totals = run_fleet(job).totals()
            assert totals["done"] == len(inputs), totals
            rates[workers] = totals["frames_per_second"]
            print(f"{workers} worker(s): {totals['frames_processed']} frames in {totals['labelling_seconds']:.1f} s "
                  f"= {rates[workers]:.2f} fps (wall {time.perf_counter() - start:.1f} s with start-up)", flush=True)
        first, last = args.workers[0], args.workers[-1]
        print(f"{last} vs {first} worker(s): {rates[last] / rates[first]:.2f}x the frames per second")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
