"""Fleet job set-up without Ray: which recordings a folder or manifest names, their output folder
names, bad input lists, the Ray resources of a worker, and `--inputs` without Ray installed."""
import sys

import pytest

from fleet_data import CAMERA_TOPIC, empty_video, image_bag, image_folder, write_clip
from sam3_ros.cli import EXIT_FAILED, main
from sam3_ros.core.config import PipelineConfig
from sam3_ros.fleet.inputs import FleetInput, InputListError, discover_inputs
from sam3_ros.fleet.ray_job import FleetError, FleetJob, plan_workers


def test_a_folder_scan_finds_each_kind_of_recording_and_nothing_else(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    write_clip(recordings / "clip10.mp4", frames=1)
    write_clip(recordings / "clip2.mp4", frames=1)
    image_folder(recordings / "frames", 1)
    image_bag(recordings / "drive", 1)
    (recordings / "loose.mcap").write_bytes(b"")  # a bare storage file counts (broken or not)
    (recordings / "notes.txt").write_text("not a recording")
    (recordings / ".hidden.mp4").write_bytes(b"")
    (recordings / "empty_dir").mkdir()
    (recordings / "labels").mkdir()  # the job's own output folder
    write_clip(recordings / "labels" / "old.mp4", frames=1)

    found = discover_inputs(recordings, image_topic=CAMERA_TOPIC, exclude=recordings / "labels")
    assert [i.name for i in found] == ["clip2", "clip10", "drive", "frames", "loose"]
    assert all(i.image_topic == CAMERA_TOPIC for i in found)
    assert found[0].path == str(recordings / "clip2.mp4")


def test_a_manifest_names_paths_relative_to_itself_with_optional_topics(tmp_path):
    (tmp_path / "site a").mkdir()
    manifest = tmp_path / "fleet.txt"
    manifest.write_text(
        "# recordings of the week\n"
        "\n"
        "'site a/cam.mp4'\n"
        f"site_b/cam.mp4   {CAMERA_TOPIC}  # the front camera\n"
        f"{tmp_path}/bag1\n")
    found = discover_inputs(manifest, image_topic="/default")
    assert found == [
        FleetInput("site_a__cam", str(tmp_path / "site a" / "cam.mp4"), "/default"),
        FleetInput("site_b__cam", str(tmp_path / "site_b" / "cam.mp4"), CAMERA_TOPIC),
        FleetInput("bag1", str(tmp_path / "bag1"), "/default"),
    ]


def test_a_recording_listed_with_two_topics_gets_two_named_outputs(tmp_path):
    manifest = tmp_path / "fleet.txt"
    manifest.write_text("drive /front/image\ndrive /rear/image\nother.mp4\n")
    assert [i.name for i in discover_inputs(manifest)] == ["drive__front_image", "drive__rear_image", "other"]


def test_a_manifest_with_bad_lines_names_every_one(tmp_path):
    manifest = tmp_path / "fleet.txt"
    manifest.write_text("a.mp4\n"
                        "b.mp4 /topic extra\n"
                        "c.bag camera\n"
                        "'unclosed.mp4\n"
                        "./a.mp4\n"
                        "a.mp4 /camera\n")
    with pytest.raises(InputListError) as raised:
        discover_inputs(manifest)
    message = str(raised.value)
    assert "4 bad line(s)" in message
    for expected in ("line 2: expected PATH [IMAGE_TOPIC], got 3 fields", "line 3: image topic 'camera' must start",
                     "line 4:", "line 5: ./a.mp4 is already listed on line 1"):
        assert expected in message


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no recordings"),
    (lambda p: image_folder(p / "one_folder", 1), "looks like one recording: use --input"),
    (lambda p: empty_video(p / "one.mp4"), "is one recording, not a folder or manifest: use --input"),
    (lambda p: (p / "m.txt").write_text("# nothing\n\n") and p / "m.txt", "lists no recordings"),
])
def test_unusable_input_lists_are_refused_with_the_reason(tmp_path, make, message):
    with pytest.raises(InputListError, match=message):
        discover_inputs(make(tmp_path))


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing"), "does not exist"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "holds no recordings"),
])
def test_the_command_exits_2_on_a_bad_input_list(tmp_path, capsys, make, message):
    code = main(["run", "--inputs", make(tmp_path), "--output", str(tmp_path / "out"), "--tiny", "--prompt", "cup"])
    assert code == EXIT_FAILED
    assert message in capsys.readouterr().err


def test_fleet_options_need_inputs(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", frames=1)
    code = main(["run", "--input", str(clip), "--workers", "2", "--output", str(tmp_path / "o"), "--tiny",
                 "--prompt", "cup"])
    assert code == EXIT_FAILED and "--inputs" in capsys.readouterr().err


def test_without_ray_inputs_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    empty_video(tmp_path / "in.mp4")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    code = main(["run", "--inputs", str(tmp_path), "--output", str(tmp_path / "out"), "--tiny", "--prompt", "cup"])
    assert code == EXIT_FAILED
    assert "pip install 'sam3_ros[fleet]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _job(device="auto", workers=None, gpus=1.0, cpus=1.0, inputs=8):
    config = PipelineConfig().updated({"model.tiny": True, "model.device": device})
    items = [FleetInput(f"i{n}", f"/data/i{n}.mp4") for n in range(inputs)]
    return FleetJob(config, [], items, "/out", workers=workers, gpus_per_worker=gpus, cpus_per_worker=cpus)


@pytest.mark.parametrize("job, cluster, expected", [
    (_job(), {"CPU": 16, "GPU": 4}, (4, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda")),
    (_job(gpus=0.5), {"CPU": 16, "GPU": 2}, (4, {"num_gpus": 0.5, "num_cpus": 1.0}, "cuda")),
    (_job(device="cpu", cpus=2), {"CPU": 16, "GPU": 4}, (8, {"num_gpus": 0, "num_cpus": 2}, "cpu")),
    (_job(), {"CPU": 2}, (2, {"num_gpus": 0, "num_cpus": 1.0}, "cpu")),  # auto without GPUs
    (_job(device="cpu", workers=1), {"CPU": 2}, (1, {"num_gpus": 0, "num_cpus": 1.0}, "cpu")),
    (_job(inputs=3), {"CPU": 64, "GPU": 8}, (3, {"num_gpus": 1.0, "num_cpus": 1.0}, "cuda")),  # no idle workers
])
def test_workers_map_onto_ray_resources(job, cluster, expected):
    assert plan_workers(job, cluster) == expected


@pytest.mark.parametrize("job, cluster, message", [
    (_job(device="cuda"), {"CPU": 8}, "no GPUs"),
    (_job(device="cuda:1"), {"CPU": 8, "GPU": 2}, "Ray assigns the GPUs"),
    (_job(workers=3), {"CPU": 8, "GPU": 2}, "3 worker(s) x 1 GPU need 3 GPUs; the Ray cluster has 2"),
    (_job(device="cpu", cpus=0), {"CPU": 8}, "must be positive"),
])
def test_impossible_worker_plans_are_refused(job, cluster, message):
    with pytest.raises(FleetError) as raised:
        plan_workers(job, cluster)
    assert message in str(raised.value)


def test_nothing_imports_ray_until_a_fleet_job_runs():
    import subprocess

    code = ("import sys, sam3_ros.cli, sam3_ros.core.pipeline, sam3_ros.factory, sam3_ros.fleet.ray_job, "
            "sam3_ros.fleet.label; print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
