"""model.compile gives every component its own Dynamo cache.

Dynamo caches compiled code per code object. Every ``@torch.no_grad()`` method runs the same
wrapper code, so compiling the decorated ``__call__`` methods put all components into one cache,
where they recompiled each other's entries away until Dynamo ran them eagerly (seen on the CPU with
TORCH_LOGS=recompiles: one cache, entries 0..7 of its limit of 8). torch.compile is watched here,
not replaced.
"""
from __future__ import annotations

import torch

from sam3_ros.backends import torch_fast

COMPILED = ("vision", "detector", "tracker", "memory_encoder")


def test_each_compiled_component_has_its_own_code_object(tiny_components, monkeypatch):
    compiled_targets = []
    real_compile = torch.compile

    def watching(target, **options):
        compiled_targets.append(target)
        return real_compile(target, **options)
    monkeypatch.setattr(torch, "compile", watching)
    torch_fast.compile_components(tiny_components)

    codes = [target.__func__.__code__ for target in compiled_targets]
    assert len(codes) == len(COMPILED) == len(set(codes)), "components share a code object: one Dynamo cache"
    no_grad_wrapper = type(tiny_components.vision).__call__.__code__
    for name, target in zip(COMPILED, compiled_targets):
        component = getattr(tiny_components, name)
        assert target.__self__ is component
        assert target.__func__.__code__ is not no_grad_wrapper
        assert target.__func__.__code__.co_name == "__call__"

