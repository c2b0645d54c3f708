"""MessageTypes for rclpy's generated message classes (the node's runtime).

The converters in sam3_ros.io.messages give primitive arrays as numpy arrays; rclpy wants
``array.array`` for unbounded sequences, numpy arrays for fixed-size arrays, plain lists for
bool sequences and 1-byte ``bytes`` for ``byte`` fields. Fields a distribution's message
lacks (e.g. Jazzy-only Marker fields on Humble) are left out.
"""
from __future__ import annotations

import array
import importlib
from typing import Any

import numpy as np

_TYPECODES = {
    "int8": "b", "uint8": "B", "octet": "B", "char": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "float": "f", "double": "d",
}
_DTYPES = {
    "int8": np.int8, "uint8": np.uint8, "octet": np.uint8, "char": np.uint8, "int16": np.int16,
    "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "float": np.float32, "double": np.float64, "boolean": np.bool_,
}


def field_value(field_type: str, value: Any) -> Any:
    """Adapt a numpy array to what rclpy accepts for a field of ``field_type``
    (as given by ``get_fields_and_field_types``, e.g. 'sequence<uint32>', 'double[36]')."""
    if not isinstance(value, np.ndarray):
        return value
    if field_type.startswith("sequence<"):
        element = field_type[len("sequence<"):-1].split(",")[0].strip()
        if element == "boolean":
            return [bool(v) for v in value]
        if element not in _TYPECODES:
            raise TypeError(f"cannot store a numpy array in a field of type {field_type}")
        return array.array(_TYPECODES[element], np.ascontiguousarray(value, dtype=_DTYPES[element]).tobytes())
    element = field_type.split("[")[0]
    return np.asarray(value, dtype=_DTYPES.get(element, value.dtype))


class RclpyTypes:
    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def message_class(self, typename: str) -> type:
        """'pkg/msg/Name', or 'pkg/srv/Name_Request' / '_Response' for service halves."""
        if typename not in self._classes:
            package, kind, name = typename.split("/")
            module = importlib.import_module(f"{package}.{kind}")
            if kind == "srv":
                service, _, half = name.rpartition("_")
                self._classes[typename] = getattr(getattr(module, service), half)
            else:
                self._classes[typename] = getattr(module, name)
        return self._classes[typename]

    def new(self, typename: str, **fields: Any) -> Any:
        cls = self.message_class(typename)
        declared = cls.get_fields_and_field_types()
        return cls(**{name: field_value(declared[name], value) for name, value in fields.items() if name in declared})

    def sequence(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values)

    def byte(self, value: int) -> bytes:
        return bytes([int(value)])
