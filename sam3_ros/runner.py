"""The offline runner: a video, image folder or rosbag2 in; a rosbag2 (MCAP), results.json and an
annotated video out. Useful without ROS for dataset labelling and replaying robot recordings.

Outputs are written frame by frame and closed on any error, so whatever was processed before a
bad frame or a broken stream is kept.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from . import __version__
from .core.pipeline import Sam3Pipeline
from .core.prompts import Concept, fit_to_image
from .io.overlay import draw_overlay
from .io.sources import Frame, RosbagSource, SourceError, open_source
from .io.writers import JsonResultsWriter, McapResultsWriter, OverlayVideoWriter

log = logging.getLogger(__name__)

RESULTS_BAG = "results.mcap"
RESULTS_JSON = "results.json"
OVERLAY_VIDEO = "overlay.mp4"
OUTPUT_FILES = (RESULTS_BAG, RESULTS_JSON, OVERLAY_VIDEO)


@dataclass
class RunSummary:
    output_dir: Path
    total: int | None = None  # frames expected: the source's estimate, capped by max_frames
    frames: int = 0
    instances: int = 0
    track_ids: set[int] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        status = f"stopped early: {self.error}" if self.error else "done"
        return (f"{status}; {self.frames} frames at {self.fps:.1f} fps, {self.instances} instances, "
                f"{len(self.track_ids)} tracks; outputs in {self.output_dir}")


def run_offline(pipeline: Sam3Pipeline, concepts: list[Concept], input_path: str | Path, output_dir: str | Path,
                image_topic: str | None = None, max_frames: int | None = None, overlay: bool = True,
                progress: bool = True, model_description: str = "", start_ns: int | None = None,
                on_frame: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Process every frame of ``input_path`` (or the first ``max_frames``) into ``output_dir``.

    Raises SourceError when the input cannot be opened at all (nothing is written then). A
    failure while reading later stops the run, keeps all outputs, and is reported in the summary.
    ``on_frame`` is called after each frame is written; an exception it raises ends the run like
    any other, with the outputs closed and results.json marked incomplete.
    """
    output_dir = Path(output_dir)
    summary = RunSummary(output_dir)
    source = open_source(input_path, image_topic=image_topic, on_warning=_collect(summary))
    _check_start(source, start_ns)
    pipeline.set_concepts(concepts)
    output_dir.mkdir(parents=True, exist_ok=True)
    _refuse_to_overwrite(output_dir)
    total = source.frame_count()
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    summary.total = total

    start = time.perf_counter()
    with McapResultsWriter(output_dir / RESULTS_BAG) as bag, \
            JsonResultsWriter(output_dir / RESULTS_JSON, source=str(input_path),
                              prompts=[describe_concept(c) for c in concepts], model=model_description,
                              settings=pipeline.config.flat(), sam3_ros_version=__version__,
                              max_frames=max_frames) as js, \
            OverlayVideoWriter(output_dir / OVERLAY_VIDEO, fps=source.fps, on_warning=_collect(summary)) as video:
        bar = tqdm(total=total, unit="frame", disable=not progress, desc="sam3")
        try:
            for frame in _limit(source, max_frames):
                if start_ns:
                    frame = dataclasses.replace(frame, stamp_ns=frame.stamp_ns + start_ns)
                result = pipeline.step(frame.rgb, stamp_ns=frame.stamp_ns)
                bag.frame_id = frame.frame_id
                bag.write(result)
                js.write(result, **_about(frame))
                if overlay:
                    video.write(draw_overlay(frame.rgb, result), frame.stamp_ns)
                summary.frames += 1
                summary.instances += len(result.instances)
                summary.track_ids.update(i.track_id for i in result.instances)
                summary.warnings += result.warnings
                bar.update()
                if on_frame is not None:
                    on_frame(summary)
                bar.set_postfix(tracks=result.live_tracks, ms=f"{result.timings_ms['total']:.0f}")
        except (SourceError, OSError, ValueError) as err:
            summary.error = f"{type(err).__name__}: {err}"
            log.error("stopping after %d frames: %s", summary.frames, summary.error)
            js.close(err)  # marks results.json incomplete, with the reason
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def check_run(input_path: str | Path, output_dir: str | Path, concepts: list[Concept],
              image_topic: str | None = None, start_ns: int | None = None,
              on_warning: Callable[[str], None] | None = None) -> list[Concept]:
    """Everything a run needs that can be checked before the model loads; the concepts to run.

    Opens the input and reads its first frame (SourceError when it cannot), refuses an output
    folder that holds results or cannot be written (FileExistsError, ValueError), and cuts exemplar
    boxes to the first frame (a box reaching outside is cut, with a note to ``on_warning``; one
    wholly outside raises PromptError). Nothing is written.
    """
    output_dir = Path(output_dir)
    source = open_source(input_path, image_topic=image_topic, on_warning=lambda _: None)
    _check_start(source, start_ns)
    first = next(iter(source), None)
    if first is None:
        raise SourceError(f"{input_path} holds no readable frame")
    check_output_dir(output_dir)
    fitted = []
    for concept in concepts:
        concept, notes = fit_to_image(concept, first.rgb.shape[:2])
        for note in notes:
            (on_warning or log.warning)(note)
        fitted.append(concept)
    return fitted


def _check_start(source, start_ns: int | None) -> None:
    if start_ns is not None and isinstance(source, RosbagSource):
        raise ValueError("--start-time is for videos and image folders: a rosbag2 keeps the stamps it was recorded with")


def check_output_dir(output_dir: Path) -> None:
    """Refuse an output folder that is a file, already holds results, or cannot be created or written."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"--output {output_dir} is a file; give a folder")
    if output_dir.is_dir():
        _refuse_to_overwrite(output_dir)
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output {output_dir}: cannot write in {existing}")


def _about(frame: Frame) -> dict:
    """Where a frame came from, for results.json: its position in the input, and its file."""
    return {"input_index": frame.index, **({"input_file": frame.name} if frame.name else {})}


def _limit(frames: Iterable[Frame], max_frames: int | None) -> Iterable[Frame]:
    for count, frame in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        yield frame


def _collect(summary: RunSummary):
    def warn(message: str) -> None:
        log.warning("%s", message)
        summary.warnings.append(message)
    return warn


def _refuse_to_overwrite(output_dir: Path) -> None:
    existing = [name for name in OUTPUT_FILES if (output_dir / name).exists()]
    if existing:
        raise FileExistsError(f"{output_dir} already holds {', '.join(existing)}; choose a new --output")


def describe_concept(concept: Concept) -> dict:
    """A concept as results.json's header lists it."""
    return {
        "id": concept.id,
        "text": concept.text,
        "exemplars": [[*b.as_tuple(), b.positive] for b in concept.exemplars],
        "score_threshold": concept.score_threshold,
    }
