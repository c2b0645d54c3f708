"""The recordings of a fleet job, from a directory or a manifest, each with its output folder name.

A directory is scanned one level deep: video files, image folders, rosbag2 recordings (folders
with metadata.yaml or one .mcap/.db3 file) and bare .mcap/.db3/.bag files; anything else is left
out. A manifest is a text file with one recording per line, ``PATH [IMAGE_TOPIC]`` (shell quoting
for paths with spaces, ``#`` comments, paths relative to the manifest's folder).

Whether a recording can be read is not checked here: a missing or broken one fails on its own
when its turn comes (on a cluster, the driver may not even see the files).
"""
from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..io.sources import BAG_SUFFIXES, IMAGE_SUFFIXES, natural_key

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class InputListError(ValueError):
    """The list of inputs cannot be made; the message says why (and which lines)."""


@dataclass(frozen=True)
class FleetInput:
    name: str  # the output folder's name, unique in the job
    path: str
    image_topic: str | None = None

    def describe(self) -> str:
        return f"{self.path} ({self.image_topic})" if self.image_topic else self.path


def discover_inputs(path: str | Path, image_topic: str | None = None,
                    exclude: str | Path | None = None) -> list[FleetInput]:
    """The inputs named by a directory (scanned) or a manifest file.

    ``image_topic`` applies to every recording whose manifest line names none. ``exclude`` (the
    job's output folder) is never taken for an input.
    """
    path = Path(path)
    if not path.exists():
        raise InputListError(f"--inputs {path} does not exist")
    if path.is_dir():
        found = [(p, image_topic) for p in _scan(path, exclude)]
        if not found:
            raise InputListError(
                f"{path} holds no recordings: videos ({', '.join(VIDEO_SUFFIXES)}), image folders, rosbag2 "
                f"recordings or {', '.join(BAG_SUFFIXES)} files" + _hint(path))
    elif path.suffix.lower() in VIDEO_SUFFIXES + BAG_SUFFIXES:
        raise InputListError(f"{path} is one recording, not a folder or manifest: use --input {path}")
    else:
        found = _read_manifest(path, image_topic)
    return [FleetInput(name, str(p), topic) for name, (p, topic) in zip(_output_names(found), found)]


def _scan(directory: Path, exclude: str | Path | None) -> list[Path]:
    skip = Path(exclude).resolve() if exclude else None
    children = sorted(directory.iterdir(), key=lambda p: natural_key(p.name))
    return [p for p in children if not p.name.startswith(".") and p.resolve() != skip and _is_recording(p)]


def _is_recording(path: Path) -> bool:
    suffix = path.suffix.lower()
    if path.is_file():
        return suffix in VIDEO_SUFFIXES or suffix in BAG_SUFFIXES
    if not path.is_dir():
        return False
    names = [p.name.lower() for p in path.iterdir()]
    return "metadata.yaml" in names or any(n.endswith((".mcap", ".db3", *IMAGE_SUFFIXES)) for n in names)


def _hint(directory: Path) -> str:
    names = [p.name.lower() for p in directory.iterdir()]
    if "metadata.yaml" in names or any(n.endswith(IMAGE_SUFFIXES) for n in names):
        return f"; {directory} itself looks like one recording: use --input {directory}"
    return ""


def _read_manifest(manifest: Path, image_topic: str | None) -> list[tuple[Path, str | None]]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputListError(f"cannot read the manifest {manifest}: {err}") from err
    found: list[tuple[Path, str | None]] = []
    errors: list[str] = []
    first_line: dict[tuple[Path, str | None], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            fields = shlex.split(line, comments=True)
        except ValueError as err:  # unbalanced quotes
            errors.append(f"line {number}: {err}")
            continue
        if not fields:
            continue
        if len(fields) > 2:
            errors.append(f"line {number}: expected PATH [IMAGE_TOPIC], got {len(fields)} fields")
            continue
        if len(fields) == 2 and not fields[1].startswith("/"):
            errors.append(f"line {number}: image topic {fields[1]!r} must start with '/'")
            continue
        entry = ((manifest.parent / fields[0]).resolve(), fields[1] if len(fields) == 2 else image_topic)
        if entry in first_line:
            errors.append(f"line {number}: {' '.join(fields)} is already listed on line {first_line[entry]}")
            continue
        first_line[entry] = number
        found.append(entry)
    if errors:
        raise InputListError(f"manifest {manifest} has {len(errors)} bad line(s):\n  " + "\n  ".join(errors))
    if not found:
        raise InputListError(f"manifest {manifest} lists no recordings (one PATH [IMAGE_TOPIC] per line)")
    return found


def _output_names(found: list[tuple[Path, str | None]]) -> list[str]:
    """Each recording's name without its suffix, with its topic when the same recording is listed
    with several topics ("drive__front_image"); where names still collide, with its folders from the
    common parent ("site_a/cam.mp4" -> "site_a__cam"). Only depends on the list."""
    per_path = Counter(path for path, _ in found)
    stems = [_stem(p) + (f"__{topic.strip('/')}" if per_path[p] > 1 and topic else "") for p, topic in found]
    names = [_safe(stem) for stem in stems]
    counts = Counter(names)
    if len(counts) < len(names):
        root = Path(os.path.commonpath([str(p.resolve().parent) for p, _ in found]))
        names = [_safe("__".join((*p.resolve().parent.relative_to(root).parts, stem))) if counts[name] > 1 else name
                 for name, stem, (p, _) in zip(names, stems, found)]
    seen: Counter = Counter()
    unique = []
    for name in names:  # what _safe made equal ("a b" and "a_b") gets a number
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _stem(path: Path) -> str:
    known = path.suffix.lower() in BAG_SUFFIXES + VIDEO_SUFFIXES
    return path.stem if known or path.is_file() else path.name


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_") or "input"
