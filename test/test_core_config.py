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
