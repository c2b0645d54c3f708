"""The packaged interface definitions: our own (vision_msgs field-only, equal to the canonical ones), valid for the ROS 2 IDL tools, registered in rosbags."""
import filecmp
import json
import subprocess
from pathlib import Path

import pytest
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from sam3_ros.io.ros_types import INTERFACES_PACKAGE, packaged_definitions, typestore

REPO = Path(__file__).resolve().parents[1]
MSGDEFS = REPO / "sam3_ros" / "msgdefs"
SHARED_VISION_MSGS = Path(__file__).resolve().parents[2] / "shared" / "ros_msgs" / "vision_msgs"
SYSTEM_PYTHON = "/usr/bin/python3"


def files_under(folder: Path, *patterns: str) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for pattern in patterns for p in folder.glob(pattern)}


def assert_same_files(copies: dict[str, Path], originals: dict[str, Path]) -> None:
    assert sorted(copies) == sorted(originals)
    for name, original in originals.items():
        assert filecmp.cmp(copies[name], original, shallow=False), f"{name} differs from {original}"


def test_interfaces_are_copies_of_the_repository_definitions():
    originals = {**files_under(REPO, "msg/*.msg"), **files_under(REPO, "srv/*.srv")}
    assert originals, "the repository has no msg/ or srv/ files"
    assert_same_files(files_under(MSGDEFS / INTERFACES_PACKAGE, "msg/*", "srv/*"), originals)


def canonical_vision_msgs_store():
    """A Jazzy typestore with vision_msgs registered from the canonical files in ../shared."""
    if not SHARED_VISION_MSGS.is_dir():
        pytest.skip(f"canonical vision_msgs definitions not found at {SHARED_VISION_MSGS}")
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted((SHARED_VISION_MSGS / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def test_vision_msgs_carry_no_upstream_files():
    ours = MSGDEFS / "vision_msgs"
    assert not (ours / "LICENSE").exists()
    for path in ours.glob("msg/*.msg"):
        assert "#" not in path.read_text(), f"{path.name}: our definitions are field-only (no upstream comments)"


def test_vision_msgs_fields_equal_the_canonical_definitions():
    canonical, ours = canonical_vision_msgs_store(), typestore()
    names = sorted(n for n in canonical.fielddefs if n.startswith("vision_msgs/"))
    assert names == sorted(n for n in ours.fielddefs if n.startswith("vision_msgs/"))
    for name in names:
        assert ours.fielddefs[name] == canonical.fielddefs[name], name


def test_vision_msgs_type_hashes_equal_the_canonical_ones():
    canonical, ours = canonical_vision_msgs_store(), typestore()
    for name in (n for n in canonical.fielddefs if n.startswith("vision_msgs/")):
        assert ours.hash_rihs01(name) == canonical.hash_rihs01(name), name


def test_package_resources_list_every_definition():
    names = {name for name, _ in packaged_definitions()}
    on_disk = {f"{p.parent.parent.name}/{p.parent.name}/{p.stem}" for p in MSGDEFS.glob("*/*/*.*")}
    assert names == on_disk
    assert {"vision_msgs/msg/Detection2DArray", f"{INTERFACES_PACKAGE}/srv/SetConcepts"} <= names


# -- the ROS 2 IDL tools (Debian python3-rosidl, for the system interpreter) -------------------------


IDL_PRIMITIVES = {"bool": "boolean", "byte": "octet", "char": "uint8", "float32": "float", "float64": "double"}


def idl_type(desc) -> str:
    """A rosbags field description in the IDL spelling rosidl_check.py reports."""
    kind, args = desc
    if kind == Nodetype.NAME:
        return args
    if kind == Nodetype.BASE:
        name = args[0]
        return IDL_PRIMITIVES.get(name, name)
    inner, count = args
    return f"{idl_type(inner)}[{count}]" if kind == Nodetype.ARRAY else f"sequence<{idl_type(inner)}>"


@pytest.fixture(scope="module")
def rosidl_parsed() -> dict:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import rosidl_adapter, rosidl_parser"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot import rosidl_adapter and rosidl_parser "
                    "(Debian package python3-rosidl)")
    files = [[package.name, str(package), str(path.relative_to(package))]
             for package in sorted(MSGDEFS.iterdir()) for path in sorted(package.glob("*/*.*"))
             if path.suffix in (".msg", ".srv")]
    known = sorted({name.replace("/msg/", "/") for name in typestore().fielddefs if "/msg/" in name})
    request = json.dumps({"files": files, "known_types": known})
    run = subprocess.run([SYSTEM_PYTHON, str(Path(__file__).with_name("rosidl_check.py"))], input=request,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_every_definition_parses_with_the_ros2_idl_tools(rosidl_parsed):
    expected = set()
    for name, _ in packaged_definitions():
        expected |= {f"{name}_Request", f"{name}_Response"} if "/srv/" in name else {name}
    assert set(rosidl_parsed) == expected


def test_rosbags_types_agree_with_rosidl(rosidl_parsed):
    store = typestore()
    for name, parsed in rosidl_parsed.items():
        constants, fields = store.fielddefs[name]
        assert [c[0] for c in constants] == parsed["constants"], name
        assert [[field, idl_type(desc)] for field, desc in fields] == parsed["fields"], name


def test_vision_msgs_built_by_rosidl_have_the_canonical_type_hashes():
    """The package colcon built from our definitions (tools/ros2_underlay.py) hashes like upstream."""
    built = REPO / ".ros2" / "install" / "share" / "vision_msgs" / "msg"
    if not built.is_dir():
        pytest.skip(f"no vision_msgs built by rosidl at {built}: run `make ros2`")
    canonical = canonical_vision_msgs_store()
    names = [n for n in canonical.fielddefs if n.startswith("vision_msgs/")]
    for name in names:
        description = json.loads((built / f"{name.split('/')[-1]}.json").read_text())
        hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
        assert hashes[name] == canonical.hash_rihs01(name), name
