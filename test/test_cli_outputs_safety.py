"""The CLI never deletes what it did not write, and stops cleanly on SIGTERM (issue 15, items 1 and 3)."""
import json
from pathlib import Path

from sam3_ros.cli import EXIT_FAILED, EXIT_OK, main


def test_demo_refuses_a_folder_holding_other_work_and_deletes_nothing(tmp_path, capsys):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "notes.txt").write_text("my notes")
    (work / "src" / "a.py").write_text("print('mine')")
    assert main(["demo", "--output", str(work), "--frames", "2"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "notes.txt" in err and "nothing was deleted" in err
    assert (work / "notes.txt").read_text() == "my notes"
    assert (work / "src" / "a.py").read_text() == "print('mine')"
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "src"]


def test_demo_runs_again_in_its_own_folder(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_OK
    assert main(["demo", "--output", str(out), "--frames", "3"]) == EXIT_OK
    assert len(json.loads((out / "results" / "results.json").read_text())["frames"]) == 3


def test_demo_refuses_a_demo_folder_with_one_extra_file(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_OK
    (out / "results" / "my_labels.csv").write_text("keep me")
    assert main(["demo", "--output", str(out), "--frames", "2"]) == EXIT_FAILED
    assert (out / "results" / "my_labels.csv").read_text() == "keep me"
    assert (out / "results" / "results.json").is_file()
