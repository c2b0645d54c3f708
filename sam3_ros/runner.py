"""The offline runner: a video, image folder or rosbag2 in; a rosbag2 (MCAP), results.json and an
annotated video out. Useful without ROS for dataset labelling and replaying robot recordings.

Outputs are written frame by frame and closed on any error, so whatever was processed before a
bad frame or a broken stream is kept.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from tqdm import tqdm

from . import __version__
from .core.pipeline import CameraFrame, Sam3Pipeline
from .core.prompts import Concept, fit_to_image
from .core.results import FrameResult
from .io.overlay import draw_overlay
from .io.sources import Frame, RosbagSource, SourceError, open_source
from .io.writers import JsonResultsWriter, McapResultsWriter, OverlayVideoWriter

log = logging.getLogger(__name__)

RESULTS_BAG = "results.mcap"
RESULTS_JSON = "results.json"
OVERLAY_VIDEO = "overlay.mp4"


def overlay_name(camera: str) -> str:
    """The overlay video of a camera: overlay.mp4 for the single camera "", else overlay_NAME.mp4."""
    return f"overlay_{camera}.mp4" if camera else OVERLAY_VIDEO


def output_files(cameras: Sequence[str] = ("",)) -> tuple[str, ...]:
    """The files a run of ``cameras`` writes in its output folder."""
    return (RESULTS_BAG, RESULTS_JSON, *map(overlay_name, cameras))


OUTPUT_FILES = output_files()


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
    steps: int = 0  # model steps: one per frame, or one per batch of several cameras' frames

    def add(self, result: FrameResult) -> None:
        """Count one written frame."""
        self.frames += 1
        self.instances += len(result.instances)
        self.track_ids.update(i.track_id for i in result.instances)
        self.warnings += result.warnings

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        status = f"stopped early: {self.error}" if self.error else "done"
        batched = f" in {self.steps} batched steps" if self.steps < self.frames else ""
        return (f"{status}; {self.frames} frames{batched} at {self.fps:.1f} fps, {self.instances} instances, "
                f"{len(self.track_ids)} tracks; outputs in {self.output_dir}")


def run_offline(pipeline: Sam3Pipeline, concepts: list[Concept], input_path: str | Path, output_dir: str | Path,
                image_topic: str | None = None, max_frames: int | None = None, overlay: bool = True,
                progress: bool = True, model_description: str = "", start_ns: int | None = None,
                on_frame: Callable[[RunSummary], None] | None = None,
                cameras: Mapping[str, str] | None = None) -> RunSummary:
    """Process every frame of ``input_path`` (or the first ``max_frames``) into ``output_dir``.

    ``cameras`` (camera name -> image topic of a recording) runs several cameras through one model:
    the frames of all cameras, in recording order, go in batched steps (``in_steps``), each camera's
    results on its own topics and in its own overlay video (``overlay_NAME.mp4``); ``max_frames``
    counts the frames of all cameras. Exemplar boxes are drawn on the first camera's images.

    Raises SourceError when the input cannot be opened at all (nothing is written then). A
    failure while reading later stops the run, keeps all outputs, and is reported in the summary.
    ``on_frame`` is called after each step (one frame, or one frame per camera) is written; an
    exception it raises ends the run like any other, with the outputs closed and results.json
    marked incomplete.
    """
    output_dir = Path(output_dir)
    summary = RunSummary(output_dir)
    source = open_source(input_path, image_topic=image_topic, on_warning=_collect(summary), cameras=cameras)
    _check_start(source, start_ns)
    names = list(cameras or [""])
    pipeline.set_concepts([_drawn_on(names[0], c) for c in concepts])
    output_dir.mkdir(parents=True, exist_ok=True)
    _refuse_to_overwrite(output_dir, names)
    total = source.frame_count()
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    summary.total = total

    start = time.perf_counter()
    with contextlib.ExitStack() as files:
        bag = files.enter_context(McapResultsWriter(output_dir / RESULTS_BAG, cameras=names))
        js = files.enter_context(JsonResultsWriter(
            output_dir / RESULTS_JSON, source=str(input_path), prompts=[describe_concept(c) for c in concepts],
            model=model_description, settings=pipeline.config.flat(), sam3_ros_version=__version__,
            max_frames=max_frames, **({"cameras": dict(cameras)} if cameras else {})))
        videos = {camera: files.enter_context(OverlayVideoWriter(output_dir / overlay_name(camera), fps=source.fps,
                                                                 on_warning=_collect(summary)))
                  for camera in names}
        bar = tqdm(total=total, unit="frame", disable=not progress, desc="sam3")
        try:
            for step in in_steps(_shifted(_limit(source, max_frames), start_ns), len(names)):
                for frame, result in zip(step, _results(pipeline, step)):
                    bag.frame_id = frame.frame_id
                    bag.write(result)
                    js.write(result, **_about(frame))
                    if overlay:
                        videos[frame.camera].write(draw_overlay(frame.rgb, result), frame.stamp_ns)
                    summary.add(result)
                summary.steps += 1
                bar.update(len(step))
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


def in_steps(frames: Iterable[Frame], cameras: int = 1) -> Iterator[list[Frame]]:
    """Frames of ``cameras`` cameras in batched steps: a step takes frames in the given (recording)
    order until it holds every camera, or until a camera comes again, which starts the next step.
    So each frame is in exactly one step, each step holds at most one frame per camera, and each
    camera's frames stay in order: offline, where nothing needs dropping, the steps a node makes
    with the newest frame of each camera at every step. A stream that breaks still has the frames
    read before it stepped, then its error raised."""
    step: list[Frame] = []
    try:
        for frame in frames:
            if any(f.camera == frame.camera for f in step):
                yield step
                step = []
            step.append(frame)
            if len(step) == cameras:
                yield step
                step = []
    except Exception:
        if step:
            yield step
        raise
    if step:
        yield step


def _results(pipeline: Sam3Pipeline, step: list[Frame]) -> list[FrameResult]:
    """The step's results, in its frames' order: ``step`` for the single camera "", else one
    ``step_cameras`` over all of them."""
    if [frame.camera for frame in step] == [""]:
        return [pipeline.step(step[0].rgb, stamp_ns=step[0].stamp_ns)]
    results = pipeline.step_cameras({frame.camera: CameraFrame(frame.rgb, frame.stamp_ns) for frame in step})
    return [results[frame.camera] for frame in step]


def _drawn_on(camera: str, concept: Concept) -> Concept:
    """A concept whose exemplar boxes are drawn on ``camera``'s images, unless it names its camera."""
    return dataclasses.replace(concept, camera=camera) if concept.exemplars and not concept.camera else concept


def check_run(input_path: str | Path, output_dir: str | Path, concepts: list[Concept],
              image_topic: str | None = None, start_ns: int | None = None,
              on_warning: Callable[[str], None] | None = None,
              cameras: Mapping[str, str] | None = None) -> list[Concept]:
    """Everything a run needs that can be checked before the model loads; the concepts to run.

    Opens the input and reads its first frame (SourceError when it cannot, or when a camera's topic
    holds no message), refuses an output folder that holds results or cannot be written
    (FileExistsError, ValueError), and cuts exemplar boxes to the first frame (of the first camera;
    a box reaching outside is cut, with a note to ``on_warning``; one wholly outside raises
    PromptError). Nothing is written.
    """
    output_dir = Path(output_dir)
    source = open_source(input_path, image_topic=image_topic, on_warning=lambda _: None, cameras=cameras)
    _check_start(source, start_ns)
    names = list(cameras or [""])
    silent = [cameras[c] for c in names if cameras and not source.camera_frame_count(c)]
    if silent:
        raise SourceError(f"{input_path} holds no message on {', '.join(silent)}")
    first = next((frame for frame in source if frame.camera == names[0]), None)
    if first is None:
        raise SourceError(f"{input_path} holds no readable frame" + (f" on {cameras[names[0]]}" if cameras else ""))
    check_output_dir(output_dir, names)
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


def check_output_dir(output_dir: Path, cameras: Sequence[str] = ("",)) -> None:
    """Refuse an output folder that is a file, already holds results (of a run of ``cameras``), or
    cannot be created or written."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"--output {output_dir} is a file; give a folder")
    if output_dir.is_dir():
        _refuse_to_overwrite(output_dir, cameras)
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output {output_dir}: cannot write in {existing}")


def _about(frame: Frame) -> dict:
    """Where a frame came from, for results.json: its position in the input, and its file."""
    return {"input_index": frame.index, **({"input_file": frame.name} if frame.name else {})}


def _shifted(frames: Iterable[Frame], start_ns: int | None) -> Iterable[Frame]:
    """Frames stamped from ``start_ns`` (a video's or image folder's first frame time) on."""
    for frame in frames:
        yield dataclasses.replace(frame, stamp_ns=frame.stamp_ns + start_ns) if start_ns else frame


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


def _refuse_to_overwrite(output_dir: Path, cameras: Sequence[str] = ("",)) -> None:
    existing = [name for name in output_files(cameras) if (output_dir / name).exists()]
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
