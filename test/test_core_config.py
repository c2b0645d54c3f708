"""Typed configuration: defaults, YAML (plain and ROS parameter files), strict keys and types."""
from pathlib import Path

import pytest
import yaml

from sam3_ros.core.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def test_overrides_nested_and_dotted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tracking": {"keep_alive": 12}, "detection.score_threshold": 0.4}))
    config = load_config(path, {"model.device": "cpu"})
    assert config.tracking.keep_alive == 12
    assert config.detection.score_threshold == 0.4
    assert config.model.device == "cpu"
    assert PipelineConfig().tracking.keep_alive == 30  # defaults untouched


def test_ros_parameter_file_layout_is_accepted(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"sam3": {"ros__parameters": {
        "tracking.max_tracks": 7, "image_topic": "/camera/image_raw"}}}))
    assert load_config(path).tracking.max_tracks == 7


@pytest.mark.parametrize("values, message", [
    ({"tracking.nope": 1}, "unknown"),
    ({"nope.x": 1}, "unknown"),
    ({"tracking.keep_alive": "ten"}, "expects int"),
    ({"tracking.keep_alive": True}, "expects int"),
    ({"output.publish_tentative": "maybe"}, "expects bool"),
])
def test_bad_keys_and_types_are_rejected(values, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig().updated(values)


def test_shipped_yaml_matches_code_defaults_and_loads():
    from sam3_ros.ros.params import all_parameters, split_parameters

    data = yaml.safe_load((REPO / "config" / "sam3.yaml").read_text())
    shipped = next(iter(data.values()))["ros__parameters"]
    defaults = {name: default for name, (default, _) in all_parameters().items()}
    # ROS cannot type an empty list from YAML, so empty-list defaults are left out of the file.
    assert shipped == {k: v for k, v in defaults.items() if v != []}
    node, config = split_parameters(shipped)
    assert config == load_config(REPO / "config" / "sam3.yaml") and node.image_topic == "image"


def test_every_parameter_has_a_description():
    from sam3_ros.ros.params import all_parameters

    assert all(len(description) > 10 for _, description in all_parameters().values())


# -- ranges, checked where the settings are declared (issue 15, items 5 and 9) ---------------------------------

@pytest.mark.parametrize("values, message", [
    ({"detection.score_threshold": 1.5}, "detection.score_threshold must be 0 <= x <= 1; got 1.5"),
    ({"detection.score_threshold": -0.2}, "detection.score_threshold must be 0 <= x <= 1; got -0.2"),
    ({"detection.nms_iou": 7.0}, "detection.nms_iou must be 0 <= x <= 1; got 7.0"),
    ({"detection.new_track_threshold": float("nan")}, "detection.new_track_threshold must be 0 <= x <= 1"),
    ({"tracking.match_iou": 1.01}, "tracking.match_iou must be 0 <= x <= 1"),
    ({"tracking.max_tracks": 0}, "tracking.max_tracks must be >= 1; got 0"),
    ({"tracking.max_tracks": -3}, "tracking.max_tracks must be >= 1; got -3"),
    ({"tracking.keep_alive": 0}, "tracking.keep_alive must be >= 1"),
    ({"memory.max_cond_frames": 0}, "memory.max_cond_frames must be >= 1"),
    ({"output.text_cache_size": 0}, "output.text_cache_size must be >= 1"),
    ({"tracking.confirm_hits": 20}, "tracking.confirm_hits (20) must be at most tracking.tentative_max_age (15)"),
    ({"model.device": "gpu0"}, "model.device must be auto, cpu, cuda or cuda:N; got 'gpu0'"),
    ({"model.device": "gpu"}, "model.device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ({"model.dtype": "int4"}, "model.dtype must be one of auto, float32, bfloat16, float16; got 'int4'"),
    ({"model.backend": "onnx"}, "did you mean 'onnxruntime'"),
    ({"trackng.max_tracks": 3}, "unknown configuration key 'trackng.max_tracks' (did you mean 'tracking.max_tracks'?)"),
])
def test_values_out_of_range_are_refused_with_the_reason(values, message):
    with pytest.raises(ValueError) as refused:
        PipelineConfig().updated(values)
    assert message in str(refused.value)


@pytest.mark.parametrize("values", [
    {"detection.score_threshold": 0.0}, {"detection.score_threshold": 1.0}, {"detection.score_threshold": 1},
    {"tracking.max_tracks": 1}, {"model.device": "cuda:3"}, {"model.device": "cpu"}, {"model.dtype": "bfloat16"},
    {"tracking.confirm_hits": 15}, {"tracking.confirm_hits": 20, "tracking.tentative_max_age": 20},
])
def test_values_at_the_edges_of_their_ranges_are_taken(values):
    config = PipelineConfig().updated(values)
    assert {k: config.flat()[k] for k in values} == values


def test_a_yaml_file_out_of_range_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sam3:\n  ros__parameters:\n    tracking.max_tracks: 0\n")
    with pytest.raises(ValueError, match=r"c\.yaml: tracking\.max_tracks must be >= 1"):
        load_config(path)


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("tracking: [1, 2\n", "is not valid YAML"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_a_missing_or_malformed_config_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=message) as refused:
        load_config(path)
    assert str(path) in str(refused.value)


@pytest.mark.parametrize("changes, message", [
    ({"queue_depth": 0}, "queue_depth must be >= 1"),
    ({"reliability": "reliabel"}, "did you mean 'reliable'"),
    ({"image_topic": ""}, "image_topic must be a ROS topic name"),
    ({"image_topic": "/camera//image"}, "image_topic must be a ROS topic name"),
    ({"diagnostics_period_s": 0.0}, "diagnostics_period_s must be > 0"),
    ({"camera_timeout_s": -1.0}, "camera_timeout_s must be > 0"),
    ({"sync_slop_s": -0.01}, "sync_slop_s must be >= 0"),
    ({"warmup_frames": -1}, "warmup_frames must be >= 0"),
    ({"detection.score_threshold": 1.5}, "detection.score_threshold must be 0 <= x <= 1"),
])
def test_node_parameter_changes_out_of_range_are_refused(changes, message):
    from sam3_ros.ros.params import all_parameters, parameter_change_refusal

    current = {name: default for name, (default, _) in all_parameters().items()}
    assert message in (parameter_change_refusal(current, changes) or "accepted")
    assert parameter_change_refusal(current, {"queue_depth": 1, "depth_topic": "", "image_topic": "~/image"}) is None
