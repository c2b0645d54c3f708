"""The host path: what a frame costs outside the network, old code and new side by side in one run.

    python benchmarks/bench_host_path.py                       # every setting, CPU, against 4902ecf
    python benchmarks/bench_host_path.py --sizes 1280x720 --instances 20 --device cuda --json out.json

The network is the stand-in of ``test/standin_network.py`` at SAM 3's real 288 x 288 mask size: N
static objects covering a quarter of the frame, every one detected and tracked on every frame. The
node (``NodeCore``, no rclpy) gets an rgb8 image, camera info and an aligned 16UC1 depth image per
frame, builds every message and serialises it to CDR, as rclpy would on publish.

Per frame it measures, in milliseconds:
  core outside the network  = ``Sam3Pipeline.step`` - preprocessing - time inside the stand-in's components
  node outside the pipeline = ``NodeCore.process_next`` (+ CDR) - ``Sam3Pipeline.step``
  total                     = everything but the network (preprocessing included)

Two output modes: ``all`` (every output has a subscriber) and ``default`` (only the robot outputs
instances, detections, detections_3d and label_info have one). Each (version, setting) runs in its
own process: the old version is ``git archive`` of ``--old`` (default 4902ecf, the commit before the
host-path work; or a folder where it was extracted) first on PYTHONPATH, the new one is this checkout. Medians over ``--frames`` frames after
``--warmup``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# wall: elapsed time; cpu: this process's CPU time, which other load on the machine barely changes
# (with --threads 1 it equals the elapsed time of an idle machine)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
ROBOT_OUTPUTS = {"instances", "detections", "detections_3d", "label_info"}


# -- one measurement, in a process of its own ------------------------------------------------------------

def measure(width: int, height: int, count: int, mode: str, device: str, frames: int, warmup: int,
            threads: int = 0, clock_name: str = "wall") -> dict:
    sys.path.insert(0, str(REPO / "test"))
    import numpy as np
    import torch
    if threads > 0:
        torch.set_num_threads(threads)
    clock = CLOCKS[clock_name]
    import sam3_ros.core.pipeline as pipeline_module
    import sam3_ros
    from sam3_ros.core.config import PipelineConfig
    from sam3_ros.core.image_encoding import rgb_to_image_fields
    from sam3_ros.core.pipeline import Sam3Pipeline
    from sam3_ros.factory import LoadedPipeline
    from sam3_ros.io import messages
    from sam3_ros.io.ros_types import RosbagsTypes, typestore
    from sam3_ros.model.tiny import byte_level_clip_tokenizer
    from sam3_ros.ros.controller import NodeCore
    from sam3_ros.ros.params import NodeParams
    from standin_network import StandInComponents, StaticScene

    types, store = RosbagsTypes(), typestore()
    scene = StaticScene(width, height, count)
    standin = StandInComponents(scene, device, clock=clock)
    preprocess_ms = []
    untimed_preprocess = pipeline_module.image_to_pixel_values

    def timed_preprocess(*args, **kwargs):
        start = clock()
        out = untimed_preprocess(*args, **kwargs)
        preprocess_ms.append((clock() - start) * 1e3)
        return out
    pipeline_module.image_to_pixel_values = timed_preprocess
    config = PipelineConfig().updated({"tracking.max_tracks": max(count, 1), "model.device": device})
    tokenizer = byte_level_clip_tokenizer()
    factory = lambda cfg: LoadedPipeline(Sam3Pipeline(standin.components(), tokenizer, cfg), "stand-in", True)  # noqa: E731
    params = NodeParams(prompts=["object"], depth_topic="depth", publish_instance_points=True, warmup_frames=1)
    core = NodeCore(params, config, types, pipeline_factory=factory)
    wanted = (lambda output: True) if mode == "all" else (lambda output: output in ROBOT_OUTPUTS)
    if hasattr(core, "subscribed"):  # the new code skips every output nobody subscribes to
        core.subscribed = wanted
    else:                            # the old code skipped the point cloud only
        core.cloud_wanted = lambda: wanted("instance_points")
    core.configure()
    core.activate()

    step_ms = []
    stepper = "step_cameras" if hasattr(core.pipeline, "step_cameras") else "step"  # what the node calls
    original_step = getattr(core.pipeline, stepper)

    def timed_step(*args, **kwargs):
        start = clock()
        result = original_step(*args, **kwargs)
        step_ms.append((clock() - start) * 1e3)
        return result
    setattr(core.pipeline, stepper, timed_step)

    rgb = (np.random.default_rng(1).random((height, width, 3)) * 255).astype(np.uint8)
    depth = scene.depth_mm()
    fx, fy, cx, cy = scene.camera_k()
    rows: list[dict] = []
    for i in range(warmup + frames):
        stamp = 1_700_000_000_000_000_000 + i * 33_000_000
        header = messages.header(stamp, "camera_optical", types)
        image = types.new("sensor_msgs/msg/Image", header=header, **rgb_to_image_fields(rgb, "rgb8"))
        depth_msg = types.new("sensor_msgs/msg/Image", header=header, height=height, width=width, encoding="16UC1",
                              is_bigendian=0, step=width * 2, data=depth.view(np.uint8).reshape(-1))
        info = types.new("sensor_msgs/msg/CameraInfo", header=header, height=height, width=width,
                         distortion_model="plumb_bob", d=np.zeros(5), k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]),
                         r=np.zeros(9), p=np.zeros(12), binning_x=0, binning_y=0,
                         roi=types.new("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
                                       do_rectify=False))
        core.on_camera(image, info, depth_msg)
        standin.network_ms = 0.0
        start = clock()
        outputs = core.process_next(timeout_s=0.0)
        if outputs is None:
            raise RuntimeError(f"frame {i} failed: {core.counters}")
        for name in ("instances", "detections", "detections_3d", "id_image", "label_info", "overlay", "markers",
                     "instance_points"):
            msg = getattr(outputs, name, None)
            if msg is not None:
                store.serialize_cdr(msg, msg.__msgtype__)
        total = (clock() - start) * 1e3
        if i < warmup:
            continue
        result = outputs.result
        preprocess = preprocess_ms[-1]
        rows.append({
            "total": total - standin.network_ms,
            "core": step_ms[-1] - preprocess - standin.network_ms,
            "node": total - step_ms[-1],
            "preprocess": preprocess,
            "network": standin.network_ms,
            "instances": len(result.instances),
            **{f"stage {k}": v for k, v in result.timings_ms.items()},
        })
    if rows[-1]["instances"] != count:
        raise RuntimeError(f"{rows[-1]['instances']} instances published, expected {count}")
    return {
        "code": str(Path(sam3_ros.__file__).parent),
        "torch_threads": torch.get_num_threads(),
        **{key: statistics.median(r[key] for r in rows) for key in rows[0]},
    }


# -- the side-by-side run -------------------------------------------------------------------------------

def old_tree(commit: str, into: Path) -> Path:
    """The package as it was at ``commit``, extracted (not checked out) into ``into``."""
    archive = into / "old.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), commit, "sam3_ros"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def run_worker(pythonpath: Path, args: list[str]) -> dict:
    inherited = os.environ.get("PYTHONPATH")  # wheels installed beside the code (a GPU machine's /tmp/site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath)] + ([inherited] if inherited else []))}
    out = subprocess.run([sys.executable, __file__, "--worker", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720", "1920x1080"], help="camera WxH")
    parser.add_argument("--instances", nargs="+", type=int, default=[1, 5, 20, 50], help="instances per frame")
    parser.add_argument("--modes", nargs="+", choices=["all", "default"], default=["all", "default"],
                        help="all outputs subscribed, or only the robot outputs")
    add_run_options(parser, frames=5, warmup=4, frames_per="setting (median)")
    parser.add_argument("--old", default="4902ecf",
                        help="commit to compare with, or a folder holding its sam3_ros/ ('none': new code only)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        width, height = (int(v) for v in args.size.split("x"))
        print(json.dumps(measure(width, height, args.count, args.mode, args.device, args.frames, args.warmup,
                                 args.threads, args.clock)))
        return

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"new": REPO}
        if Path(args.old, "sam3_ros").is_dir():  # an extracted tree (git archive), e.g. on a machine without history
            versions = {"old": Path(args.old).resolve(), **versions}
        elif args.old != "none":
            versions = {"old": old_tree(args.old, Path(tmp)), **versions}
        print(f"{'camera':>10} {'inst':>4} {'outputs':>7} | " + " | ".join(
            f"{v} total (core/node/pre)" for v in versions) + (" | speed-up" if len(versions) > 1 else ""), flush=True)
        for size in args.sizes:
            for count in args.instances:
                for mode in args.modes:
                    row = {"camera": size, "instances": count, "outputs": mode, "device": args.device,
                           "clock": args.clock}
                    for version, path in versions.items():
                        row[version] = run_worker(path, ["--size", size, "--count", str(count), "--mode", mode,
                                                         "--device", args.device, "--frames", str(args.frames),
                                                         "--warmup", str(args.warmup), "--threads", str(args.threads),
                                                         "--clock", args.clock])
                    results.append(row)
                    cells = [f"{row[v]['total']:8.1f} ({row[v]['core']:.1f}/{row[v]['node']:.1f}/"
                             f"{row[v]['preprocess']:.1f})" for v in versions]
                    ratio = f" | {row['old']['total'] / row['new']['total']:6.1f}x" if "old" in row else ""
                    print(f"{size:>10} {count:>4} {mode:>7} | " + " | ".join(cells) + ratio, flush=True)
    print_per_instance_cost(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def add_run_options(parser: argparse.ArgumentParser, frames: int, warmup: int, frames_per: str) -> None:
    """--device, --frames, --warmup, --threads and --clock, as the benchmarks that start workers take them."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--frames", type=int, default=frames, help=f"measured frames per {frames_per}")
    parser.add_argument("--warmup", type=int, default=warmup, help="frames before measuring (tracks get confirmed)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or CPU time of the process (for a machine busy with other work)")


def print_per_instance_cost(results: list[dict]) -> None:
    """Milliseconds per extra instance (new code, all outputs), from the fewest to the most instances."""
    for size in sorted({r["camera"] for r in results}):
        rows = sorted((r for r in results if r["camera"] == size and r["outputs"] == "all"),
                      key=lambda r: r["instances"])
        if len(rows) >= 2 and rows[-1]["instances"] > rows[0]["instances"]:
            slope = (rows[-1]["new"]["total"] - rows[0]["new"]["total"]) / (rows[-1]["instances"] - rows[0]["instances"])
            print(f"{size}: {slope:.2f} ms per extra instance (new, all outputs, "
                  f"{rows[0]['instances']} to {rows[-1]['instances']} instances)")


if __name__ == "__main__":
    main()
