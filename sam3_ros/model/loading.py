"""Load SAM 3 (detector + memory tracker) from a local checkpoint directory, or build the tiny one.

A checkpoint directory is what ``save_pretrained`` writes or what ``hf download facebook/sam3``
fetches: ``config.json`` (model_type ``sam3_video``), ``model.safetensors`` (or an index with
shards) and the CLIP tokenizer files.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

HOW_TO_GET_WEIGHTS = (
    "SAM 3 weights are gated on Hugging Face. To get them: accept the licence at "
    "https://huggingface.co/facebook/sam3, log in with `hf auth login`, then run "
    "`hf download facebook/sam3 --local-dir ~/models/sam3` and pass that directory as the "
    "checkpoint (--checkpoint, or model.checkpoint in config/sam3.yaml). "
    "For a smoke test without weights use the tiny random-init model (--tiny)."
)
_LFS_POINTER_PREFIX = b"version https://git-lfs"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CheckpointError(RuntimeError):
    """The checkpoint cannot be used; the message says why and how to get a good one."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}\n{HOW_TO_GET_WEIGHTS}")
        self.problem = problem


@dataclass
class LoadedSam3:
    model: "torch.nn.Module"   # transformers Sam3VideoModel, eval mode
    tokenizer: object          # CLIP tokenizer
    device: torch.device
    dtype: torch.dtype
    random_weights: bool
    source: str
    fingerprint: str           # identifies the weights (engine cache keys)

    def describe(self) -> str:
        kind = "RANDOM WEIGHTS (tiny test model, outputs are meaningless)" if self.random_weights else "trained weights"
        return f"SAM 3 from {self.source} on {self.device} as {str(self.dtype).replace('torch.', '')}: {kind}"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {name!r}")
    return _DTYPES[name]


def check_checkpoint_dir(path: str | Path) -> Path:
    """Validate a checkpoint directory without loading it; raise CheckpointError if unusable."""
    if not str(path).strip():
        raise CheckpointError("no checkpoint directory was given")
    directory = Path(path).expanduser()
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} is not a directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        hint = " It holds Meta's sam3.pt, which is not the transformers format." if (directory / "sam3.pt").exists() else ""
        raise CheckpointError(f"{directory} has no config.json, so it is not a transformers checkpoint.{hint}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from None
    model_type = config.get("model_type")
    if model_type != "sam3_video":
        raise CheckpointError(
            f"{config_path} has model_type {model_type!r}; sam3_ros needs the full SAM 3 checkpoint "
            "(model_type 'sam3_video': detector and tracker), as published in facebook/sam3"
        )
    for weights in _weight_files(directory):
        _check_weight_file(weights)
    has_tokenizer = (directory / "tokenizer.json").is_file() or (
        (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file()
    )
    if not has_tokenizer:
        raise CheckpointError(f"{directory} has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
    return directory


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{index} is unreadable: {err}") from None
        return [directory / shard for shard in shards]
    single = directory / "model.safetensors"
    if single.exists():
        return [single]
    raise CheckpointError(f"{directory} has no model.safetensors (nor a sharded index): the weights are missing")


def _check_weight_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"weight file {path} is missing (incomplete download?)")
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_LFS_POINTER_PREFIX):
        raise CheckpointError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` or use `hf download`")
    if size < 8:
        raise CheckpointError(f"{path} is truncated ({size} bytes)")
    header_len = int.from_bytes(head[:8], "little")
    if header_len <= 0 or 8 + header_len > size:
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt)")


def load_sam3(checkpoint: str | Path, device: str = "auto", dtype: str = "auto") -> LoadedSam3:
    """Load detector and tracker from a local directory. Nothing is downloaded."""
    from transformers import AutoTokenizer, Sam3VideoModel

    directory = check_checkpoint_dir(checkpoint)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        model = Sam3VideoModel.from_pretrained(directory, dtype=torch_dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as err:  # safetensors, tokenizers and torch raise their own types
        raise CheckpointError(f"loading {directory} failed: {type(err).__name__}: {err}") from err
    random_weights = (directory / "RANDOM_WEIGHTS").exists()
    loaded = LoadedSam3(
        model=model.to(torch_device).eval(), tokenizer=tokenizer, device=torch_device, dtype=torch_dtype,
        random_weights=random_weights, source=str(directory), fingerprint=fingerprint_files(directory),
    )
    (log.warning if random_weights else log.info)("%s", loaded.describe())
    return loaded


def load_tiny(seed: int = 0, device: str = "auto", dtype: str = "auto", image_size: int | None = None) -> LoadedSam3:
    """The tiny random-init model of the real architecture. Always announces itself."""
    from transformers import Sam3VideoModel

    from .tiny import TINY_IMAGE_SIZE, byte_level_clip_tokenizer, tiny_sam3_video_config

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    size = image_size or TINY_IMAGE_SIZE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam3VideoModel(tiny_sam3_video_config(size)).eval()
    model = model.to(device=torch_device, dtype=torch_dtype)
    loaded = LoadedSam3(
        model=model, tokenizer=byte_level_clip_tokenizer(), device=torch_device, dtype=torch_dtype,
        random_weights=True, source=f"tiny random-init model (seed {seed}, {size}px)",
        fingerprint=_fingerprint_state(model),
    )
    log.warning("%s", loaded.describe())
    return loaded


def fingerprint_files(directory: Path) -> str:
    """Hash of config and weight files (size, mtime and the safetensors headers): cheap, content-aware."""
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for weights in _weight_files(directory):
        stat = weights.stat()
        with weights.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            digest.update(handle.read(header_len))
            handle.seek(max(stat.st_size - (1 << 20), 8 + header_len))
            digest.update(handle.read())  # last MiB of tensor data
        digest.update(str(stat.st_size).encode())
    return digest.hexdigest()[:16]


def _fingerprint_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
