"""Parse ROS interface files with the real ROS 2 IDL tools; run by test_msgdefs.py with /usr/bin/python3.

stdin: {"files": [[package, package_dir, relative_path], ...], "known_types": ["pkg/Name", ...]}
Each .msg/.srv is parsed by rosidl_adapter (and its field types checked against known_types plus
the files themselves), converted to .idl, and the .idl parsed by rosidl_parser.
stdout: {"pkg/msg/Name" or "pkg/srv/Name_Request": {"constants": [...], "fields": [[name, type], ...]}}
with IDL type spellings: uint32, double, boolean, string, pkg/msg/Name, sequence<T>, T[N].
"""
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from rosidl_adapter.msg import convert_msg_to_idl
from rosidl_adapter.parser import BaseType, parse_message_file, parse_service_file, validate_field_types
from rosidl_adapter.srv import convert_srv_to_idl
from rosidl_parser import definition as idl
from rosidl_parser.parser import parse_idl_file


def type_name(typ) -> str:
    if isinstance(typ, idl.Array):
        return f"{type_name(typ.value_type)}[{typ.size}]"
    if isinstance(typ, idl.AbstractSequence):
        return f"sequence<{type_name(typ.value_type)}>"
    if isinstance(typ, idl.NamespacedType):
        return "/".join([*typ.namespaces, typ.name])
    if isinstance(typ, idl.AbstractString):
        return "string"
    return typ.typename


def describe(message) -> dict:
    return {
        "constants": [c.name for c in message.constants],
        "fields": [[m.name, type_name(m.type)] for m in message.structure.members],
    }


def main() -> None:
    request = json.load(sys.stdin)
    files = [(pkg, Path(folder), Path(rel)) for pkg, folder, rel in request["files"]]
    known = [BaseType(name) for name in request["known_types"]]
    known += [BaseType(f"{pkg}/{rel.stem}") for pkg, _, rel in files if rel.suffix == ".msg"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        for pkg, folder, rel in files:
            is_msg = rel.suffix == ".msg"
            spec = (parse_message_file if is_msg else parse_service_file)(pkg, str(folder / rel))
            validate_field_types(spec, known)
            target = Path(tmp) / pkg / rel.parent
            target.mkdir(parents=True, exist_ok=True)
            convert = convert_msg_to_idl if is_msg else convert_srv_to_idl
            idl_file = parse_idl_file(idl.IdlLocator(target, convert(folder, pkg, rel, target).name))
            if is_msg:
                (message,) = idl_file.content.get_elements_of_type(idl.Message)
                out[f"{pkg}/msg/{rel.stem}"] = describe(message)
            else:
                (service,) = idl_file.content.get_elements_of_type(idl.Service)
                out[f"{pkg}/srv/{rel.stem}_Request"] = describe(service.request_message)
                out[f"{pkg}/srv/{rel.stem}_Response"] = describe(service.response_message)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
