#!/usr/bin/env python3
"""One-shot GPU session: every GPU figure of docs/performance.md from one command in one short lease.

    # on a CUDA machine, from the repository root (no install needed; see docs/performance.md,
    # "One-shot GPU session", for the exact device-tool call):
    PYTHONPATH=. python3 benchmarks/gpu_session.py --out "$OUT"
    # here and in CI: the same code paths on the CPU, tiny model, a few frames (about a minute)
    python benchmarks/gpu_session.py --dry-run --out out/gpu_session_dry
    # only check the device, versions and imports (seconds, no model):
    python benchmarks/gpu_session.py --check

What it measures (full run): the full-size random-init SAM 3 (transformers' default
``Sam3VideoConfig``: the real architecture, so the real FLOPs) at 1008 px in bfloat16 —

- ``ceilings``: this card's bf16 matrix-product rate and device-to-device copy bandwidth;
- ``floor``: FLOPs of each component counted as ``arithmetic_floor.py`` counts them, and its
  arithmetic floor on the H200 ceilings of KINDS.md and on this session's ceilings;
- ``components``: each component timed alone with CUDA events (vision, text, detector with 1 and
  4 concepts, tracker and memory encoder for 1..50 tracks with a full memory), with its ratio to
  the floor and its peak memory;
- ``pipeline_eager``: per-stage latency and end-to-end FPS of ``Sam3Pipeline`` with 1, 5, 10, 20
  and 50 live tracks held exactly (``sam3_ros/bench.py``), on 1280x720 frames, peak memory;
- ``transformers_bf16`` / ``transformers_fp32``: transformers' own streaming ``Sam3VideoModel``
  session on the same frames with ``max_num_objects = N`` (the baseline ratio);
- ``host_path``: ``benchmarks/bench_host_path.py --device cuda --sizes 1280x720 --instances 20``
  in a subprocess (skipped, with the reason, where that script is absent);
- ``cameras``: 1 vs 4 cameras served by one model, each way in the same run: one pipeline per
  camera stepped in turn, and one pipeline's batched ``step_cameras``: peak memory, time per round;
- ``pipeline_compiled``: the same pipeline with ``torch_fast.compile_components`` (compile time
  reported separately as the first frame).

Each part runs under its own deadline (a SIGALRM stops it; a watchdog ends the process if the
session cap is passed by more than 30 s), later parts get what the session cap leaves, and the
JSON and Markdown files are rewritten after every part (and every row), so partial results survive
anything. Exit code 0: every part ran to its end (or was skipped for a stated reason); 1: some part
failed or hit its deadline; 2: no CUDA (use --dry-run); 3: this torch/transformers cannot run it
(the message gives the wheel recipe).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):  # sam3_ros without installing it; the sibling benchmark modules
    if _path not in sys.path:
        sys.path.insert(0, _path)

SCHEMA = 1
# The GPU machine's image, as /work/.library/device/KINDS.md lists it (pip list read 2026-11).
GPU_IMAGE = {"python": "3.12.3", "torch": "2.11.0", "transformers": "5.17.0"}
# transformers releases this script's dry run has passed under (see docs/performance.md).
TESTED_TRANSFORMERS = ("5.17.0", "5.24.0")
WHEEL_VERSION = TESTED_TRANSFORMERS[-1]
# How a transformers wheel travels to the GPU machine (device README: pure-Python wheel, no registry there).
WHEEL_DOWNLOAD = (
    "echo /.whl/ >> .git/info/exclude; python3 -m pip download --no-deps --only-binary=:all: "
    "--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 "
    "--platform manylinux2014_x86_64 -d .whl {spec}"
)
# The host_path part imports sam3_ros.io.ros_types, which needs rosbags (pure Python, 150 kB; the GPU
# image lacks it; its own dependencies are not imported on that path). This is the version tested.
ROSBAGS_SPEC = "rosbags==0.11.9"
OLD_COMMIT = "4902ecf"  # bench_host_path.py's default --old
WHEEL_INSTALL = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
    ".whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH || exit;"
)
HOST_PATH_SCRIPT = HERE / "bench_host_path.py"
WATCHDOG_GRACE_S = 30.0
RESERVE_S = 3.0     # kept back from the session cap for the last write
MIN_PART_S = 2.0    # a part with less time than this left is skipped

# Part name, cap in seconds (full run), what it does. Order = run order: the most wanted first.
PARTS = (
    ("ceilings", 15, "bf16 matrix product and device copy: this card's two ceilings"),
    ("build", 90, "the model, its components and the frames"),
    ("floor", 30, "FLOPs per component (as arithmetic_floor.py) and the floor on H200 / this card"),
    ("components", 40, "each component alone: vision, text, detector (1, 4 concepts), tracker and memory encoder per N"),
    ("pipeline_eager", 60, "Sam3Pipeline, N live tracks held: per-stage latency, FPS, peak memory"),
    ("transformers_bf16", 45, "transformers' streaming Sam3VideoModel session, bf16, same frames"),
    ("pipeline_compiled", 150, "Sam3Pipeline with model.compile'd components (compile_components)"),
    ("host_path", 60, "benchmarks/bench_host_path.py (subprocess): host path, old code vs new"),
    ("cameras", 30, "1 vs 4 cameras sharing one model, in turn vs batched: time per round, peak memory"),
    ("transformers_fp32", 50, "transformers' streaming Sam3VideoModel session, fp32, same frames"),
)
NEEDS_MODEL = {name for name, _, _ in PARTS} - {"ceilings", "build", "host_path"}
NETWORK_STAGES = ("preprocess", "vision", "detector", "tracker", "memory")


@dataclasses.dataclass(frozen=True)
class Settings:
    tracks: tuple[int, ...]
    frames: int                 # pipeline frames per N (first `warmup` not timed)
    warmup: int
    baseline_frames: int
    baseline_warmup: int
    camera_hw: tuple[int, int]  # camera frame (H, W)
    reps: int                   # timed calls per component
    cameras: tuple[int, ...]
    camera_tracks: int
    camera_frames: int
    host_args: tuple[str, ...]
    matmul_n: int
    copy_elements: int
    budget_s: float
    cap_scale: float            # part caps = PARTS caps x this
    dtype: str                  # our pipeline's dtype (the transformers parts set their own)
    compile_backend: str        # torch.compile backend for pipeline_compiled
    compiled_tracks: tuple[int, ...] | None  # None: the same as tracks
    compiled_frames: int        # the memory fills over the first num_maskmem frames: each new layout compiles
    compiled_warmup: int
    tiny_image: int             # dry run: the tiny model's input size


FULL = Settings(
    tracks=(1, 5, 10, 20, 50), frames=24, warmup=8, baseline_frames=12, baseline_warmup=4,
    camera_hw=(720, 1280), reps=20, cameras=(1, 4), camera_tracks=10, camera_frames=10,
    host_args=("--sizes", "1280x720", "--instances", "20"), matmul_n=8192, copy_elements=1 << 30,
    budget_s=360.0, cap_scale=1.0, dtype="bfloat16", compile_backend="inductor", compiled_tracks=None,
    compiled_frames=24, compiled_warmup=8, tiny_image=0,
)
# The CPU has no fast bfloat16 path (a tiny-model frame takes seconds in bf16), so the dry run's
# pipeline runs in float32; the transformers_bf16 part still runs bf16. Inductor on two CPU cores
# needs minutes for the tiny model, so the dry run compiles with dynamo's "eager" backend: the same
# compile_components wiring, tracing, guards and dynamic shapes, without code generation (CUDA
# graphs, mode="reduce-overhead", exist on the GPU only anyway). Its caps are doubled: on a CI machine
# they only guard against a hang.
DRY = Settings(
    tracks=(1, 2), frames=3, warmup=2, baseline_frames=2, baseline_warmup=1,
    camera_hw=(96, 128), reps=2, cameras=(1, 4), camera_tracks=1, camera_frames=2,
    host_args=("--sizes", "160x120", "--instances", "2", "--modes", "default", "--frames", "2"),
    matmul_n=256, copy_elements=1 << 20, budget_s=300.0, cap_scale=2.0, dtype="float32",
    compile_backend="eager", compiled_tracks=(1,), compiled_frames=2, compiled_warmup=1, tiny_image=112,
)


class PartTimeout(BaseException):
    """Raised by SIGALRM in the main thread when a part's deadline passes (BaseException, so that
    no ``except Exception`` inside torch or transformers swallows it)."""


class SkipPart(Exception):
    """A part that cannot run here, and why (recorded as skipped, not failed)."""


class PartClock:
    def __init__(self, deadline: float):
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - time.monotonic()


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise PartTimeout in the main thread after ``seconds``."""
    def _raise(signum, frame):
        raise PartTimeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------------
# Session: report, files, parts


class Session:
    def __init__(self, out_dir: Path, settings: Settings, dry_run: bool, device: str, budget_s: float,
                 argv: list[str]):
        self.out_dir = out_dir
        self.settings = settings
        self.dry_run = dry_run
        self.device_name = device
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.current: str | None = None
        self.lock = threading.Lock()
        self.report: dict = {
            "schema": SCHEMA,
            "dry_run": dry_run,
            "command": " ".join(["python3", "benchmarks/gpu_session.py", *argv]),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget_s,
            "settings": dataclasses.asdict(settings),
            "environment": {},
            "parts": {},
        }
        # filled by parts
        self.loaded = None
        self.components = None
        self.images = None
        self.ceilings: dict | None = None
        self.floors: dict | None = None

    @property
    def json_path(self) -> Path:
        return self.out_dir / "gpu_session.json"

    @property
    def md_path(self) -> Path:
        return self.out_dir / "gpu_session.md"

    def save(self) -> None:
        with self.lock:
            self.report["elapsed_s"] = round(time.monotonic() - self.start, 2)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for path, text in ((self.json_path, json.dumps(self.report, indent=2, default=str)),
                               (self.md_path, render_markdown(self.report))):
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(text)
                os.replace(tmp, path)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def cuda(self) -> bool:
        return self.device_name.startswith("cuda")


def run_part(session: Session, name: str, fn, cap_s: float, needs_model: bool) -> dict:
    """Run one part under min(its cap, what the session has left); never raises (except ^C)."""
    entry: dict = {"status": "running", "cap_s": cap_s, "data": {}}
    session.report["parts"][name] = entry
    reason = None
    if needs_model and session.loaded is None:
        reason = "no model: the build part did not finish"
    left = session.left() - RESERVE_S
    if reason is None and left < MIN_PART_S:
        reason = f"session budget spent ({session.report['budget_s']:.0f} s)"
    if reason is not None:
        entry.update(status="skipped", reason=reason, seconds=0.0)
        session.save()
        print(f"[{name}] skipped: {reason}", flush=True)
        return entry
    limit = min(cap_s, left)
    entry["limit_s"] = round(limit, 1)
    session.current = name
    session.save()
    print(f"[{name}] start, deadline {limit:.0f} s", flush=True)
    start = time.monotonic()
    try:
        with hard_limit(limit):
            fn(session, entry["data"], PartClock(start + limit))
        skipped = entry["data"].get("skipped")
        entry["status"] = "partial" if skipped else "ok"
        if skipped:
            entry["reason"] = "; ".join(skipped)
    except SkipPart as skip:
        entry.update(status="skipped", reason=str(skip))
    except PartTimeout:
        entry.update(status="timeout", reason=f"stopped at its deadline ({limit:.0f} s); rows before it are kept")
    except Exception as err:  # a broken part must not cost the others their time
        entry.update(status="failed", reason=f"{type(err).__name__}: {err}"[:2000],
                     traceback=traceback.format_exc()[-4000:])
    finally:
        entry["seconds"] = round(time.monotonic() - start, 2)
        session.current = None
        _free_memory(session)
        session.save()
    print(f"[{name}] {entry['status']} in {entry['seconds']:.1f} s"
          + (f": {entry['reason']}" if entry.get("reason") else ""), flush=True)
    return entry


def _free_memory(session: Session) -> None:
    gc.collect()
    if session.cuda:
        import torch

        try:  # a part stopped mid-way (e.g. during CUDA graph capture) must not take the session with it
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as err:  # noqa: BLE001
            print(f"warning: freeing GPU memory after a part failed: {err}", flush=True)


def start_watchdog(session: Session) -> None:
    """If a part cannot be interrupted (stuck in C code), end the process after the session cap."""
    def watch():
        while True:
            late = -session.left()
            if late > WATCHDOG_GRACE_S:
                name = session.current or "between parts"
                part = session.report["parts"].get(name)
                if part is not None:
                    part.update(status="killed", reason=f"still running {WATCHDOG_GRACE_S:.0f} s after the session cap")
                session.report["killed_by_watchdog"] = name
                session.save()
                print(f"watchdog: {name} still running {late:.0f} s after the session cap; exiting", flush=True)
                os._exit(124)
            time.sleep(1.0)

    threading.Thread(target=watch, name="gpu-session-watchdog", daemon=True).start()

    def on_term(signum, frame):
        session.report["terminated_by_signal"] = signum
        part = session.report["parts"].get(session.current or "")
        if part is not None:
            part.update(status="killed", reason=f"signal {signum}")
        session.save()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


# ---------------------------------------------------------------------------------------------------
# Preflight: device and versions, before any model exists


def preflight(device: str, dry_run: bool) -> tuple[dict, list[str]]:
    """The environment, and a list of problems that stop the session (with how to fix them)."""
    env: dict = {"python": platform.python_version(), "platform": platform.platform(),
                 "cpu_count": os.cpu_count(), "gpu_image_expected": GPU_IMAGE,
                 "transformers_tested": list(TESTED_TRANSFORMERS)}
    problems: list[str] = []
    try:
        import torch
    except Exception as err:  # noqa: BLE001
        return env, [f"cannot import torch: {err}"]
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["torch_threads"] = torch.get_num_threads()
    env["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except Exception as err:  # noqa: BLE001
        problems.append(f"cannot import transformers: {err}. {wheel_hint()}")
        return env, problems
    try:  # only the host_path part needs it (sam3_ros.io.ros_types); not in the GPU image
        import rosbags  # noqa: F401

        env["rosbags"] = getattr(rosbags, "__version__", "present")
    except Exception:  # noqa: BLE001
        env["rosbags"] = None
    for module in ("numpy", "yaml", "cv2", "tokenizers"):
        try:
            imported = __import__(module)
            env[module] = getattr(imported, "__version__", "?")
        except Exception as err:  # noqa: BLE001
            problems.append(f"cannot import {module}: {err}")
    try:  # everything this script calls, from the transformers API and from our own package
        from transformers import Sam3VideoConfig, Sam3VideoModel  # noqa: F401
        from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import NO_OBJ_SCORE, get_1d_sine_pe  # noqa: F401
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession  # noqa: F401

        import arithmetic_floor  # noqa: F401
        import bench_pipeline  # noqa: F401
        from sam3_ros.backends.torch_backend import torch_components  # noqa: F401
        from sam3_ros.backends.torch_fast import compile_components  # noqa: F401
        from sam3_ros.bench import holding_tracks, synthetic_frames  # noqa: F401
        from sam3_ros.core.pipeline import Sam3Pipeline  # noqa: F401
    except Exception as err:  # noqa: BLE001
        problems.append(f"an import this session needs failed ({type(err).__name__}: {err}). {wheel_hint()}")
    if env.get("transformers") and not str(env["transformers"]).startswith("5."):
        problems.append(f"transformers {env['transformers']} is not 5.x. {wheel_hint()}")
    if device == "cuda":
        if not torch.cuda.is_available():
            problems.append("CUDA is not available here: run on the GPU machine, or use --dry-run for the CPU")
        else:
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info()
            env.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                       gpu_multiprocessors=props.multi_processor_count,
                       gpu_memory_gib=round(total / 2**30, 1), gpu_free_gib=round(free / 2**30, 1))
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
                env["nvidia_smi"] = smi.stdout.strip()
            except Exception as err:  # noqa: BLE001
                env["nvidia_smi"] = f"unavailable: {err}"
    env["device"] = device
    env["dry_run"] = dry_run
    return env, problems


def wheel_hint() -> str:
    return ("This needs a transformers 5.x with SAM 3 video (tested: " + ", ".join(TESTED_TRANSFORMERS) + "). "
            "To carry one to the GPU machine: here, in the repo root, `"
            + WHEEL_DOWNLOAD.format(spec=f"transformers=={WHEEL_VERSION}")
            + "`; then call the device tool with carry ['.whl'] and start the command with `" + WHEEL_INSTALL + "`")


def print_plan(session: Session, parts: list[tuple[str, float, str]], env: dict) -> None:
    s = session.settings
    where = env.get("gpu", "CPU") if session.cuda else f"CPU ({env.get('torch_threads')} threads)"
    model = "tiny random-init SAM 3 (dry run: numbers are meaningless)" if session.dry_run else \
        "full-size random-init SAM 3 (Sam3VideoConfig defaults) at 1008 px, bf16"
    print(f"gpu_session: {model} on {where}; torch {env.get('torch')}, transformers {env.get('transformers')}, "
          f"Python {env.get('python')}", flush=True)
    print(f"  tracks {list(s.tracks)}, camera {s.camera_hw[1]}x{s.camera_hw[0]}, {s.frames} frames per N "
          f"({s.warmup} warm-up), pipeline {s.dtype}, compile backend {s.compile_backend}, "
          f"output {session.out_dir}", flush=True)
    total = 0.0
    for name, cap, what in parts:
        total += cap
        print(f"  {name:18s} cap {cap:5.0f} s  {what}", flush=True)
    print(f"  time: at most {min(total, session.report['budget_s']):.0f} s (session cap "
          f"{session.report['budget_s']:.0f} s; sum of part caps {total:.0f} s: later parts get what is left)",
          flush=True)


# ---------------------------------------------------------------------------------------------------
# Measuring helpers


def _sync(session: Session) -> None:
    if session.cuda:
        import torch

        torch.cuda.synchronize()


def _reset_peak(session: Session) -> None:
    if session.cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(session: Session) -> dict:
    if not session.cuda:
        return {"peak_allocated_mib": None, "peak_reserved_mib": None}
    import torch

    torch.cuda.synchronize()
    return {"peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


def time_call(session: Session, fn, reps: int, warmup: int = 2) -> float:
    """Median milliseconds of ``fn()`` over ``reps`` calls after ``warmup``: CUDA events on the GPU."""
    import torch

    for _ in range(warmup):
        fn()
    _sync(session)
    times = []
    if session.cuda:
        pairs = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize()
        times = [s.elapsed_time(e) for s, e in pairs]
    else:
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def full_memory(session: Session, tracks: int):
    """A MemoryBatch of ``tracks`` tracks, each with the steady-state memory arithmetic_floor.py counts."""
    import torch

    from sam3_ros.core.memory_bank import MemoryEntry, TrackMemory, batch_memories

    g, loaded = session.components.geometry, session.loaded
    memory = TrackMemory(g.num_maskmem, 4, g.max_object_pointers)
    for frame in range(40):  # 4 conditioning frames, 6 recent frames, as in arithmetic_floor.py
        memory.add(MemoryEntry(frame, torch.randn(g.grid ** 2, g.memory_dim, device=loaded.device).bfloat16(),
                               torch.randn(g.hidden, device=loaded.device, dtype=loaded.dtype), frame % 10 == 0))
    return batch_memories([memory] * tracks, 40)


def text_prompts(session: Session, phrases: list[str]):
    from sam3_ros.model.preprocess import tokenize

    ids, mask, _ = tokenize(session.loaded.tokenizer, phrases)
    return session.components.text(ids.to(session.loaded.device), mask.to(session.loaded.device))


def _sig(value: float, digits: int = 5) -> float:
    """``value`` to ``digits`` significant digits (floors span 1e-4 to 1e4 ms)."""
    return float(f"{value:.{digits}g}")


def _projected_ok(data: dict, clock: PartClock, what: str, projected_s: float | None) -> bool:
    """False (and a note in data['skipped']) when ``projected_s`` does not fit in the part's time."""
    left = clock.left()
    if projected_s is not None and projected_s > left:
        data.setdefault("skipped", []).append(f"{what}: needs about {projected_s:.0f} s, {left:.0f} s left")
        return False
    return True


def run_pipeline(session: Session, components, tracks: int, frames: int, warmup: int) -> dict:
    """Sam3Pipeline holding exactly ``tracks`` live tracks (sam3_ros/bench.py's settings) over ``frames``."""
    from sam3_ros.bench import holding_tracks
    from sam3_ros.core.config import PipelineConfig
    from sam3_ros.core.pipeline import Sam3Pipeline
    from sam3_ros.core.prompts import make_concept

    pipeline = Sam3Pipeline(components, session.loaded.tokenizer, holding_tracks(PipelineConfig(), tracks))
    pipeline.set_concepts([make_concept(None, "object")])
    _reset_peak(session)
    stages: dict[str, list[float]] = {}
    walls: list[float] = []
    first_s = None
    for i, image in enumerate(session.images[:frames]):
        start = time.perf_counter()
        result = pipeline.step(image)
        _sync(session)
        wall = time.perf_counter() - start
        if i == 0:
            first_s = wall
        if i >= warmup:
            walls.append(wall * 1e3)
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            held = len(pipeline.tracks.live_ids)
            if held != tracks:
                raise RuntimeError(f"frame {i}: held {held} live tracks instead of {tracks}")
    medians = {stage: round(statistics.median(v), 3) for stage, v in stages.items()}
    total = medians["total"]
    host = sum(v for k, v in medians.items() if k not in NETWORK_STAGES and k != "total")
    wall = statistics.median(walls)
    return {"tracks": tracks, "frames_timed": len(walls), "stages_ms": medians, "total_ms": total,
            "fps": round(1e3 / total, 2), "host_ms": round(host, 3), "wall_ms": round(wall, 3),
            "fps_wall": round(1e3 / wall, 2), "first_frame_s": round(first_s, 3), **_peak(session)}


# ---------------------------------------------------------------------------------------------------
# The parts


def part_ceilings(session: Session, data: dict, clock: PartClock) -> None:
    import torch

    s = session.settings
    device = torch.device(session.device_name)
    n = s.matmul_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    mm_ms = time_call(session, lambda: torch.mm(a, b), reps=10, warmup=3)
    flops = 2 * n ** 3
    data["matmul"] = {"n": n, "dtype": "bfloat16", "data": "random normal", "median_ms": round(mm_ms, 4),
                      "tflop_per_s": round(flops / (mm_ms * 1e-3) / 1e12, 2)}
    del a, b
    src = torch.randn(s.copy_elements, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = time_call(session, lambda: dst.copy_(src), reps=10, warmup=3)
    moved = 2 * src.numel() * src.element_size()  # read + write
    data["copy"] = {"bytes_read_plus_written": moved, "median_ms": round(ms, 4),
                    "tb_per_s": round(moved / (ms * 1e-3) / 1e12, 3)}
    session.ceilings = {"flop_per_s": flops / (mm_ms * 1e-3), "bytes_per_s": moved / (ms * 1e-3)}


def part_build(session: Session, data: dict, clock: PartClock) -> None:
    import torch

    from sam3_ros.backends.torch_backend import torch_components
    from sam3_ros.bench import synthetic_frames

    s = session.settings
    _reset_peak(session)
    start = time.monotonic()
    if session.dry_run:
        from sam3_ros.model.loading import load_tiny

        loaded = load_tiny(device=session.device_name, dtype=s.dtype, image_size=s.tiny_image)
    else:
        from bench_pipeline import full_size_model

        torch.manual_seed(0)
        loaded = full_size_model(session.device_name, s.dtype)
    data["model_seconds"] = round(time.monotonic() - start, 2)
    session.loaded = loaded
    session.components = torch_components(loaded)
    frames = max(s.frames, s.baseline_frames, s.camera_frames * max(s.cameras))
    session.images = synthetic_frames(frames, *s.camera_hw)
    model = loaded.model
    data.update(
        model=loaded.source, dtype=str(loaded.dtype).replace("torch.", ""), device=str(loaded.device),
        parameters_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        attn_implementation=getattr(model.config, "_attn_implementation", None),
        geometry=dataclasses.asdict(session.components.geometry), frames=frames,
        camera=f"{s.camera_hw[1]}x{s.camera_hw[0]}", **_peak(session),
    )
    torch.set_grad_enabled(False)


def part_floor(session: Session, data: dict, clock: PartClock) -> None:
    """FLOPs counted as benchmarks/arithmetic_floor.py counts them, on this session's model."""
    import torch
    from arithmetic_floor import BF16, CEILINGS, component_parameters, count, tensor_bytes

    loaded, c, g = session.loaded, session.components, session.components.geometry
    model = loaded.model
    params = component_parameters(model)
    original = getattr(model.config, "_attn_implementation", None) or "sdpa"
    model.requires_grad_(False)
    model.set_attn_implementation("eager")  # explicit matrix products, every one counted
    try:
        pixels = torch.randn(1, 3, g.image_size, g.image_size, device=loaded.device, dtype=loaded.dtype)
        vision = c.vision(pixels)
        from sam3_ros.model.preprocess import tokenize

        ids, mask, _ = tokenize(loaded.tokenizer, ["object"])
        ids, mask = ids.to(loaded.device), mask.to(loaded.device)
        prompts = c.text(ids, mask)
        batch = full_memory(session, 1)
        masks = torch.randn(1, g.mask_size, g.mask_size, device=loaded.device)
        vision_out = [*vision.det_fpn, *vision.trk_high_res, vision.trk_feat]
        rows = [
            ("vision", "per frame", count(lambda: c.vision(pixels)), params["vision"], tensor_bytes([pixels, *vision_out])),
            ("text", "per phrase (cached)", count(lambda: c.text(ids, mask)), params["text"], 0),
            ("detector", "per concept", count(lambda: c.detector(vision, prompts)), params["detector"],
             tensor_bytes(vision.det_fpn)),
            ("tracker", "per track, full memory", count(lambda: c.tracker(vision, batch)), params["tracker"],
             tensor_bytes([batch.spatial, batch.pointers])),
            ("memory_encoder", "per track", count(lambda: c.memory_encoder(vision, masks, torch.ones(1, device=loaded.device))),
             0, tensor_bytes([masks, vision.trk_feat])),
        ]
    finally:
        model.set_attn_implementation(original)
    data["memory"] = {"spatial_memories": int(batch.spatial.shape[1]), "tokens_each": g.grid ** 2,
                      "pointers": int(batch.pointers.shape[1])}
    data["ceilings_kinds_md"] = {k: {"flop_per_s": v[0], "bytes_per_s": v[1]} for k, v in CEILINGS.items()}
    data["components"] = {}
    floors = {}
    for name, unit, flops, n_params, io_bytes in rows:
        moved = n_params * BF16 + io_bytes
        rate, bandwidth = CEILINGS["H200"]
        row = {"unit": unit, "gflop": round(flops / 1e9, 3), "parameters_m": round(n_params / 1e6, 2),
               "mb_moved": round(moved / 1e6, 2),
               "floor_ms_h200": _sig(max(flops / rate, moved / bandwidth) * 1e3)}
        if session.ceilings:
            row["floor_ms_session"] = _sig(max(flops / session.ceilings["flop_per_s"],
                                               moved / session.ceilings["bytes_per_s"]) * 1e3)
        data["components"][name] = row
        floors[name] = row
    session.floors = floors


def part_components(session: Session, data: dict, clock: PartClock) -> None:
    import torch

    s, loaded, c, g = session.settings, session.loaded, session.components, session.components.geometry
    rows = data.setdefault("rows", [])
    pixels = torch.randn(1, 3, g.image_size, g.image_size, device=loaded.device, dtype=loaded.dtype)
    vision = c.vision(pixels)

    def measure(component: str, units: int, fn) -> None:
        _reset_peak(session)
        ms = time_call(session, fn, s.reps, warmup=min(2, s.reps))
        row = {"component": component, "units": units, "median_ms": round(ms, 4),
               "per_unit_ms": round(ms / units, 4), **_peak(session)}
        floor = (session.floors or {}).get(component)
        if floor:
            for key in ("floor_ms_h200", "floor_ms_session"):
                if floor.get(key):
                    row[key.replace("floor", "ratio")] = round(ms / (floor[key] * units), 3)
        rows.append(row)
        session.save()

    measure("vision", 1, lambda: c.vision(pixels))
    ids = text_prompts(session, ["object"])
    measure("text", 1, lambda: text_prompts(session, ["object"]))
    phrases = ["object", "person", "forklift", "pallet"]
    prompts4 = text_prompts(session, phrases)
    measure("detector", 1, lambda: c.detector(vision, ids))
    measure("detector", len(phrases), lambda: c.detector(vision, prompts4))
    last = None
    for tracks in s.tracks:
        projected = None if last is None else last * tracks * (s.reps + 2) / 1e3
        if not _projected_ok(data, clock, f"tracker/memory encoder at {tracks} tracks", projected):
            break
        batch = full_memory(session, tracks)
        measure("tracker", tracks, lambda: c.tracker(vision, batch))
        logits = torch.randn(tracks, g.mask_size, g.mask_size, device=loaded.device) * 10
        objects = torch.where(torch.rand(tracks, device=loaded.device) > 0.5, 10.0, -10.0)
        measure("memory_encoder", tracks, lambda: c.memory_encoder(vision, logits, objects))
        last = (rows[-2]["median_ms"] + rows[-1]["median_ms"]) / tracks
        del batch


def _pipeline_rows(session: Session, data: dict, clock: PartClock, components, frames: int, warmup: int,
                   track_counts: tuple[int, ...]) -> None:
    rows = data.setdefault("rows", [])
    per_track_frame_s = None
    for tracks in track_counts:
        projected = None if per_track_frame_s is None else per_track_frame_s * max(tracks, 1) * frames
        if not _projected_ok(data, clock, f"{tracks} tracks", projected):
            break
        row = run_pipeline(session, components, tracks, frames, warmup)
        rows.append(row)
        print(f"  {tracks:3d} tracks: total {row['total_ms']:.2f} ms ({row['fps']:.1f} fps), wall {row['wall_ms']:.2f} ms, "
              f"host {row['host_ms']:.2f} ms, first frame {row['first_frame_s']:.2f} s, "
              f"peak {row['peak_allocated_mib']} MiB", flush=True)
        session.save()
        per_track_frame_s = row["wall_ms"] / 1e3 / max(tracks, 1) * 1.2


def part_pipeline_eager(session: Session, data: dict, clock: PartClock) -> None:
    s = session.settings
    _pipeline_rows(session, data, clock, session.components, s.frames, s.warmup, s.tracks)


def part_pipeline_compiled(session: Session, data: dict, clock: PartClock) -> None:
    import torch

    from sam3_ros.backends.torch_fast import compile_components

    s = session.settings
    data["backend"] = s.compile_backend
    with compile_backend(s.compile_backend):
        fast = compile_components(session.components)
    data["note"] = "first_frame_s includes compilation (and CUDA graph capture of the vision encoder)"
    try:
        _pipeline_rows(session, data, clock, fast, s.compiled_frames, s.compiled_warmup,
                       s.compiled_tracks or s.tracks)
    finally:
        try:  # recompilations and graph breaks say whether the compiled path really ran compiled
            from torch._dynamo.utils import counters

            data["dynamo_stats"] = {k: int(v) for k, v in counters["stats"].items()}
            data["dynamo_counters"] = {k: int(sum(v.values())) for k, v in counters.items() if k != "stats"}
        except Exception:  # noqa: BLE001
            pass
        del fast
        torch.compiler.reset()


@contextlib.contextmanager
def compile_backend(backend: str):
    """torch.compile as compile_components calls it, with another backend than inductor (dry run)."""
    import torch

    if backend == "inductor":
        yield
        return
    original = torch.compile

    def compile_with(model=None, **kwargs):
        kwargs.pop("mode", None)  # a mode is an inductor setting
        return original(model, backend=backend, **kwargs)

    torch.compile = compile_with
    try:
        yield
    finally:
        torch.compile = original


def _transformers_rows(session: Session, data: dict, clock: PartClock, dtype_name: str) -> None:
    import torch
    from bench_pipeline import time_transformers

    from sam3_ros.model.loading import LoadedSam3

    s, loaded = session.settings, session.loaded
    model = loaded.model
    dtype = getattr(torch, dtype_name)
    saved = {k: getattr(model, k) for k in ("score_threshold_detection", "new_det_thresh", "max_num_objects")
             if hasattr(model, k)}
    rows = data.setdefault("rows", [])
    try:
        model.to(dtype)
        base = LoadedSam3(model, loaded.tokenizer, loaded.device, dtype, True, loaded.source, "n/a")
        images = session.images[:s.baseline_frames]
        per_track_frame_s = None
        for tracks in s.tracks:
            projected = None if per_track_frame_s is None else per_track_frame_s * tracks * len(images)
            if not _projected_ok(data, clock, f"{tracks} tracks", projected):
                break
            _reset_peak(session)
            start = time.monotonic()
            ms = time_transformers(base, tracks, images, s.baseline_warmup)
            spent = time.monotonic() - start
            rows.append({"tracks": tracks, "median_ms": round(ms, 3), "fps": round(1e3 / ms, 2),
                         "frames_timed": len(images) - s.baseline_warmup, **_peak(session)})
            print(f"  transformers {dtype_name} {tracks:3d} tracks: {ms:.2f} ms per frame", flush=True)
            session.save()
            per_track_frame_s = spent / len(images) / max(tracks, 1) * 1.2
    finally:
        model.to(loaded.dtype)
        for key, value in saved.items():
            setattr(model, key, value)


def part_transformers_bf16(session: Session, data: dict, clock: PartClock) -> None:
    _transformers_rows(session, data, clock, "bfloat16")


def part_transformers_fp32(session: Session, data: dict, clock: PartClock) -> None:
    _transformers_rows(session, data, clock, "float32")


def part_host_path(session: Session, data: dict, clock: PartClock) -> None:
    script = HOST_PATH_SCRIPT
    if not script.is_file():
        raise SkipPart(f"{script.relative_to(ROOT)} is absent (issue 14 has not landed it)")
    if not session.report["environment"].get("rosbags"):
        raise SkipPart("rosbags is not installed (the host path builds ROS messages). To carry it: here, `"
                       + WHEEL_DOWNLOAD.format(spec=ROSBAGS_SPEC) + "`; carry ['.whl'] and start the command "
                       "with `" + WHEEL_INSTALL + "`")
    result_path = session.out_dir / "host_path.json"
    cmd = [sys.executable, str(script), "--device", session.device_name, *session.settings.host_args,
           "--json", str(result_path)]
    old_reason = None
    if session.dry_run:
        old_reason = "dry run: new code only (half the processes)"
    elif not old_commit_available():
        old_reason = f"no git history of {OLD_COMMIT} here (the device copy carries no .git): new code only"
    if old_reason:
        cmd += ["--old", "none"]
        data["old_code"] = old_reason
    data["command"] = " ".join(cmd[1:])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    timeout = max(clock.left() - 2.0, 1.0)
    # its own process group: bench_host_path.py starts worker processes, which must end with it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:  # the timeout, or this part's own deadline
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        data["output_tail"] = (stdout + stderr)[-3000:]
        raise
    data["returncode"] = proc.returncode
    data["output_tail"] = (stdout + stderr)[-3000:]
    if proc.returncode != 0:
        raise RuntimeError(f"bench_host_path.py exited with {proc.returncode}: {(stderr or stdout)[-500:]}")
    if result_path.is_file():
        data["result"] = json.loads(result_path.read_text())
    else:
        raise RuntimeError(f"bench_host_path.py wrote no {result_path.name}")


def old_commit_available() -> bool:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
                              capture_output=True, timeout=20).returncode == 0
    except Exception:  # noqa: BLE001
        return False


def part_cameras(session: Session, data: dict, clock: PartClock) -> None:
    """N cameras on one model, two ways in one run: one pipeline per camera stepped in turn (each
    camera's frame through the backbone at batch 1), and one pipeline's ``step_cameras`` (every
    camera's frame in one batch)."""
    from sam3_ros.bench import holding_tracks
    from sam3_ros.core.config import PipelineConfig
    from sam3_ros.core.pipeline import CameraFrame, Sam3Pipeline
    from sam3_ros.core.prompts import make_concept

    s = session.settings
    data["note"] = ("one model's components shared; 'in turn': one Sam3Pipeline per camera, frames one "
                    "after another; 'batched': one Sam3Pipeline, step_cameras over all cameras")
    rows = data.setdefault("rows", [])
    warmup = max(1, s.camera_frames // 3)

    def pipeline() -> Sam3Pipeline:
        made = Sam3Pipeline(session.components, session.loaded.tokenizer,
                            holding_tracks(PipelineConfig(), s.camera_tracks))
        made.set_concepts([make_concept(None, "object")])
        return made

    for cameras in s.cameras:
        names = [f"camera{c}" for c in range(cameras)]
        for mode in ("in turn", "batched"):
            _reset_peak(session)
            pipelines = {name: pipeline() for name in names} if mode == "in turn" else {"": pipeline()}
            rounds = []
            for i in range(s.camera_frames):
                frames = {name: CameraFrame(session.images[(i + 3 * c) % len(session.images)])
                          for c, name in enumerate(names)}
                start = time.perf_counter()
                if mode == "in turn":
                    for name, frame in frames.items():
                        pipelines[name].step(frame.image)
                else:
                    pipelines[""].step_cameras(frames)
                _sync(session)
                if i >= warmup:
                    rounds.append((time.perf_counter() - start) * 1e3)
            held = [len(p.tracks.live_ids) for p in pipelines.values()] if mode == "in turn" else \
                [len(pipelines[""].tracks_of(name).live_ids) for name in names]
            if any(h != s.camera_tracks for h in held):
                raise RuntimeError(f"{mode}: held {held} live tracks instead of {s.camera_tracks} per camera")
            state_bytes = sum(p.state_bytes() for p in pipelines.values())
            round_ms = statistics.median(rounds)
            rows.append({"cameras": cameras, "mode": mode, "tracks_per_camera": s.camera_tracks,
                         "round_ms": round(round_ms, 3), "per_frame_ms": round(round_ms / cameras, 3),
                         "fps_per_camera": round(1e3 / round_ms, 2), "pipeline_state_bytes": state_bytes,
                         "pipeline_state_mib": round(state_bytes / 2**20, 2), **_peak(session)})
            session.save()
            del pipelines


PART_FUNCTIONS = {
    "ceilings": part_ceilings, "build": part_build, "floor": part_floor, "components": part_components,
    "pipeline_eager": part_pipeline_eager, "transformers_bf16": part_transformers_bf16,
    "host_path": part_host_path, "cameras": part_cameras, "pipeline_compiled": part_pipeline_compiled,
    "transformers_fp32": part_transformers_fp32,
}


# ---------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(report: dict) -> str:
    env, parts = report.get("environment", {}), report.get("parts", {})
    data = {name: part.get("data", {}) for name, part in parts.items()}
    lines = ["# One-shot GPU session", ""]
    if report.get("dry_run"):
        lines += ["**DRY RUN** (CPU, tiny random-init model, a few frames): every number below is meaningless; "
                  "it only proves the code paths run.", ""]
    lines += [f"- command: `{report.get('command')}`", f"- started (UTC): {report.get('started_utc')}, "
              f"elapsed {report.get('elapsed_s')} s of a {report.get('budget_s')} s cap",
              f"- device: {env.get('gpu', 'CPU')}" + (f" (capability {env['gpu_capability']}, "
                                                        f"{env['gpu_memory_gib']} GiB, nvidia-smi: {env.get('nvidia_smi')})"
                                                        if env.get("gpu") else ""),
              f"- Python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
              f"transformers {env.get('transformers')}"]
    build = data.get("build", {})
    if build:
        lines.append(f"- model: {build.get('model')}, {build.get('parameters_m')} M parameters, {build.get('dtype')}, "
                     f"input {build.get('geometry', {}).get('image_size')} px, attention "
                     f"{build.get('attn_implementation')}, camera frames {build.get('camera')}")
    lines += ["", "## Parts", ""]
    lines += _table(["part", "status", "seconds", "deadline (s)", "note"],
                    [[name, p.get("status"), p.get("seconds"), p.get("limit_s"), (p.get("reason") or "")[:200]]
                     for name, p in parts.items()])
    ceil = data.get("ceilings", {})
    if ceil.get("matmul"):
        lines += ["## Ceilings measured in this session", ""]
        rows = [[f"bf16 matrix product {ceil['matmul']['n']}³ (random data)", ceil["matmul"]["median_ms"],
                 f"{ceil['matmul']['tflop_per_s']} TFLOP/s"]]
        if ceil.get("copy"):
            rows.append([f"device copy, {ceil['copy']['bytes_read_plus_written'] / 1e9:.2f} GB read + written",
                         ceil["copy"]["median_ms"], f"{ceil['copy']['tb_per_s']} TB/s"])
        lines += _table(["what", "median ms", "rate"], rows)
    comp = data.get("components", {}).get("rows", [])
    floor = data.get("floor", {}).get("components", {})
    if comp or floor:
        lines += ["## Components alone against the arithmetic floor", "",
                  "Floor = max(FLOPs / matrix rate, bytes / bandwidth) per unit × units; ratio = measured / floor "
                  "(1.0 = at the floor). H200 ceilings from KINDS.md (788 TFLOP/s, 4.3 TB/s); "
                  "'session' uses the ceilings measured above.", ""]
        rows = []
        for r in comp:
            f = floor.get(r["component"], {})
            rows.append([r["component"], r["units"], r["median_ms"], r["per_unit_ms"], f.get("gflop"),
                         f.get("floor_ms_h200"), r.get("ratio_ms_h200"), r.get("ratio_ms_session"),
                         r.get("peak_allocated_mib")])
        if not comp:
            rows = [[name, 1, None, None, f.get("gflop"), f.get("floor_ms_h200"), None, None, None]
                    for name, f in floor.items()]
        lines += _table(["component", "units (concepts/tracks)", "median ms", "ms per unit", "GFLOP per unit",
                         "H200 floor ms per unit", "ratio (H200)", "ratio (session)", "peak MiB"], rows)
    eager = {r["tracks"]: r for r in data.get("pipeline_eager", {}).get("rows", [])}
    compiled = {r["tracks"]: r for r in data.get("pipeline_compiled", {}).get("rows", [])}
    hf16 = {r["tracks"]: r for r in data.get("transformers_bf16", {}).get("rows", [])}
    hf32 = {r["tracks"]: r for r in data.get("transformers_fp32", {}).get("rows", [])}
    tracks = sorted(set(eager) | set(compiled) | set(hf16) | set(hf32))
    if tracks:
        lines += ["## Pipeline against live tracks", "",
                  "Medians over the timed frames; live tracks held at exactly N; 'total' is the sum of the stage "
                  "timers (CUDA synchronised around each stage), 'wall' the whole `step`. 'host' = stages that run "
                  "no network (prompts, association, postprocess). transformers: its own streaming "
                  "`Sam3VideoModel` session on the same frames, `max_num_objects = N`; ratio = its ms / our eager total.",
                  ""]
        rows = []
        for n in tracks:
            e, c, b16, b32 = eager.get(n, {}), compiled.get(n, {}), hf16.get(n, {}), hf32.get(n, {})
            st = e.get("stages_ms", {})
            ratio = lambda b: round(b["median_ms"] / e["total_ms"], 2) if b.get("median_ms") and e.get("total_ms") else None  # noqa: E731
            rows.append([n, e.get("total_ms"), e.get("fps"), e.get("wall_ms"), st.get("vision"), st.get("detector"),
                         st.get("tracker"), st.get("memory"), e.get("host_ms"), e.get("peak_allocated_mib"),
                         c.get("total_ms"), c.get("fps"), c.get("peak_allocated_mib"), b16.get("median_ms"), ratio(b16),
                         b16.get("peak_allocated_mib"), b32.get("median_ms"), ratio(b32)])
        lines += _table(["tracks", "eager total ms", "eager FPS", "eager wall ms", "vision", "detector", "tracker",
                         "memory", "host", "eager peak MiB", "compiled total ms", "compiled FPS", "compiled peak MiB",
                         "transformers bf16 ms", "bf16 / ours", "transformers bf16 peak MiB", "transformers fp32 ms",
                         "fp32 / ours"], rows)
        if compiled:
            comp_data = data.get("pipeline_compiled", {})
            lines += [f"Compiled ({comp_data.get('backend')} backend) first frame, compilation included: " + ", ".join(
                f"{n} tracks {r.get('first_frame_s')} s" for n, r in sorted(compiled.items()))
                + f"; dynamo counters {comp_data.get('dynamo_counters')}, stats {comp_data.get('dynamo_stats')}", ""]
    cams = data.get("cameras", {}).get("rows", [])
    if cams:
        lines += ["## Cameras sharing one model", "", data["cameras"].get("note", ""), ""]
        lines += _table(["cameras", "mode", "tracks per camera", "ms per round", "ms per frame", "FPS per camera",
                         "pipeline state MiB", "peak MiB"],
                        [[r["cameras"], r.get("mode"), r["tracks_per_camera"], r["round_ms"], r["per_frame_ms"],
                          r["fps_per_camera"], r["pipeline_state_mib"], r.get("peak_allocated_mib")] for r in cams])
    host = data.get("host_path", {})
    if host.get("result") is not None:
        lines += ["## Host path (bench_host_path.py)", "", f"`{host.get('command')}`", "", "```json",
                  json.dumps(host["result"], indent=1, default=str)[:6000], "```", ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output folder (default out/gpu_session or out/gpu_session_dry)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few frames: the same code paths")
    parser.add_argument("--check", action="store_true", help="only check the device, versions and imports")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu (default with --dry-run)")
    parser.add_argument("--budget", type=float, default=None, help="session cap in seconds (default 360; dry run 300)")
    parser.add_argument("--parts", default=None,
                        help="comma-separated parts to run (default all): " + ",".join(n for n, _, _ in PARTS)
                        + "; parts needing the model add build")
    parser.add_argument("--tracks", type=int, nargs="+", default=None, help="live-track counts (default 1 5 10 20 50)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend for pipeline_compiled (default inductor; dry run: eager)")
    args = parser.parse_args(argv)

    settings = DRY if args.dry_run else FULL
    if args.tracks:
        settings = dataclasses.replace(settings, tracks=tuple(args.tracks))
    if args.compile_backend:
        settings = dataclasses.replace(settings, compile_backend=args.compile_backend)
    device = args.device or ("cpu" if args.dry_run else "cuda")
    budget = args.budget if args.budget is not None else settings.budget_s
    out_dir = Path(args.out or ("out/gpu_session_dry" if args.dry_run else "out/gpu_session")).resolve()

    env, problems = preflight(device, args.dry_run)
    for key in ("python", "torch", "transformers", "gpu"):
        if key in env:
            expected = GPU_IMAGE.get(key)
            print(f"{key}: {env[key]}" + (f" (GPU image: {expected})" if expected else ""), flush=True)
    if problems:
        for problem in problems:
            print(f"cannot run: {problem}", file=sys.stderr, flush=True)
        no_cuda = any("CUDA is not available" in p for p in problems)
        return 2 if no_cuda and len(problems) == 1 else 3
    if args.check:
        print("check passed: this device and these versions can run the session", flush=True)
        return 0

    selected = [p for p in PARTS]
    if args.parts:
        wanted = {p.strip() for p in args.parts.split(",") if p.strip()}
        unknown = wanted - {n for n, _, _ in PARTS}
        if unknown:
            parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
        if wanted & NEEDS_MODEL:
            wanted.add("build")
        selected = [p for p in PARTS if p[0] in wanted]
    selected = [(name, cap * settings.cap_scale, what) for name, cap, what in selected]

    session = Session(out_dir, settings, args.dry_run, device, budget, argv)
    session.report["environment"] = env
    session.report["plan"] = [{"part": n, "cap_s": c, "what": w} for n, c, w in selected]
    print_plan(session, selected, env)
    session.save()
    start_watchdog(session)
    for name, cap, _ in selected:
        run_part(session, name, PART_FUNCTIONS[name], cap, name in NEEDS_MODEL)
    session.report["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    session.save()
    print(render_markdown(session.report), flush=True)
    print(f"wrote {session.json_path} and {session.md_path}", flush=True)
    bad = [n for n, p in session.report["parts"].items() if p["status"] in ("failed", "timeout", "killed")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
