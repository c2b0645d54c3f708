"""TensorRT engine cache: keys, optimisation-profile ranges, and refusal of stale or corrupt engines.

An engine is only valid for the GPU model it was built on, the TensorRT version, the exact ONNX
graph (and so the weights), the precision and the shape ranges. Each engine file has a sidecar
JSON with its key and a checksum; an engine whose sidecar is missing, disagrees with the
current key, or whose bytes do not match the checksum is never deserialised.
No TensorRT import here: this logic is tested without a GPU.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.prompts import MAX_EXEMPLARS

ENGINE_SUBDIR = "tensorrt"
PRECISIONS = ("fp16", "bf16", "fp32")

MAX_CONCEPTS = 16


def dim_ranges(max_tracks: int, max_cond_frames: int, num_maskmem: int, max_object_pointers: int
               ) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of every symbolic dimension of the exported graphs, from the configuration."""
    memories = max_cond_frames + num_maskmem - 1
    pointers = max_cond_frames + max_object_pointers - 1
    return {
        "concepts": (1, 2, MAX_CONCEPTS),
        "prompt_tokens": (32, 32, 32 + MAX_EXEMPLARS + 1),  # text tokens, exemplar boxes, CLS token
        "boxes": (1, 2, MAX_EXEMPLARS),
        "tracks": (1, min(8, max_tracks), max_tracks),
        "memories": (1, memories, memories),
        "pointer_tokens": (1, pointers, pointers),
    }


class EngineCacheError(RuntimeError):
    """An engine that must not be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class EngineKey:
    component: str
    gpu: str                 # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "9.0"
    tensorrt: str
    model_fingerprint: str
    onnx_sha256: str
    precision: str
    profile: tuple           # ((input, min shape, opt shape, max shape), ...)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=list).encode()).hexdigest()[:16]

    def engine_path(self, engines_dir: str | Path) -> Path:
        return Path(engines_dir) / ENGINE_SUBDIR / f"{self.component}-{self.precision}-{self.digest()}.engine"


def shape_profile(inputs: list[dict], ranges: dict[str, tuple[int, int, int]]) -> tuple:
    """Optimisation profile of a graph's inputs from the manifest's symbolic shapes."""
    profile = []
    for spec in inputs:
        shapes = []
        for which in range(3):
            shape = []
            for dim in spec["shape"]:
                if isinstance(dim, str):
                    if dim not in ranges:
                        raise EngineCacheError(f"no shape range for dimension {dim!r} of input {spec['name']}")
                    shape.append(ranges[dim][which])
                else:
                    shape.append(int(dim))
            shapes.append(tuple(shape))
        profile.append((spec["name"], *shapes))
    return tuple(profile)


def write_engine(key: EngineKey, engines_dir: str | Path, data: bytes) -> Path:
    path = key.engine_path(engines_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    _sidecar(path).write_text(json.dumps({"key": asdict(key), "sha256": hashlib.sha256(data).hexdigest(),
                                          "bytes": len(data)}, indent=2, default=list))
    return path


def checked_engine_bytes(key: EngineKey, engines_dir: str | Path) -> bytes:
    """The engine's bytes, after checking its sidecar and checksum against ``key``."""
    path = key.engine_path(engines_dir)
    rebuild = f"run `sam3-ros build-engines --engines-dir {engines_dir}`"
    if not path.is_file():
        stale = sorted(p.name for p in path.parent.glob(f"{key.component}-*.engine")) if path.parent.is_dir() else []
        why = f"only engines for other GPUs, versions, weights or shapes exist ({', '.join(stale)})" if stale else "none"
        raise EngineCacheError(f"no {key.precision} engine for {key.component} on this setup ({why}): {rebuild}")
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise EngineCacheError(f"{path} has no {sidecar.name}: refusing an engine of unknown origin; {rebuild}")
    meta = json.loads(sidecar.read_text())
    recorded = meta.get("key", {})
    expected = json.loads(json.dumps(asdict(key), default=list))
    differences = [f"{field}: engine {recorded.get(field)!r}, now {value!r}"
                   for field, value in expected.items() if recorded.get(field) != value]
    if differences:
        raise EngineCacheError(f"{path} is stale ({'; '.join(differences)}): {rebuild}")
    data = path.read_bytes()
    if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise EngineCacheError(f"{path} is corrupt (size or checksum differs from when it was built): {rebuild}")
    return data


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")
