"""Checkpoint directories: clear errors for every way they can be broken, and a real round trip."""
import json
import logging

import pytest
import torch

from sam3_ros.model.loading import (
    HOW_TO_GET_WEIGHTS,
    CheckpointError,
    check_checkpoint_dir,
    load_sam3,
    load_tiny,
    resolve_device,
    resolve_dtype,
)
from sam3_ros.model.tiny import save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "sam3-tiny", seed=7)


def break_copy(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    edit(dst)
    return dst


@pytest.mark.parametrize("edit, problem", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: ((d / "config.json").unlink(), (d / "sam3.pt").write_bytes(b"x")), "Meta's sam3.pt"),
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "sam3"})), "sam3_video"),
    (lambda d: (d / "model.safetensors").unlink(), "weights are missing"),
    (lambda d: (d / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid x"), "Git LFS"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 16), "not a valid safetensors"),
    (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer"),
])
def test_broken_checkpoints_fail_with_reason_and_instructions(tiny_checkpoint, tmp_path, edit, problem):
    broken = break_copy(tiny_checkpoint, tmp_path / "ckpt", edit)
    with pytest.raises(CheckpointError, match=problem) as err:
        check_checkpoint_dir(broken)
    assert HOW_TO_GET_WEIGHTS in str(err.value)


@pytest.mark.parametrize("path, problem", [("", "no checkpoint"), ("/nonexistent/sam3", "does not exist")])
def test_missing_checkpoint(path, problem):
    with pytest.raises(CheckpointError, match=problem):
        load_sam3(path)


def test_corrupt_weights_that_pass_the_quick_check_fail_cleanly(tiny_checkpoint, tmp_path):
    def corrupt(d):
        data = bytearray((d / "model.safetensors").read_bytes())
        (d / "model.safetensors").write_bytes(bytes(data[: len(data) // 2]) + b"\0" * 8)
    broken = break_copy(tiny_checkpoint, tmp_path / "ckpt", corrupt)
    with pytest.raises(CheckpointError):
        load_sam3(broken, device="cpu")


def test_saved_tiny_checkpoint_loads_with_identical_weights_and_says_random(tiny_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        loaded = load_sam3(tiny_checkpoint, device="cpu", dtype="float32")
    assert loaded.random_weights and "RANDOM WEIGHTS" in caplog.text
    reference = load_tiny(seed=7, device="cpu")
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), reference.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.tokenizer("cup").input_ids == reference.tokenizer("cup").input_ids


def test_tiny_model_always_announces_random_weights(caplog):
    with caplog.at_level(logging.WARNING):
        loaded = load_tiny(seed=1, device="cpu")
    assert "RANDOM WEIGHTS" in loaded.describe() and "RANDOM WEIGHTS" in caplog.text


def test_fingerprints_identify_weights():
    assert load_tiny(seed=1, device="cpu").fingerprint == load_tiny(seed=1, device="cpu").fingerprint
    assert load_tiny(seed=1, device="cpu").fingerprint != load_tiny(seed=2, device="cpu").fingerprint


def test_device_and_dtype_are_explicit():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
