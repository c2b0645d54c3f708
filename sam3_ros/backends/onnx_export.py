"""Export every SAM 3 component to ONNX, verify each against PyTorch, and write a manifest.

Graphs use explicit (eager) attention and real-valued RoPE, take and return plain tensors, and
keep their batch-like dimensions dynamic (concepts, prompt tokens, boxes, tracks, memories,
pointer tokens). Each graph is checked on fresh random inputs of other sizes than the traced
ones with onnxruntime, and against TensorRT's documented operator support.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from .. import __version__
from ..model.loading import LoadedSam3
from .graphs import GRAPHS, GraphSpec
from .manifest import MANIFEST, TOKENIZER_DIR
from .torch_backend import geometry_of
from .trt_support import TENSORRT_VERSION, check_model, drop_antialias_on_upsampling

OPSET = 18
EXTERNAL_DATA_BYTES = 1 << 30  # larger graphs keep their weights in a side file (protobuf's 2 GB limit)
# Other sizes than the traced ones, so the check proves the dynamic axes work.
VERIFY_DIMS = {"concepts": 3, "prompt_tokens": 47, "boxes": 3, "tracks": 5, "memories": 7, "pointer_tokens": 9}
ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 16: "bfloat16"}


class ExportError(RuntimeError):
    pass


def export_onnx(loaded: LoadedSam3, output_dir: str | Path, components: list[str] | None = None,
                verify: bool = True, log: Callable[[str], None] = print) -> dict:
    """Write ``<component>.onnx`` files, the tokenizer and ``manifest.json`` into ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    specs = [s for s in GRAPHS if components is None or s.name in components]
    unknown = set(components or ()) - {s.name for s in GRAPHS}
    if unknown:
        raise ExportError(f"unknown components {sorted(unknown)}; known: {[s.name for s in GRAPHS]}")
    attention = loaded.model.config._attn_implementation
    with _quiet_transformers():  # one "could not check the sub-model" warning per sub-config and switch
        loaded.model.set_attn_implementation("eager")  # explicit attention: no fused SDPA in the graphs
    try:
        return _export_all(loaded, output_dir, specs, verify, log)
    finally:
        with _quiet_transformers():
            loaded.model.set_attn_implementation(attention)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' logging at ERROR inside the block (its warnings there say nothing to act on)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _export_all(loaded: LoadedSam3, output_dir: Path, specs: list[GraphSpec], verify: bool,
                log: Callable[[str], None]) -> dict:
    loaded.tokenizer.save_pretrained(output_dir / TOKENIZER_DIR)
    geometry = geometry_of(loaded)
    manifest = {
        "sam3_ros": __version__,
        "model": {"fingerprint": loaded.fingerprint, "source": loaded.source, "random_weights": loaded.random_weights},
        "geometry": vars(geometry),
        "opset": OPSET,
        "dtype": "float32",
        "tensorrt_checked_against": TENSORRT_VERSION,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "transformers": _version("transformers")},
        "tokenizer": TOKENIZER_DIR,
        "components": {},
    }
    for number, spec in enumerate(specs, 1):
        log(f"{spec.name} ({number}/{len(specs)}): exporting{' and verifying' if verify else ''} ...")
        start = time.perf_counter()
        manifest["components"][spec.name] = _export_one(spec, loaded, output_dir, verify)
        entry = manifest["components"][spec.name]
        summary = ", ".join(f"{k} cos {v['cosine']:.6f} rel {v['max_rel_error']:.1e}"
                            for k, v in entry.get("verification", {}).items())
        log(f"{spec.name}: {entry['file']} in {time.perf_counter() - start:.1f} s; {summary or 'not verified'}; "
            f"TensorRT issues: {len(entry['tensorrt_issues'])}")
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _export_one(spec: GraphSpec, loaded: LoadedSam3, output_dir: Path, verify: bool) -> dict:
    geometry = geometry_of(loaded)
    module = spec.module(loaded).eval()
    inputs = spec.example(geometry, torch.float32)
    path = output_dir / f"{spec.name}.onnx"
    dims: dict[str, torch.export.Dim] = {}
    dynamic_shapes = tuple(
        {axis: dims.setdefault(name, torch.export.Dim(name, min=1, max=4096)) for axis, name in spec.dynamic[k].items()}
        if k in spec.dynamic else None
        for k in inputs
    )
    try:
        with torch.no_grad():
            torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=list(spec.outputs), dynamic_shapes=dynamic_shapes, dynamo=True,
                              opset_version=OPSET, verbose=False)
    except Exception as err:
        raise ExportError(f"exporting {spec.name} failed: {type(err).__name__}: {err}") from err
    model = onnx.load(str(path))
    drop_antialias_on_upsampling(model)
    _save(model, path)
    entry = {
        "file": path.name,
        "sha256": _sha256(path),
        "inputs": _describe(model.graph.input),
        "outputs": _describe(model.graph.output),
        "dynamic_axes": {name: {str(axis): dim for axis, dim in axes.items()} for name, axes in spec.dynamic.items()},
        "tensorrt_issues": [str(issue) for issue in check_model(model)],
    }
    if verify:
        entry["verification"] = verify_graph(spec, module, path, geometry)
    return entry


def verify_graph(spec: GraphSpec, module: torch.nn.Module, path: Path, geometry) -> dict:
    """Cosine similarity and max relative error per output, onnxruntime vs PyTorch, on fresh inputs."""
    import onnxruntime as ort

    inputs = spec.example(geometry, torch.float32, seed=1234, **VERIFY_DIMS)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    got = session.run(None, feed)
    with torch.no_grad():
        expected = module(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    return {name: compare(g, e.numpy()) for name, g, e in zip(spec.outputs, got, expected)}


def compare(got: np.ndarray, expected: np.ndarray) -> dict:
    if got.shape != expected.shape:
        raise ExportError(f"shape {got.shape} != expected {expected.shape}")
    a, b = got.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))
    scale = float(np.abs(b).max()) if b.size else 0.0
    max_rel = float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max(initial=0.0))
    return {"cosine": cosine, "max_rel_error": max_rel, "shape": list(got.shape)}


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Save inline, or with an external weights file when too large for one protobuf."""
    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)  # the exporter's own side file; its weights are loaded in `model`
    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save(model, str(path), save_as_external_data=True, location=data.name)
    else:
        onnx.save(model, str(path))


def _describe(values) -> list[dict]:
    return [{"name": v.name,
             "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
             "dtype": ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))}
            for v in values]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
