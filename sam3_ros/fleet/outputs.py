"""Is an input's output folder complete? Checked against the files, never assumed.

After a successful run the fleet writes ``fleet.json`` (the settings and the counts) last. An
output folder is complete when that marker exists, its settings equal this job's, and the files
agree with it: ``results.json`` is whole and says complete with that many frames, the bag holds
one message per frame on each topic, and the overlay (when asked for) has that many frames.
Anything less is partial, and is cleared and redone.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import PipelineConfig
from ..core.prompts import Concept
from ..runner import OUTPUT_FILES, OVERLAY_VIDEO, RESULTS_BAG, RESULTS_JSON, describe_concept
from .inputs import FleetInput

MARKER = "fleet.json"
# Settings that do not change results, so a re-run with another value still reuses outputs.
_NEUTRAL_SETTINGS = ("model.device",)


@dataclass
class OutputState:
    complete: bool
    reason: str = ""  # why not complete
    counts: dict[str, Any] = field(default_factory=dict)  # frames, instances, tracks, seconds when complete
    started: bool = False  # some output exists (to be cleared before a redo)


def job_settings(config: PipelineConfig, concepts: list[Concept], max_frames: int | None, overlay: bool) -> dict:
    """What the outputs of every input of a job depend on, besides the input itself."""
    flat = {k: v for k, v in config.flat().items() if k not in _NEUTRAL_SETTINGS}
    return {"prompts": [describe_concept(c) for c in concepts], "config": flat,
            "max_frames": max_frames, "overlay": overlay}


def input_settings(job: dict, item: FleetInput) -> dict:
    return {"input": item.path, "image_topic": item.image_topic, **job}


def check_outputs(output_dir: str | Path, settings: dict) -> OutputState:
    output_dir = Path(output_dir)
    started = any((output_dir / name).exists() for name in (*OUTPUT_FILES, MARKER))
    if not started:
        return OutputState(False, "not started")
    try:
        marker = json.loads((output_dir / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return OutputState(False, "unfinished (no fleet.json)", started=True)
    except (OSError, ValueError) as err:
        return OutputState(False, f"unreadable fleet.json: {err}", started=True)
    if marker.get("settings") != _roundtrip(settings):
        return OutputState(False, "made with other settings", started=True)
    counts = marker.get("counts", {})
    problem = _files_problem(output_dir, counts.get("frames"), settings["overlay"])
    if problem:
        return OutputState(False, problem, started=True)
    return OutputState(True, counts=counts, started=True)


def mark_complete(output_dir: str | Path, settings: dict, counts: dict[str, Any]) -> None:
    """Write fleet.json (atomically, after everything else)."""
    write_json_atomic(Path(output_dir) / MARKER, {"settings": settings, "counts": counts})


def clear_outputs(output_dir: str | Path) -> None:
    """Remove what a run writes (the marker first), nothing else."""
    output_dir = Path(output_dir)
    for name in (MARKER, *OUTPUT_FILES):
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers never see half a file: write a neighbour, then rename it over."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _files_problem(output_dir: Path, frames: Any, overlay: bool) -> str:
    if not isinstance(frames, int):
        return "fleet.json has no frame count"
    try:
        results = json.loads((output_dir / RESULTS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{RESULTS_JSON} is missing or cut short ({type(err).__name__})"
    if results.get("complete") is not True or len(results.get("frames", ())) != frames:
        return f"{RESULTS_JSON} is incomplete"
    messages = _bag_message_counts(output_dir / RESULTS_BAG)
    if messages is None or set(messages.values()) != {frames}:
        return f"{RESULTS_BAG} is missing or holds {messages} messages, not {frames} per topic"
    if overlay and frames and _video_frames(output_dir / OVERLAY_VIDEO) != frames:
        return f"{OVERLAY_VIDEO} is missing or does not hold {frames} frames"
    return ""


def _bag_message_counts(bag: Path) -> dict[str, int] | None:
    from rosbags.highlevel import AnyReader

    from ..io.ros_types import typestore

    try:
        with AnyReader([bag], default_typestore=typestore()) as reader:
            counts: dict[str, int] = {}
            for connection in reader.connections:
                counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
            return counts
    except Exception:  # rosbags raises several types for missing or broken bags
        return None


def _video_frames(path: Path) -> int:
    import cv2

    if not path.is_file():
        return -1
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
    finally:
        capture.release()


def _roundtrip(value: Any) -> Any:
    """As the value reads back from JSON (tuples become lists), to compare with a stored one."""
    return json.loads(json.dumps(value))
