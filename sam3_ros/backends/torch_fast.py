"""The fast PyTorch path: torch.compile of the heavy components.

The vision encoder always sees one shape (the model's input size), so on CUDA it is compiled
with ``mode="reduce-overhead"``, which replays it as a CUDA graph. Its outputs are only used
within the frame, so the graph's reused output buffers are safe. Detector, tracker and memory
encoder see varying numbers of concepts and tracks, and their outputs (memory features) are
kept across frames, so they are compiled without CUDA graphs and with dynamic shapes.
The other levers of the fast path live elsewhere: bfloat16 weights (model.dtype auto on GPU),
preprocessing on the GPU from pinned host memory (model/preprocess.py), and all live tracks of
one memory layout in one tracker call (core/pipeline.py).

torch.compile compiles on a component's first call (and again for new shapes). Where that fails,
the component runs eagerly from then on, with one warning that says why: the failure is told apart
from a bad input by running the same call eagerly, and only a call that works eagerly turns
compilation off. A known case is Jetson Thor (sm_110), where Triton's bundled ptxas has been
reported not to know the GPU; it is simulated in test/test_torch_compile_fallback.py, not run here.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

import torch

from .base import Sam3Components

log = logging.getLogger(__name__)


class CompiledOrEager:
    """A torch.compile'd component that falls back to its eager self if compiling fails."""

    def __init__(self, name: str, eager: Callable[..., Any], compiled: Callable[..., Any]):
        self.name = name
        self.eager = eager
        self.compiled: Callable[..., Any] | None = compiled
        self.failure: str | None = None  # why compilation was turned off, once it was
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self.compiled
        if compiled is None:
            return self.eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as compile_error:
            result = self.eager(*args, **kwargs)  # raises too when the input is at fault: compiled stays on
            with self._lock:
                if self.compiled is not None:
                    self.compiled = None
                    self.failure = _reason(compile_error)
                    log.warning(f"torch.compile of the {self.name} failed, running it eagerly from now on "
                                f"({self.failure})")
            return result


def _undecorated(component: Any) -> Callable[..., Any]:
    """The component's own ``__call__``, bound, without its ``@torch.no_grad()`` wrapper.

    Dynamo keeps one cache per code object. Every ``no_grad``-decorated method runs the same
    wrapper code, so compiling the decorated methods made all components share (and overflow) one
    cache: each recompiled the others' entries away until dynamo gave up and ran them eagerly."""
    function = type(component).__call__
    return getattr(function, "__wrapped__", function).__get__(component)


def _without_grad(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return function(*args, **kwargs)
    return call


def _reason(error: BaseException) -> str:
    """The error and, where it wraps one (BackendCompilerFailed wraps the compiler's), its root cause."""
    root, seen = error, {id(error)}
    while True:
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None or id(inner) in seen:
            break
        root, seen = inner, seen | {id(inner)}
    first_line = (str(root).strip().splitlines() or [""])[0][:300]
    chain = type(error).__name__ if root is error else f"{type(error).__name__} from {type(root).__name__}"
    return f"{chain}: {first_line}"


def compile_components(components: Sam3Components) -> Sam3Components:
    on_gpu = components.device.type == "cuda"
    static = dict(mode="reduce-overhead", dynamic=False) if on_gpu else dict(dynamic=False)
    dynamic = dict(dynamic=True)

    def compiled(name: str, options: dict[str, Any]) -> CompiledOrEager:
        component = getattr(components, name)
        eager = component.__call__
        return CompiledOrEager(name.replace("_", " "), eager, _without_grad(torch.compile(_undecorated(component),
                                                                                          **options)))

    return dataclasses.replace(
        components,
        name=f"{components.name}+compile",
        vision=compiled("vision", static),
        detector=compiled("detector", dynamic),
        tracker=compiled("tracker", dynamic),
        memory_encoder=compiled("memory_encoder", dynamic),
    )
