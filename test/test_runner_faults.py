"""`sam3-ros run` on broken recordings: truncated and garbage MCAP/sqlite3 bags, corrupt videos.

Each must end with a clear message and exit code 1 (the stream broke mid-way: what was written is
kept) or 2 (nothing could be read), never a traceback, and every output written so far must stay
readable: results.json valid JSON that says it is incomplete, results.mcap a readable rosbag2.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin

from sam3_ros.cli import EXIT_FAILED, EXIT_PARTIAL, main
from test_cli_run import read_bag, write_clip
from test_io_sources import write_bag

TOPIC = "/cam/compressed"   # all four frames of write_bag's recording are valid on this topic


def run(recording: Path, out: Path) -> int:
    return main(["run", "--input", str(recording), "--image-topic", TOPIC, "--prompt", "cup", "--tiny",
                 "--output", str(out), "--no-progress", "--no-overlay"])


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def assert_outputs_readable(out: Path, code: int) -> None:
    results = out / "results.json"
    if not results.exists():
        assert code == EXIT_FAILED, "a run that read frames must leave results.json"
        return
    document = json.loads(results.read_text())
    assert document["complete"] is (code == 0)
    if code != 0:
        assert document["error"]
    if (out / "results.mcap").exists():
        instances = read_bag(out / "results.mcap").get("/sam3/instances", [])
        assert len(instances) == len(document["frames"])


def assert_clear_failure(code: int, capsys, out: Path, hint: str) -> None:
    err = capsys.readouterr().err
    assert code in (EXIT_PARTIAL, EXIT_FAILED), err
    assert "Traceback" not in err and "cannot read the recording" in err and hint in err, err
    assert_outputs_readable(out, code)


REPAIR = {StoragePlugin.MCAP: "mcap recover", StoragePlugin.SQLITE3: ".recover"}


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_bags(tmp_path, capsys, storage, keep):
    bag = tmp_path / "recording"
    write_bag(bag, storage)
    data = storage_file(bag)
    data.write_bytes(data.read_bytes()[: int(data.stat().st_size * keep)])
    out = tmp_path / "out"
    assert_clear_failure(run(bag, out), capsys, out, REPAIR[storage])


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"])
def test_garbage_bags(tmp_path, capsys, storage):
    bag = tmp_path / "recording"
    write_bag(bag, storage)
    data = storage_file(bag)
    data.write_bytes(np.random.default_rng(0).integers(0, 256, data.stat().st_size, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    assert_clear_failure(run(bag, out), capsys, out, "" if storage == StoragePlugin.MCAP else REPAIR[storage])


def test_sqlite_bag_with_a_garbage_message_in_the_middle(tmp_path, capsys):
    """The container is intact but one message's bytes are not CDR: that frame is skipped with a
    warning that names it, and every other frame is labelled."""
    bag = tmp_path / "recording"
    write_bag(bag, StoragePlugin.SQLITE3)
    with sqlite3.connect(storage_file(bag)) as db:
        topic_id = db.execute("SELECT id FROM topics WHERE name = ?", (TOPIC,)).fetchone()[0]
        row = db.execute("SELECT id FROM messages WHERE topic_id = ? ORDER BY timestamp LIMIT 1 OFFSET 2",
                         (topic_id,)).fetchone()[0]
        db.execute("UPDATE messages SET data = ? WHERE id = ?", (b"\x00\x01garbage", row))
    out = tmp_path / "out"
    code = run(bag, out)
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    assert f"skipping message 2 on {TOPIC}" in err
    assert len(json.loads((out / "results.json").read_text())["frames"]) == 3
    assert_outputs_readable(out, code)


@pytest.mark.parametrize("damage", ["truncated", "garbage tail", "garbage"])
def test_corrupt_videos(tmp_path, capsys, damage):
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    data = clip.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage tail":
        data = data[: len(data) // 2] + np.random.default_rng(1).integers(0, 256, len(data) // 2,
                                                                          dtype=np.uint8).tobytes()
    else:
        data = np.random.default_rng(2).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    clip.write_bytes(data)
    out = tmp_path / "out"
    code = main(["run", "--input", str(clip), "--prompt", "cup", "--tiny", "--output", str(out),
                 "--no-progress", "--no-overlay"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:  # the container was still playable up to where it was cut: a shorter clip
        assert json.loads((out / "results.json").read_text())["complete"] is True
    else:
        assert code in (EXIT_PARTIAL, EXIT_FAILED) and "clip.mp4" in err
    assert_outputs_readable(out, code)
