"""The ``sam3-ros`` command: run | export | build-engines | bench | demo.

Exit codes: 0 success, 1 stopped early on bad input (outputs up to there are kept; with --inputs:
some inputs failed), 2 nothing could be done (bad arguments, checkpoint, prompts or input),
130 stopped by Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from . import __version__
from .core.config import load_config
from .core.prompts import ExemplarBox, PromptError, make_concept
from .backends.engine_cache import EngineCacheError
from .backends.manifest import ExportedModelError
from .io.camera_topics import camera_topics
from .io.sources import SourceError
from .model.loading import CheckpointError
from .stop_signals import SIGNALS, Interrupted, StopSignals

log = logging.getLogger("sam3_ros")

EXIT_OK, EXIT_PARTIAL, EXIT_FAILED = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM: 143


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    args.stop_signals = StopSignals().install()
    try:
        return args.handler(args)
    except (PromptError, CheckpointError, SourceError, ExportedModelError, EngineCacheError, FileExistsError,
            ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as stop:  # outputs are closed on the way out; a fleet job handles its own
        print(f"{stop}: every output file written so far is closed and readable", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam3-ros", description="SAM 3 segmentation and tracking for robots.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="segment and track concepts in a video, image folder or rosbag2 "
                                           "(or many of them, on Ray)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="video file, image folder, or rosbag2 (MCAP or sqlite3)")
    source.add_argument("--inputs", metavar="DIR_OR_MANIFEST",
                        help="many recordings, on Ray: a folder of them, or a manifest (one PATH [IMAGE_TOPIC] a line)")
    run.add_argument("--output", required=True, help="output directory (results.mcap, results.json, overlay.mp4; "
                                                     "with --inputs one folder per input and summary.json)")
    run.add_argument("--image-topic", action="append", default=[], metavar="[NAME=]TOPIC",
                     help="image topic to read from a rosbag2 (with --inputs: of every rosbag2 whose manifest line "
                          "names none); give it once per camera to run several cameras of one rosbag2 through one "
                          "model, each named NAME or after its topic's namespace (/head/image: head)")
    _add_prompt_args(run)
    _add_model_args(run)
    run.add_argument("--max-frames", type=POSITIVE_INT, metavar="N", help="stop after this many frames")
    run.add_argument("--start-time", type=_start_time, metavar="TIME",
                     help="stamp of the first frame of a video or image folder: seconds since the epoch or an "
                          "ISO 8601 time, e.g. 2026-12-01T09:30:00Z (UTC unless it names a zone); default 0 "
                          "(1970-01-01). A rosbag2 keeps its own stamps")
    run.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    fleet = run.add_argument_group("with --inputs (Ray)")
    fleet.add_argument("--workers", type=POSITIVE_INT, metavar="N", help="workers, each loading the model once (default: one per GPU, "
                                                   "or per CPU with --device cpu)")
    fleet.add_argument("--gpus-per-worker", type=POSITIVE_FLOAT, default=1.0, metavar="G", help="GPUs per worker; 0.5 puts two on a GPU")
    fleet.add_argument("--cpus-per-worker", type=POSITIVE_FLOAT, default=1.0, metavar="C", help="CPUs per worker")
    fleet.add_argument("--ray-address", help="a Ray cluster (ray://HOST:10001 or HOST:6379); default: a local Ray")
    run.set_defaults(handler=_run)

    export = commands.add_parser("export", help="export every component to ONNX, verified against PyTorch")
    export.add_argument("--output", default="engines", help="export directory (the backends' model.engines_dir)")
    export.add_argument("--components", nargs="*", help="only these components (default: all)")
    export.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    _add_model_args(export)
    export.set_defaults(handler=_export)

    engines = commands.add_parser("build-engines", help="build TensorRT engines from an export directory")
    engines.add_argument("--engines-dir", default="engines", help="export directory with manifest.json")
    engines.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16",
                         help="engine precision; Softmax, normalisation and reductions stay FP32 (default: bf16)")
    engines.add_argument("--force", action="store_true", help="rebuild even valid cached engines")
    engines.add_argument("--config", help="YAML configuration (track cap and memory sizes set the shape ranges)")
    engines.add_argument("--device", default="cuda", help="the GPU to build for: cuda or cuda:N (default: cuda)")
    engines.set_defaults(handler=_build_engines)

    bench = commands.add_parser("bench", help="per-stage latency of the configured model with N live tracks")
    bench.add_argument("--tracks", type=POSITIVE_INT, nargs="+", default=[1, 5, 10], metavar="N",
                       help="live track counts to measure, one line each (default: 1 5 10)")
    bench.add_argument("--frames", type=POSITIVE_INT, default=30, metavar="N",
                       help="frames timed per track count (default: 30)")
    bench.add_argument("--warmup", type=NONNEGATIVE_INT, default=8, metavar="N",
                       help="frames run first and not timed (default: 8)")
    bench.add_argument("--image", type=POSITIVE_INT, nargs=2, default=[720, 1280], metavar=("H", "W"),
                       help="synthetic frame size in pixels (default: 720 1280)")
    _add_model_args(bench)
    bench.set_defaults(handler=_bench)

    demo = commands.add_parser("demo", help="run the offline runner on a generated clip (tiny model by default)")
    demo.add_argument("--output", default="out/demo",
                      help="output folder: new, or one an earlier demo wrote (default: out/demo)")
    demo.add_argument("--frames", type=POSITIVE_INT, default=48, metavar="N",
                      help="frames of the generated clip (default: 48)")
    _add_model_args(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _number(kind: type, low: float, low_open: bool = False):
    """An argparse type: a ``kind`` number at least (or, ``low_open``, above) ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value < low or (low_open and value == low) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _start_time(text: str) -> int:
    """--start-time as nanoseconds since the epoch."""
    from datetime import datetime, timezone

    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds since the epoch or an ISO 8601 time such as "
                                             f"2026-12-01T09:30:00Z, got {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp()
    if not 0 <= seconds < 2**31:  # builtin_interfaces/Time keeps seconds in an int32
        raise argparse.ArgumentTypeError(f"must lie between 1970 and 2038 (ROS stamps), got {text!r}")
    return round(seconds * 1e9)


POSITIVE_INT, NONNEGATIVE_INT, POSITIVE_FLOAT = _number(int, 1), _number(int, 0), _number(float, 0, low_open=True)


def _add_prompt_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                        help='a noun phrase to find and track, e.g. "yellow forklift" (repeatable)')
    parser.add_argument("--box", action="append", default=[], metavar="ID:X1,Y1,X2,Y2[:neg]",
                        help="an exemplar box (pixels of the first frame) for concept ID; a new ID makes a "
                             "box-only concept; ':neg' marks a negative exemplar (repeatable)")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration (plain or a ROS parameter file)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="local SAM 3 checkpoint directory (hf download facebook/sam3)")
    model.add_argument("--tiny", action="store_true", help="random-init tiny model (smoke tests; outputs meaningless)")
    parser.add_argument("--backend", help="torch | onnxruntime | tensorrt")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value, e.g. tracking.max_tracks=20 (repeatable)")


def _loading(load, config):
    """``load(config)``, saying first what loads (the real checkpoint takes a while)."""
    what = "the tiny random-init model" if config.model.tiny else (config.model.checkpoint or config.model.engines_dir)
    print(f"loading SAM 3: {what} ({config.model.backend}, device {config.model.device}) ...", file=sys.stderr,
          flush=True)
    return load(config)


def _announce(loaded) -> None:
    """Say which model runs, once: the loader has already warned about random weights it loaded."""
    if not (loaded.weights is not None and loaded.random_weights):
        print(loaded.description, file=sys.stderr)


def _config_from(args: argparse.Namespace, default_tiny: bool = False):
    overrides: dict = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = _parse_value(value.strip())
    for key in ("backend", "device", "dtype", "checkpoint"):
        if getattr(args, key, None):
            overrides[f"model.{key}"] = getattr(args, key)
    if args.tiny or (default_tiny and not args.checkpoint):
        overrides["model.tiny"] = True
    config = load_config(args.config, overrides)
    if config.model.backend == "torch" and not config.model.tiny and not config.model.checkpoint:
        raise ValueError("give --checkpoint DIR (a local facebook/sam3 download) or --tiny")
    return config


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def parse_concepts(prompts: list[str], boxes: list[str]) -> list:
    """--prompt and --box arguments to validated concepts (ids derived from the phrases)."""
    concepts = {}
    for text in prompts:
        concept = make_concept(None, text)
        concepts[concept.id] = concept
    exemplars: dict[str, list[ExemplarBox]] = {}
    for spec in boxes:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("neg", "pos")):
            raise PromptError(f"--box expects ID:X1,Y1,X2,Y2[:neg], got {spec!r}")
        try:
            x1, y1, x2, y2 = (float(v) for v in parts[1].split(","))
        except ValueError:
            raise PromptError(f"--box coordinates must be four numbers, got {parts[1]!r}") from None
        exemplars.setdefault(parts[0], []).append(ExemplarBox(x1, y1, x2, y2, positive=parts[-1] != "neg"))
    for concept_id, boxes_of in exemplars.items():
        base = concepts.get(concept_id)
        concepts[concept_id] = make_concept(concept_id, base.text if base else "", boxes_of)
    if not concepts:
        raise PromptError("give at least one --prompt or --box")
    return list(concepts.values())


def _run(args: argparse.Namespace) -> int:
    from .factory import load_pipeline
    from .runner import check_run, run_offline

    if args.inputs:
        return _run_fleet(args)
    if args.workers or args.ray_address:
        raise ValueError("--workers and --ray-address go with --inputs (many recordings on Ray)")
    concepts = parse_concepts(args.prompt, args.box)
    config = _config_from(args)
    cameras = camera_topics(args.image_topic)
    image_topic = None if cameras else next(iter(args.image_topic), None)
    # Inputs, output folder and boxes are checked before the model loads (3.4 GB for the real one).
    concepts = check_run(args.input, args.output, concepts, image_topic, start_ns=args.start_time,
                         on_warning=lambda note: print(f"warning: {note}", file=sys.stderr), cameras=cameras)
    loaded = _loading(load_pipeline, config)
    _announce(loaded)
    with args.stop_signals.deferred():  # a signal stops the run between frames, every file closed
        summary = run_offline(loaded.pipeline, concepts, args.input, args.output,
                              image_topic=image_topic, max_frames=args.max_frames, overlay=not args.no_overlay,
                              progress=not args.no_progress, model_description=loaded.description,
                              start_ns=args.start_time, on_frame=lambda _: args.stop_signals.check(),
                              cameras=cameras)
    print(summary.describe())
    for warning in dict.fromkeys(summary.warnings):
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_PARTIAL if summary.error else EXIT_OK


def _run_fleet(args: argparse.Namespace) -> int:
    from .fleet.inputs import discover_inputs
    from .fleet.ray_job import FleetJob, import_ray, run_fleet

    if args.start_time is not None:
        raise ValueError("--start-time goes with --input (one recording); with --inputs each video starts at 0")
    if camera_topics(args.image_topic):
        raise ValueError("with --inputs, give one --image-topic TOPIC (several cameras of one rosbag2 go with "
                         "--input; a manifest line per topic labels each camera on its own)")
    concepts = parse_concepts(args.prompt, args.box)
    config = _config_from(args)
    inputs = discover_inputs(args.inputs, next(iter(args.image_topic), None), exclude=args.output)
    import_ray()  # says how to install it, before anything starts
    request = {"inputs": args.inputs, "output": args.output, "argv": sys.argv[1:]}
    job = FleetJob(config, concepts, inputs, args.output, max_frames=args.max_frames, overlay=not args.no_overlay,
                   workers=args.workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                   ray_address=args.ray_address, progress=not args.no_progress, request=request,
                   stop_signals=args.stop_signals)
    summary = run_fleet(job)
    print(summary.describe())
    if summary.interrupted:
        stop = Interrupted(args.stop_signals.received or signal.SIGINT)
        print(f"{stop}: finished inputs are kept; run the same command again to do the rest", file=sys.stderr)
        return stop.exit_code
    return EXIT_PARTIAL if summary.names("failed") else EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from .backends.onnx_export import export_onnx
    from .factory import load_model

    config = _config_from(args)
    loaded = _loading(load_model, config.updated({"model.device": "cpu", "model.dtype": "float32"}))
    if not loaded.random_weights:  # the loader has already warned about random weights
        print(loaded.describe(), file=sys.stderr)
    manifest = export_onnx(loaded, args.output, components=args.components, verify=not args.no_verify)
    issues = {name: entry["tensorrt_issues"] for name, entry in manifest["components"].items() if entry["tensorrt_issues"]}
    for name, found in issues.items():
        print(f"warning: {name}: {len(found)} operators TensorRT {manifest['tensorrt_checked_against']} "
              f"documents as unsupported: {'; '.join(found[:5])}", file=sys.stderr)
    print(f"exported {len(manifest['components'])} components to {args.output}")
    return EXIT_OK


def _build_engines(args: argparse.Namespace) -> int:
    from .backends.manifest import read_manifest
    from .backends.trt_runtime import build_engines
    from .model.loading import resolve_device

    manifest = read_manifest(args.engines_dir)
    config = load_config(args.config)
    built = build_engines(args.engines_dir, manifest, config, args.precision, resolve_device(args.device), args.force)
    print(f"built {len(built)} engine(s) in {args.engines_dir}/tensorrt; the others were valid")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from .bench import describe, holding_tracks, median_stage_ms, synthetic_frames
    from .core.pipeline import Sam3Pipeline
    from .factory import load_pipeline

    config = _config_from(args)
    loaded = _loading(load_pipeline, config)
    print(loaded.description)
    images = synthetic_frames(args.frames, *args.image)
    for tracks in args.tracks:
        print(f"measuring with {tracks} live track(s): {args.warmup} warm-up + {args.frames} timed frames ...",
              file=sys.stderr, flush=True)
        pipeline = Sam3Pipeline(loaded.pipeline.components, loaded.pipeline.tokenizer, holding_tracks(config, tracks))
        print(describe(tracks, median_stage_ms(pipeline, images, args.warmup, tracks)), flush=True)
    return EXIT_OK


DEMO_CLIP = "input.mp4"
DEMO_RESULTS = "results"


def clear_demo_output(output: Path) -> None:
    """Remove what an earlier demo wrote to ``output`` (its clip and the runner's files), nothing else.

    A folder holding anything else is refused: the demo never deletes files it did not write.
    """
    from .runner import OUTPUT_FILES

    if not output.exists():
        return
    if not output.is_dir():
        raise FileExistsError(f"--output {output} is a file; give a folder (new, or one an earlier demo wrote)")
    results = output / DEMO_RESULTS
    ours = {output / DEMO_CLIP, results} | {results / name for name in OUTPUT_FILES}
    bag = results / OUTPUT_FILES[0]
    if bag.is_dir():
        ours |= {bag / "metadata.yaml"} | set(bag.glob("*.mcap"))
    others = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p not in ours)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise FileExistsError(f"--output {output} holds files the demo did not write ({shown}); nothing was "
                              f"deleted: choose a new folder, e.g. --output {output / 'demo'}")
    for path in sorted(ours, key=lambda p: len(p.parts), reverse=True):  # files before their folders
        if path.is_file():
            path.unlink()
        elif path.is_dir():
            path.rmdir()


def _demo(args: argparse.Namespace) -> int:
    from .demo_clip import write_demo_clip
    from .factory import load_pipeline
    from .runner import run_offline

    config = _config_from(args, default_tiny=True)
    if config.model.tiny:
        # Random weights score every query low: lower the bars so the demo shows tracks at all.
        config = config.updated({"detection.score_threshold": 0.2, "detection.new_track_threshold": 0.2})
    output = Path(args.output)
    clear_demo_output(output)
    clip = write_demo_clip(output / DEMO_CLIP, frames=args.frames)
    loaded = _loading(load_pipeline, config)
    _announce(loaded)
    concepts = parse_concepts(["red ball", "blue box"], [])
    with args.stop_signals.deferred():
        summary = run_offline(loaded.pipeline, concepts, clip, output / DEMO_RESULTS,
                              model_description=loaded.description, on_frame=lambda _: args.stop_signals.check())
    print(summary.describe())
    if loaded.random_weights:
        print("note: the tiny model has random weights, so its masks are meaningless; "
              "pass --checkpoint DIR with the real SAM 3 weights for real results.")
    return EXIT_PARTIAL if summary.error else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
