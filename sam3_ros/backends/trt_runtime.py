"""TensorRT engines for the exported graphs: build (with shape profiles and FP32 islands) and run.

UNVERIFIED: TensorRT cannot be installed where this project is developed, and has not yet run
this code on a GPU. It uses only the documented TensorRT 10 Python API (ONNX parser,
build_serialized_network, name-based I/O, execute_async_v3). The cache logic it relies on
(engine_cache.py) is tested without TensorRT.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..core.config import PipelineConfig
from .base import ModelGeometry, Sam3Components
from .engine_cache import EngineCacheError, EngineKey, checked_engine_bytes, dim_ranges, shape_profile, write_engine
from .graph_components import components_from_graphs

log = logging.getLogger(__name__)

_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                 "INT64": torch.int64, "BOOL": torch.bool, "UINT8": torch.uint8}


def trt_precision(dtype: str) -> str:
    """model.dtype -> engine precision: bfloat16 unless float16 or float32 is asked for."""
    return {"float16": "fp16", "float32": "fp32"}.get(dtype, "bf16")


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise EngineCacheError(
            "TensorRT is not installed: install NVIDIA's `tensorrt` Python package matching your CUDA "
            "(see README), or use model.backend torch / onnxruntime") from err
    return trt


def engine_key(component: str, entry: dict, manifest: dict, precision: str, config: PipelineConfig,
               device: torch.device) -> EngineKey:
    trt = require_tensorrt()
    g = manifest["geometry"]
    ranges = dim_ranges(config.tracking.max_tracks, config.memory.max_cond_frames, g["num_maskmem"],
                        config.memory.max_object_pointers)
    major, minor = torch.cuda.get_device_capability(device)
    return EngineKey(component=component, gpu=torch.cuda.get_device_name(device),
                     compute_capability=f"{major}.{minor}", tensorrt=trt.__version__,
                     model_fingerprint=manifest["model"]["fingerprint"], onnx_sha256=entry["sha256"],
                     precision=precision, profile=shape_profile(entry["inputs"], ranges))


def build_engine(onnx_path: Path, key: EngineKey, workspace_gib: float = 8.0) -> bytes:
    """Serialized engine for one graph: reduced precision, but Softmax and normalisation in FP32."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineCacheError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if key.precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if key.precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _keep_fp32_islands(trt, network)
    profile = builder.create_optimization_profile()
    for name, smallest, typical, largest in key.profile:
        profile.set_shape(name, smallest, typical, largest)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineCacheError(f"TensorRT failed to build {onnx_path} ({key.precision}); see the log above")
    return bytes(serialized)


def _keep_fp32_islands(trt, network) -> None:
    """Softmax and normalisation overflow in FP16 (seen by others exporting SAM): run them in FP32."""
    sensitive = {trt.LayerType.SOFTMAX, trt.LayerType.NORMALIZATION, trt.LayerType.REDUCE}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in sensitive:
            layer.precision = trt.float32
            for out in range(layer.num_outputs):
                layer.set_output_type(out, trt.float32)


def build_engines(export_dir: str | Path, manifest: dict, config: PipelineConfig, precision: str,
                  device: torch.device, force: bool = False) -> list[Path]:
    """Build every component's engine that is missing or stale; reuse the valid ones."""
    built = []
    for component, entry in manifest["components"].items():
        key = engine_key(component, entry, manifest, precision, config, device)
        if not force:
            try:
                checked_engine_bytes(key, export_dir)
                log.info("%s: cached engine is valid", component)
                continue
            except EngineCacheError as reason:
                log.info("%s: building (%s)", component, reason)
        data = build_engine(Path(export_dir) / entry["file"], key)
        built.append(write_engine(key, export_dir, data))
    return built


class TrtGraph:
    """One engine, run on torch CUDA tensors bound by name on the current stream (no host copies)."""

    def __init__(self, data: bytes, device: torch.device, path: Path):
        trt = require_tensorrt()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineCacheError(f"TensorRT could not deserialize {path}: rebuild it with `sam3-ros build-engines`")
        self.context = self.engine.create_execution_context()
        self.device = device
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _TORCH_DTYPES[self.engine.get_tensor_dtype(n).name] for n in names}

    def __call__(self, **named: torch.Tensor) -> list[torch.Tensor]:
        keep = []
        for name in self.inputs:
            tensor = named[name].to(self.device, self.dtypes[name]).contiguous()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.outputs:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return outputs


def tensorrt_components(export_dir: str | Path, manifest: dict, device: torch.device, precision: str,
                        config: PipelineConfig) -> Sam3Components:
    """Components over cached engines; refuses missing, stale or corrupt ones with the reason."""
    if device.type != "cuda":
        raise EngineCacheError("the tensorrt backend needs a CUDA device")
    graphs = {}
    for component, entry in manifest["components"].items():
        key = engine_key(component, entry, manifest, precision, config, device)
        graphs[component] = TrtGraph(checked_engine_bytes(key, export_dir), device, key.engine_path(export_dir))
    return components_from_graphs("tensorrt", graphs, ModelGeometry(**manifest["geometry"]), device)
