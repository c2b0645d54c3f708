"""Several cameras, one model: one process stepping N cameras batched vs N processes of one camera each.

    python benchmarks/bench_cameras.py                                   # CPU: tiny model and stand-in, 1 2 4 cameras
    python benchmarks/bench_cameras.py --threads 1 --clock cpu --json docs/cameras_cpu_run.json   # on a busy machine
    python benchmarks/bench_cameras.py --models full tiny --device cuda  # on a GPU

For each model (``tiny``: the random-init SAM 3 of the real architecture; ``standin``: the scripted
network of ``test/standin_network.py``, whose cost is only the host path; ``full``: the full-size
random-init SAM 3 of ``bench_pipeline.py``, for a GPU) and each camera count N,
every camera 640x480 with the same concepts (2 text prompts) and N tracks held per camera, it runs:

  batched     one process, one pipeline, ``step_cameras`` with all N cameras per step
  sequential  one process, ``step_cameras`` with one camera at a time, in turn; the same process also
              steps a second pipeline (same weights) batched, in alternating rounds, for a paired ratio
              that a shared machine's drifting load cannot skew
  processes   N processes started here, each loading its own model and stepping one camera (``step``)

(N = 1 runs once: one process, ``step``: today's single-camera node, the reference for RSS.)
Every configuration runs in fresh processes. Warm-up rounds are excluded; the processes of one
configuration start measuring together (each waits for a "go" on stdin after its warm-up).

Measured per configuration:
  peak RSS   VmHWM of /proc/self/status in each process, summed over the processes (an upper bound
             of the tree's peak: every process holds its model all along); PSS (smaps_rollup, after
             the run) counts shared library pages once, so the tree's PSS is the memory really used
  frames/s   all cameras' measured frames / the time of the measured rounds; several processes: from
             the first one's start to the last one's end, or with ``--clock cpu`` their CPU seconds
             summed (frames per CPU-second)
  split      per round: each network component's time (wrapped, on the same clock), the rest of the
             round, and the minor page faults (fresh memory the kernel had to zero-fill)
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE)]
from bench_host_path import CLOCKS, add_run_options  # noqa: E402  (stdlib only at import)

WIDTH, HEIGHT = 640, 480
CONCEPTS = ("person", "box")
READY = "READY"
COMPONENTS = ("vision", "text", "exemplars", "detector", "tracker", "mask_prompter", "memory_encoder")


# -- memory of this process -----------------------------------------------------------------------------

def proc_kib(path: str, key: str) -> int:
    """A ``key: N kB`` field of a /proc file, in KiB (0 where absent)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def minor_faults() -> int:
    """Pages this process touched for the first time (fresh allocations the kernel zero-fills)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def memory_mib() -> dict:
    return {"rss_mib": proc_kib("/proc/self/status", "VmRSS") / 1024,
            "peak_rss_mib": proc_kib("/proc/self/status", "VmHWM") / 1024,
            "pss_mib": proc_kib("/proc/self/smaps_rollup", "Pss") / 1024}


# -- one process: load a model, step cameras -----------------------------------------------------------

@functools.cache  # once per process (--no-subprocess runs every configuration in one)
def load_weights(model: str, device: str):
    from sam3_ros.model.loading import load_tiny

    if model == "full":  # the real architecture and FLOPs, random weights (a GPU's work)
        from bench_pipeline import full_size_model

        return full_size_model(device, "auto")
    return load_tiny(device=device)


def build_pipeline(model: str, device: str, tracks: int):
    from sam3_ros.bench import holding_tracks
    from sam3_ros.core.config import PipelineConfig
    from sam3_ros.core.pipeline import Sam3Pipeline
    from sam3_ros.core.prompts import make_concept

    config = holding_tracks(PipelineConfig().updated({"model.device": device, "model.tiny": True}), tracks)
    if model in ("tiny", "full"):
        from sam3_ros.factory import load_pipeline

        pipeline = load_pipeline(config, load_weights(model, device)).pipeline
    else:
        sys.path.insert(0, str(REPO / "test"))
        from sam3_ros.model.tiny import byte_level_clip_tokenizer
        from standin_network import StandInComponents, StaticScene

        standin = StandInComponents(StaticScene(WIDTH, HEIGHT, tracks), device)
        pipeline = Sam3Pipeline(standin.components(), byte_level_clip_tokenizer(), config)
    pipeline.set_concepts([make_concept(None, text) for text in CONCEPTS])
    return pipeline


def camera_names(count: int) -> list[str]:
    return [f"cam{i}" for i in range(count)]


def rounds_of(pipeline, mode: str, cameras: int):
    """One round = one frame of every camera: a callable(round index) -> the timings of each step called."""
    from sam3_ros.bench import synthetic_frames

    images = synthetic_frames(16, HEIGHT, WIDTH)
    names = camera_names(cameras)
    image = lambda i, cam: images[(i + 5 * cam) % len(images)]  # noqa: E731  each camera its own view
    if mode == "single":
        return lambda i: [pipeline.step(image(i, 0)).timings_ms]
    from sam3_ros.core.pipeline import CameraFrame

    def step(i: int, cams: list[int]) -> dict:  # a batched step's results all carry that step's timings
        results = pipeline.step_cameras({names[c]: CameraFrame(image(i, c)) for c in cams})
        return next(iter(results.values())).timings_ms
    if mode == "batched":
        return lambda i: [step(i, list(range(cameras)))]
    return lambda i: [step(i, [c]) for c in range(cameras)]


def held_tracks(pipeline, mode: str, cameras: int) -> list[int]:
    if mode == "single":
        return [len(pipeline.tracks.live_ids)]
    return [len(pipeline.tracks_of(name).live_ids) for name in camera_names(cameras)]


def measure(model: str, mode: str, cameras: int, device: str, frames: int, warmup: int, tracks: int,
            threads: int, clock_name: str, wait_for_go: bool) -> dict:
    """One process's run: memory after each loading stage, then ``frames`` rounds after ``warmup``.

    Mode ``paired`` steps one camera at a time and batched, two pipelines on the same weights, in
    alternating rounds (ABBA), so both see the same load on a shared machine; its peak RSS holds
    both pipelines (the batched RSS comes from a ``batched`` process)."""
    import torch

    memory = {"torch": memory_mib()}  # the baseline every process pays: torch (and its libraries) alone
    if threads > 0:
        torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    clock = CLOCKS[clock_name]
    modes = ["sequential", "batched"] if mode == "paired" else [mode]
    runs = {}
    for name in modes:
        pipeline = build_pipeline(model, device, tracks)
        runs[name] = (pipeline, time_components(pipeline, clock, cuda), rounds_of(pipeline, name, cameras))
    memory["model"] = memory_mib()
    for i in range(warmup):
        for _, _, step_round in runs.values():
            step_round(i)
    ready_at = time.time()
    if wait_for_go:
        print(READY, flush=True)
        sys.stdin.readline()
    # per mode and round: the pipeline's stage timers (wall), the components and the round (``clock``)
    stages, parts, faults = ({name: [] for name in modes} for _ in range(3))
    wall_start = time.time()
    for i in range(warmup, warmup + frames):
        for name in modes if i % 2 == 0 else modes[::-1]:
            _, spent, step_round = runs[name]
            spent.clear()
            round_faults, round_start = minor_faults(), clock()
            stages[name].append(_summed(step_round(i)))
            if cuda:
                torch.cuda.synchronize()
            round_ms = (clock() - round_start) * 1e3
            parts[name].append({**spent, "outside components": round_ms - sum(spent.values()), "round": round_ms})
            faults[name].append(minor_faults() - round_faults)
    wall_end = time.time()
    for name, (pipeline, _, _) in runs.items():
        held = held_tracks(pipeline, name, cameras)
        if held != [tracks] * len(held):
            raise RuntimeError(f"{name}: held {held} live tracks per camera instead of {tracks}")
    by_mode = {name: {"frames": frames * cameras, "seconds": sum(r["round"] for r in parts[name]) / 1e3,
                      "round_stage_ms": _medians(stages[name]), "round_component_ms": _medians(parts[name]),
                      "round_page_faults": statistics.median(faults[name])}
               for name in modes}
    return {
        "model": model, "mode": modes[0], "cameras": cameras, "device": device, "clock": clock_name,
        "torch_threads": torch.get_num_threads(), **by_mode[modes[0]], "modes": by_mode,
        "ready_at": ready_at, "wall_start": wall_start, "wall_end": wall_end,
        "memory_mib": {**memory, "end": memory_mib()},
        **({"cuda_peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20} if cuda else {}),
    }


def time_components(pipeline, clock, cuda: bool) -> dict[str, float]:
    """Wrap the pipeline's network components: each call's milliseconds (``clock``) add up in the dict returned."""
    import torch

    spent: dict[str, float] = {}

    def timed(name, component):
        def call(*args, **kwargs):
            start = clock()
            out = component(*args, **kwargs)
            if cuda:
                torch.cuda.synchronize()
            spent[name] = spent.get(name, 0.0) + (clock() - start) * 1e3
            return out
        return call
    pipeline.components = dataclasses.replace(
        pipeline.components, **{name: timed(name, getattr(pipeline.components, name)) for name in COMPONENTS})
    return spent


def _summed(dicts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for values in dicts:
        for name, value in values.items():
            out[name] = out.get(name, 0.0) + value
    return out


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r.get(name, 0.0) for r in rounds) for name in _summed(rounds)}


# -- the configurations, each in fresh processes ----------------------------------------------------------

def run_processes(worker_args: list[list[str]]) -> list[dict]:
    """Start one worker per argument list, let them all warm up, start them together, collect results."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for n, args in enumerate(worker_args):
            err = open(Path(tmp) / f"{n}.err", "w+")
            procs.append((subprocess.Popen([sys.executable, __file__, "--worker", *args], cwd=REPO, text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err), err))

        def failed(proc, err) -> RuntimeError:
            proc.kill()
            err.seek(0)
            return RuntimeError(f"worker failed (exit {proc.wait()}):\n{err.read()[-3000:]}")

        for proc, err in procs:
            while (line := proc.stdout.readline()) and line.strip() != READY:
                pass
            if not line:
                raise failed(proc, err)
        for proc, _ in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc, err in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise failed(proc, err)
            results.append(json.loads(out.strip().splitlines()[-1]))
            err.close()
        return results


def combine(parts: list[dict]) -> dict:
    """One configuration's figures from its processes."""
    frames = sum(p["frames"] for p in parts)
    if len(parts) == 1 or parts[0]["clock"] == "cpu":
        seconds = sum(p["seconds"] for p in parts)  # the rounds' time (CPU time adds up over processes)
    else:
        seconds = max(p["wall_end"] for p in parts) - min(p["wall_start"] for p in parts)
    row = {key: parts[0][key] for key in ("model", "mode", "device", "clock", "torch_threads")}
    row.update(cameras=sum(p["cameras"] for p in parts), processes=len(parts), frames=frames, seconds=seconds,
               fps=frames / seconds,
               peak_rss_mib=sum(p["memory_mib"]["end"]["peak_rss_mib"] for p in parts),
               pss_mib=sum(p["memory_mib"]["end"]["pss_mib"] for p in parts),
               torch_baseline_rss_mib=parts[0]["memory_mib"]["torch"]["rss_mib"],
               model_loaded_rss_mib=parts[0]["memory_mib"]["model"]["rss_mib"],
               # per round of all cameras (a sum of medians over separate processes)
               round_stage_ms=_summed([p["round_stage_ms"] for p in parts]),
               round_component_ms=_summed([p["round_component_ms"] for p in parts]),
               round_page_faults=sum(p["round_page_faults"] for p in parts),
               per_process=parts)
    if "batched" in parts[0]["modes"] and row["mode"] == "sequential":  # paired: batched in the same rounds
        paired = parts[0]["modes"]["batched"]
        row["paired_batched_fps"] = paired["frames"] / paired["seconds"]
    if "cuda_peak_allocated_mib" in parts[0]:
        row["cuda_peak_allocated_mib"] = sum(p["cuda_peak_allocated_mib"] for p in parts)
    return row


def configurations(cameras: int, modes: list[str]) -> list[tuple[str, int, int]]:
    """(worker mode, cameras per process, processes) for N cameras."""
    if cameras == 1:
        return [("single", 1, 1)]
    table = {"sequential": ("paired", cameras, 1), "batched": ("batched", cameras, 1),
             "processes": ("single", 1, cameras)}
    return [config for mode, config in table.items() if mode in modes]  # one camera at a time first: the ratios' base


def run_configuration(args, model: str, mode: str, cameras: int, processes: int) -> dict:
    common = ["--device", args.device, "--frames", str(args.frames), "--warmup", str(args.warmup),
              "--tracks", str(args.tracks), "--threads", str(args.threads), "--clock", args.clock]
    if args.no_subprocess:
        parts = [measure(model, mode, cameras, args.device, args.frames, args.warmup, args.tracks, args.threads,
                         args.clock, wait_for_go=False)]
    else:
        parts = run_processes([["--model", model, "--mode", mode, "--cameras", str(cameras), *common]] * processes)
    row = combine(parts)
    if processes > 1:
        row["mode"] = "processes"
    return row


# -- report ------------------------------------------------------------------------------------------------

HEADER = (f"{'model':>7} {'cams':>4} {'mode':>10} {'procs':>5} | {'peak RSS MiB':>12} {'x 1 cam':>7} "
          f"{'PSS MiB':>8} | {'frames/s':>8} {'x one-at-a-time':>15} {'paired':>6}")


def annotate(rows: list[dict]) -> None:
    """Ratios within the run: RSS against the model's one camera, frames/s against one camera at a time."""
    for row in rows:
        one = next((r for r in rows if r["model"] == row["model"] and r["cameras"] == 1), None)
        turn = next((r for r in rows if r["model"] == row["model"] and r["cameras"] == row["cameras"]
                     and r["mode"] == "sequential"), None)
        row["rss_vs_one_camera"] = row["peak_rss_mib"] / one["peak_rss_mib"] if one else None
        row["fps_vs_one_at_a_time"] = row["fps"] / turn["fps"] if turn else None
        # batched against one camera at a time in the same process and rounds (the load's drift cancels)
        paired = row["mode"] == "batched" and turn and turn.get("paired_batched_fps")
        row["fps_vs_one_at_a_time_paired"] = turn["paired_batched_fps"] / turn["fps"] if paired else None


def line(row: dict) -> str:
    ratio = lambda v: f"{v:.2f}x" if v else "-"  # noqa: E731
    return (f"{row['model']:>7} {row['cameras']:>4} {row['mode']:>10} {row['processes']:>5} | "
            f"{row['peak_rss_mib']:12.0f} {ratio(row['rss_vs_one_camera']):>7} {row['pss_mib']:8.0f} | "
            f"{row['fps']:8.2f} {ratio(row['fps_vs_one_at_a_time']):>15} {ratio(row['fps_vs_one_at_a_time_paired']):>6}")


SPLIT = ("vision", "detector", "tracker", "memory_encoder", "mask_prompter", "outside components", "round")


def time_table(rows: list[dict]) -> str:
    """Where a round's time goes: milliseconds per round of every camera (medians, the run's clock)."""
    out = [f"{'model':>7} {'cams':>4} {'mode':>10} | " + " ".join(f"{name[:12]:>12}" for name in SPLIT)
           + " | page faults"]
    for row in rows:
        ms = row["round_component_ms"]
        out.append(f"{row['model']:>7} {row['cameras']:>4} {row['mode']:>10} | "
                   + " ".join(f"{ms.get(name, 0.0):12.1f}" for name in SPLIT) + f" | {row['round_page_faults']:11.0f}")
    return "\n".join(out)


def environment(args) -> dict:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in out(["lscpu"]).splitlines() if l.startswith("Model name")), "")
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]), "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cpus": os.cpu_count(),
        "load_before": out(["uptime"]), "torch": metadata.version("torch"), "python": platform.python_version(),
        "size": f"{WIDTH}x{HEIGHT}", "concepts": list(CONCEPTS), "tracks_per_camera": args.tracks,
        "frames_per_camera": args.frames, "warmup_rounds": args.warmup, "threads": args.threads,
        "clock": args.clock, "device": args.device, "separate_processes": not args.no_subprocess,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["tiny", "standin", "full"], default=["tiny", "standin"],
                        help="full: full-size random-init SAM 3 (for a GPU)")
    parser.add_argument("--cameras", nargs="+", type=int, default=[1, 2, 4], help="camera counts")
    parser.add_argument("--modes", nargs="+", choices=["sequential", "batched", "processes"],
                        default=["sequential", "batched", "processes"], help="for camera counts above 1")
    add_run_options(parser, frames=10, warmup=3, frames_per="camera")
    parser.add_argument("--tracks", type=int, default=2, help="live tracks held per camera")
    parser.add_argument("--no-subprocess", action="store_true",
                        help="run everything in this process: no separate-process runs, RSS not isolated")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        cameras = args.cameras[0]
        print(json.dumps(measure(args.model, args.mode, cameras, args.device, args.frames, args.warmup, args.tracks,
                                 args.threads, args.clock, wait_for_go=True)))
        return
    if args.no_subprocess:
        args.modes = [m for m in args.modes if m != "processes"]
    report = {"environment": environment(args), "rows": []}
    print(" ".join(f"{k}={v}" for k, v in report["environment"].items()), flush=True)
    print(HEADER, flush=True)
    started = time.monotonic()
    for model in args.models:
        for cameras in args.cameras:
            for mode, per_process, processes in configurations(cameras, args.modes):
                row = run_configuration(args, model, mode, per_process, processes)
                report["rows"].append(row)
                annotate(report["rows"])
                print(line(row), flush=True)
    report["elapsed_s"] = time.monotonic() - started
    print(f"\nms per round of all cameras ({args.clock} clock; network components and the rest), "
          "and the minor page faults of a round:")
    print(time_table(report["rows"]))
    report["targets"] = targets(report["rows"])
    for text in report["targets"]:
        print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def targets(rows: list[dict]) -> list[str]:
    """The issue's two targets, per model, at the most cameras run."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        most = max(r["cameras"] for r in rows if r["model"] == model)
        by_mode = {r["mode"]: r for r in rows if r["model"] == model and r["cameras"] == most}
        if most > 1 and "batched" in by_mode and by_mode["batched"]["rss_vs_one_camera"]:
            separate = by_mode.get("processes")
            out.append(f"{model}: {most} cameras in one process: peak RSS {by_mode['batched']['rss_vs_one_camera']:.2f}x "
                       f"one camera (target <= 1.3x)"
                       + (f"; {most} processes: {separate['rss_vs_one_camera']:.2f}x" if separate else ""))
        batched = by_mode.get("batched", {})
        if batched.get("fps_vs_one_at_a_time"):
            paired = batched["fps_vs_one_at_a_time_paired"]
            out.append(f"{model}: {most} cameras batched: {batched['fps_vs_one_at_a_time']:.2f}x the frames/s of one "
                       f"camera at a time (unpaired runs)" + (f", {paired:.2f}x paired" if paired else "")
                       + " (target >= 1.2x)")
    return out


if __name__ == "__main__":
    main()
