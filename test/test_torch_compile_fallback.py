"""model.compile where torch.compile cannot compile: the components fall back to eager, once, saying why.

Jetson Thor (sm_110) is the known case: Triton's bundled ptxas has been reported to reject the GPU,
so inductor fails on a component's first call. Not run on a Thor here: the failure is simulated with
a real torch.compile (Dynamo traces the real tiny-model components) whose compiler backend raises
the way inductor does when ptxas rejects the architecture.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sam3_ros.backends import torch_fast
from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.prompts import make_concept

PTXAS_ERROR = "ptxas fatal   : Value 'sm_110a' is not defined for option 'gpu-name'"
PERMISSIVE = {"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02}


class PtxasRejectsTheGpu:
    """A torch.compile backend that fails like inductor + Triton on an architecture ptxas does not know."""

    def __init__(self) -> None:
        self.compiles = 0

    def __call__(self, graph_module, example_inputs):
        self.compiles += 1
        raise RuntimeError(f"Triton compilation failed: {PTXAS_ERROR}")


@pytest.fixture
def failing_compile(monkeypatch):
    backend = PtxasRejectsTheGpu()
    real_compile = torch.compile

    def compile_with_failing_backend(fn, **options):
        options.pop("mode", None)  # a mode belongs to inductor; the backend here is the failing one
        return real_compile(fn, backend=backend, **options)

    monkeypatch.setattr(torch_fast.torch, "compile", compile_with_failing_backend)
    torch._dynamo.reset()
    yield backend
    torch._dynamo.reset()


def frames(n, height=96, width=128):
    base = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def test_a_component_that_cannot_compile_runs_eagerly_with_one_warning(failing_compile, tiny_components, caplog):
    fast = torch_fast.compile_components(tiny_components)
    g = tiny_components.geometry
    image = torch.randn(1, 3, g.image_size, g.image_size)
    with caplog.at_level(logging.WARNING, logger="sam3_ros.backends.torch_fast"):
        first = fast.vision(image)
        second = fast.vision(image)
    expected = tiny_components.vision(image)
    assert tensor_leaves(expected)
    for out in (first, second):
        for got, want in zip(tensor_leaves(out), tensor_leaves(expected)):
            torch.testing.assert_close(got, want)
    warnings = [r.getMessage() for r in caplog.records if "torch.compile of the vision failed" in r.getMessage()]
    assert len(warnings) == 1 and "sm_110a" in warnings[0]
    assert failing_compile.compiles == 1  # the second call did not try to compile again
    assert fast.vision.compiled is None and "sm_110a" in fast.vision.failure


def test_a_bad_input_raises_and_leaves_compilation_on(failing_compile, tiny_components):
    fast = torch_fast.compile_components(tiny_components)
    with pytest.raises(Exception):
        fast.vision(torch.randn(1, 5, 7))  # wrong rank and channels: eager fails too
    assert fast.vision.compiled is not None and fast.vision.failure is None


def test_the_pipeline_gives_the_eager_results_when_compiling_fails(failing_compile, tiny, tiny_components):
    concepts = [make_concept(None, "red cup")]
    config = PipelineConfig().updated(PERMISSIVE)
    eager = Sam3Pipeline(tiny_components, tiny.tokenizer, config)
    fallback = Sam3Pipeline(torch_fast.compile_components(tiny_components), tiny.tokenizer, config)
    for pipeline in (eager, fallback):
        pipeline.set_concepts(concepts)
    produced = 0
    for image in frames(2):
        want, got = eager.step(image), fallback.step(image)
        assert [(i.track_id, i.concept_id, i.box_xyxy, i.state) for i in got.instances] == \
            [(i.track_id, i.concept_id, i.box_xyxy, i.state) for i in want.instances]
        assert [i.score for i in got.instances] == pytest.approx([i.score for i in want.instances])
        produced += len(got.instances)
    assert produced > 0, "permissive thresholds should let the tiny model report instances"
    assert failing_compile.compiles >= 1


def tensor_leaves(value):
    """The tensors in a component's output (a tensor, a tuple/list or a dataclass of tensors)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in tensor_leaves(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [leaf for name in value.__dataclass_fields__ for leaf in tensor_leaves(getattr(value, name))]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in tensor_leaves(v)]
    return []
