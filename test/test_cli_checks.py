"""`sam3-ros run` checks everything it can before the model loads (3.4 GB for the real one), and
says what to do (issue 15, items 8, 9 and 10)."""
import json

import pytest
from test_cli_run import write_clip

import sam3_ros.factory
from sam3_ros.cli import EXIT_FAILED, EXIT_OK, main


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: these mistakes must be found before it."""
    def load(*_a, **_k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(sam3_ros.factory, "load_pipeline", load)


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.mp4", frames=2)  # 320x240


def run(clip, out, *extra):
    return main(["run", "--input", str(clip), "--output", str(out), "--prompt", "cup", "--tiny", "--no-progress",
                 *extra])


@pytest.mark.parametrize("extra, message", [
    (["--set", "detection.score_threshold=1.5"], "detection.score_threshold must be 0 <= x <= 1; got 1.5"),
    (["--set", "tracking.max_tracks=-3"], "tracking.max_tracks must be >= 1; got -3"),
    (["--set", "model.device=gpu"], "model.device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    (["--device", "gpu0"], "model.device must be auto, cpu, cuda or cuda:N"),
    (["--dtype", "int4"], "model.dtype must be one of auto, float32, bfloat16, float16"),
    (["--set", "tracking.max_trakcs=3"], "did you mean 'tracking.max_tracks'?"),
    (["--set", "tracking.max_tracks"], "--set expects KEY=VALUE"),
    (["--config", "/no/such/sam3.yaml"], "configuration file /no/such/sam3.yaml does not exist"),
])
def test_bad_settings_exit_2_with_the_reason_before_the_model_loads(tmp_path, clip, capsys, no_model, extra,
                                                                     message):
    assert run(clip, tmp_path / "out", *extra) == EXIT_FAILED
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_malformed_config_file_exits_2_naming_it(tmp_path, clip, capsys, no_model):
    config = tmp_path / "mine.yaml"
    config.write_text("detection:\n  score_threshold: [0.5\n")
    assert run(clip, tmp_path / "out", "--config", str(config)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"configuration file {config} is not valid YAML" in err and "Traceback" not in err


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: tmp / "missing.mp4", "does not exist"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "neither a rosbag2 recording nor a folder of images"),
])
def test_a_bad_input_is_reported_before_the_model_loads(tmp_path, capsys, no_model, make_input, message):
    assert run(make_input(tmp_path), tmp_path / "out") == EXIT_FAILED
    assert message in capsys.readouterr().err


def test_an_output_folder_holding_results_is_refused_before_the_model_loads(tmp_path, clip, capsys, no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert run(clip, out) == EXIT_FAILED
    assert "already holds results.json" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}"


@pytest.mark.parametrize("option, value", [
    ("--max-frames", "0"), ("--max-frames", "-1"), ("--workers", "0"), ("--gpus-per-worker", "0"),
])
def test_nonsense_numbers_are_refused_by_the_parser(tmp_path, clip, capsys, no_model, option, value):
    with pytest.raises(SystemExit) as exit_:
        run(clip, tmp_path / "out", option, value)
    assert exit_.value.code == 2
    assert option in capsys.readouterr().err


def test_a_box_wholly_outside_the_first_frame_exits_2(tmp_path, clip, capsys, no_model):
    assert run(clip, tmp_path / "out", "--box", "cup:400,300,450,350") == EXIT_FAILED
    err = capsys.readouterr().err
    assert "lies outside the 320x240 image" in err


def test_a_box_partly_outside_is_cut_to_the_image_and_the_concept_kept(tmp_path, clip, capsys):
    out = tmp_path / "out"
    assert run(clip, out, "--box", "cup:300,200,400,300", "--device", "cpu") == EXIT_OK
    err = capsys.readouterr().err
    assert "reaches outside the 320x240 image: cut to (300.0, 200.0, 320.0, 240.0)" in err
    results = json.loads((out / "results.json").read_text())
    assert results["header"]["prompts"][0]["exemplars"] == [[300.0, 200.0, 320.0, 240.0, True]]
    assert not any("disabled" in w for frame in results["frames"] for w in frame["warnings"])
