"""TensorRT readiness without TensorRT: the operator check, the antialias pass, and the engine cache."""
import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sam3_ros.backends.engine_cache import (
    EngineCacheError,
    EngineKey,
    checked_engine_bytes,
    dim_ranges,
    shape_profile,
    write_engine,
)
from sam3_ros.backends.trt_support import check_model, drop_antialias_on_upsampling


def resize_model(in_size: int, out_size: int, antialias: int = 1, mode: str = "linear") -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, antialias=antialias,
                            exclude_outside=antialias, coordinate_transformation_mode="half_pixel")
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, out_size, out_size])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, in_size, in_size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, out_size, out_size])],
                              initializer=[sizes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_antialias_is_dropped_where_it_changes_nothing_and_flagged_where_it_would():
    x = np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32)
    up = resize_model(8, 20)
    before = run(up, x)
    assert [i.problem for i in check_model(up)] == ["antialiasing is not supported"]
    assert drop_antialias_on_upsampling(up) == 1
    assert check_model(up) == []
    np.testing.assert_allclose(run(up, x), before, atol=1e-6)  # upsampling: antialias had no effect
    down = resize_model(8, 3)
    assert drop_antialias_on_upsampling(down) == 0
    assert [i.problem for i in check_model(down)] == ["antialiasing is not supported"]
    assert "mode 'cubic'" in check_model(resize_model(8, 20, antialias=0, mode="cubic"))[0].problem


def make(node: onnx.NodeProto, inputs, opset: int = 18, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in inputs],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_unsupported_operators_and_forms_are_named():
    assert "not supported" in check_model(make(helper.make_node("Unique", ["x"], ["y"]), ["x"]))[0].problem
    assert "plugin" in check_model(make(helper.make_node("Foo", ["x"], ["y"], domain="acme"), ["x"]))[0].problem
    dynamic_axes = make(helper.make_node("ReduceSum", ["x", "axes"], ["y"]), ["x", "axes"])
    assert "build-time constant" in check_model(dynamic_axes)[0].problem
    constant_axes = make(helper.make_node("ReduceSum", ["x", "axes"], ["y"]), ["x"],
                         initializers=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    assert check_model(constant_axes) == []
    assert "opset" in str(check_model(make(helper.make_node("Relu", ["x"], ["y"]), ["x"], opset=25))[0])


KEY = EngineKey(component="tracker", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0", tensorrt="10.15.1",
                model_fingerprint="ef216677580ea986", onnx_sha256="ab" * 32, precision="bf16",
                profile=(("spatial", (1, 1, 5184, 64), (8, 10, 5184, 64), (50, 10, 5184, 64)),))


def test_engine_keys_change_with_everything_that_invalidates_an_engine():
    digests = {KEY.digest()}
    for field, value in [("gpu", "NVIDIA H200"), ("compute_capability", "8.7"), ("tensorrt", "10.16.0"),
                         ("model_fingerprint", "0" * 16), ("onnx_sha256", "cd" * 32), ("precision", "fp16"),
                         ("profile", (("spatial", (1, 1, 5184, 64), (8, 10, 5184, 64), (64, 10, 5184, 64)),))]:
        digests.add(dataclasses.replace(KEY, **{field: value}).digest())
    assert len(digests) == 8
    assert KEY.engine_path("engines").name == f"tracker-bf16-{KEY.digest()}.engine"
    with pytest.raises(ValueError, match="precision"):
        dataclasses.replace(KEY, precision="int3")


def test_profiles_follow_the_configuration():
    ranges = dim_ranges(max_tracks=20, max_cond_frames=4, num_maskmem=7, max_object_pointers=16)
    inputs = [{"name": "spatial", "shape": ["tracks", "memories", 5184, 64]},
              {"name": "pointers", "shape": ["tracks", "pointer_tokens", 256]}]
    assert shape_profile(inputs, ranges) == (
        ("spatial", (1, 1, 5184, 64), (8, 10, 5184, 64), (20, 10, 5184, 64)),
        ("pointers", (1, 1, 256), (8, 19, 256), (20, 19, 256)),
    )
    with pytest.raises(EngineCacheError, match="no shape range"):
        shape_profile([{"name": "x", "shape": ["mystery"]}], ranges)


def test_valid_engines_load_and_stale_corrupt_or_unknown_ones_are_refused(tmp_path):
    path = write_engine(KEY, tmp_path, b"serialized engine bytes")
    assert checked_engine_bytes(KEY, tmp_path) == b"serialized engine bytes"

    with pytest.raises(EngineCacheError, match="only engines for other GPUs"):
        checked_engine_bytes(dataclasses.replace(KEY, gpu="NVIDIA H200"), tmp_path)

    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["key"]["tensorrt"] = "10.3.0"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(EngineCacheError, match="stale .*tensorrt"):
        checked_engine_bytes(KEY, tmp_path)

    write_engine(KEY, tmp_path, b"serialized engine bytes")
    path.write_bytes(b"serialized engine bytez")  # same size, one byte flipped
    with pytest.raises(EngineCacheError, match="corrupt"):
        checked_engine_bytes(KEY, tmp_path)

    sidecar.unlink()
    with pytest.raises(EngineCacheError, match="unknown origin"):
        checked_engine_bytes(KEY, tmp_path)


def test_tensorrt_backend_says_clearly_what_is_missing(tmp_path):
    from sam3_ros.backends.trt_runtime import require_tensorrt, trt_precision

    assert (trt_precision("auto"), trt_precision("float16"), trt_precision("float32")) == ("bf16", "fp16", "fp32")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(EngineCacheError, match="TensorRT is not installed"):
            require_tensorrt()
