"""ONNX operator check against TensorRT's documented ONNX support.

The facts come from ONNX-TensorRT's ``docs/operators.md`` for TensorRT 10.15 (opsets 9-24):
which operators are supported, and the restrictions that concern graphs like ours. The check
is static: it cannot promise a build succeeds, but it names what certainly fails.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper, shape_inference

TENSORRT_VERSION = "10.15"
OPSET_RANGE = (9, 24)

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN
RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
CONSTANT_AXES_OPS = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                     "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Squeeze", "Unsqueeze"}
TOPK_MAX_K = 3840


@dataclass(frozen=True)
class OpIssue:
    node: str
    op_type: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op_type} ({self.node}): {self.problem}"


def check_model(model: onnx.ModelProto) -> list[OpIssue]:
    """Every node TensorRT's ONNX parser documents as unsupported in this form."""
    issues = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        issues.append(OpIssue("<model>", "opset", f"opset {opset} is outside TensorRT's {OPSET_RANGE}"))
    constants = _constant_names(model.graph)
    for node in model.graph.node:
        issues += _check_node(node, constants)
    return issues


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return names


def _check_node(node: onnx.NodeProto, constants: set[str]) -> list[OpIssue]:
    def issue(problem: str) -> list[OpIssue]:
        return [OpIssue(node.name or node.output[0], node.op_type, problem)]

    if node.domain not in ("", "ai.onnx"):
        return issue(f"custom domain {node.domain!r} needs a plugin")
    if node.op_type not in SUPPORTED_OPS:
        return issue("not supported by TensorRT's ONNX parser")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Resize":
        mode = attrs.get("mode", b"nearest").decode()
        coords = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
        if attrs.get("antialias", 0):
            return issue("antialiasing is not supported")
        if mode not in RESIZE_MODES:
            return issue(f"mode {mode!r} is not supported")
        if coords not in RESIZE_COORDINATES:
            return issue(f"coordinate transformation {coords!r} is not supported")
    if node.op_type in CONSTANT_AXES_OPS and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
        return issue("`axes` must be a build-time constant")
    if node.op_type == "TopK" and (len(node.input) < 2 or node.input[1] not in constants):
        return issue("`K` must be a constant")
    if node.op_type == "ScatterND" and attrs.get("reduction", b"none") != b"none":
        return issue("reductions other than none are not supported")
    if node.op_type == "LayerNormalization" and len([o for o in node.output if o]) > 1:
        return issue("only the first output is supported")
    return []


def drop_antialias_on_upsampling(model: onnx.ModelProto) -> int:
    """Clear ``antialias`` on Resize nodes that only enlarge (where it has no effect); returns how many.

    PyTorch exports ``interpolate(..., antialias=True)`` with the attribute set even when the
    resize enlarges every axis, and TensorRT refuses the attribute outright.
    """
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        antialias = next((a for a in node.attribute if a.name == "antialias"), None)
        if antialias is None or not antialias.i:
            continue
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if before and after and len(before) == len(after) and all(
                b > 0 and a >= b for b, a in zip(before[2:], after[2:])):
            antialias.i = 0
            for attr in node.attribute:
                if attr.name == "exclude_outside":
                    attr.i = 0  # only meaningful with antialiasing (or cubic mode)
            changed += 1
    return changed
