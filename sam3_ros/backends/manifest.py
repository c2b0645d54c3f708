"""The export directory's manifest: what was exported from which model, and how to read it."""
from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"


class ExportedModelError(RuntimeError):
    """The export directory is missing, incomplete or from another model; the message says which."""


def read_manifest(export_dir: str | Path, fingerprint: str | None = None) -> dict:
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise ExportedModelError(f"{path} not found: run `sam3-ros export --output {export_dir}` first")
    manifest = json.loads(path.read_text())
    if fingerprint is not None and manifest["model"]["fingerprint"] != fingerprint:
        raise ExportedModelError(
            f"{export_dir} was exported from model {manifest['model']['fingerprint']} "
            f"({manifest['model']['source']}), not the configured one ({fingerprint}): export again")
    for name, entry in manifest["components"].items():
        if not (export_dir / entry["file"]).is_file():
            raise ExportedModelError(f"{export_dir / entry['file']} ({name}) is missing: export again")
    return manifest
