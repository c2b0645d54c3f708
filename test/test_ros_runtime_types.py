"""What the node hands rclpy: field adaptation for rclpy's generated classes, and TF rotations."""
import array

import numpy as np
import pytest

from sam3_ros.core.depth import quaternion_matrix
from sam3_ros.ros.rclpy_types import field_value


@pytest.mark.parametrize("field_type, dtype, typecode", [
    ("sequence<uint32>", np.uint32, "I"), ("sequence<uint8>", np.uint8, "B"), ("sequence<double>", np.float64, "d"),
    ("sequence<float>", np.float32, "f"), ("sequence<int16>", np.int16, "h"),
])
def test_unbounded_sequences_become_typed_arrays(field_type, dtype, typecode):
    values = np.arange(5, dtype=dtype)
    out = field_value(field_type, values)
    assert isinstance(out, array.array) and out.typecode == typecode and list(out) == values.tolist()


def test_bool_sequences_become_lists_and_fixed_arrays_stay_numpy():
    assert field_value("sequence<boolean>", np.array([True, False])) == [True, False]
    fixed = field_value("double[36]", np.zeros(36, np.float32))
    assert isinstance(fixed, np.ndarray) and fixed.dtype == np.float64 and fixed.shape == (36,)
    assert field_value("string", "x") == "x" and field_value("uint32", 7) == 7


def test_sequences_of_messages_cannot_take_arrays():
    with pytest.raises(TypeError):
        field_value("sequence<vision_msgs/Detection2D>", np.zeros(2))


@pytest.mark.parametrize("axis, angle", [((0, 0, 1), np.pi / 2), ((1, 0, 0), 0.3), ((1, 1, 1), 2.0)])
def test_quaternion_matrix_matches_rodrigues(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    q = (*(axis * np.sin(angle / 2)), np.cos(angle / 2))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rodrigues = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    np.testing.assert_allclose(quaternion_matrix(*q), rodrigues, atol=1e-12)
