"""The README's claims about the node, checked against the node itself (issue 15): its topic,
service, action and parameter tables equal what the running sam3_node advertises (names and
types), and every parameter's documented range is what `set_parameters` enforces.

The tables are read from README.md as a user reads them; the node is the real executable in the
PyPI runtime (or a sourced ROS 2), configured and active with camera info and depth, so that every
publisher and subscription exists.
"""
from __future__ import annotations

import math
import re
import time

import pytest

from ros_runtime import REPO, SKIP_REASON, NodeProcess, RosClient

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from rcl_interfaces.msg import ParameterType  # noqa: E402  (after the skip: needs the runtime)
from rcl_interfaces.srv import DescribeParameters, GetParameterTypes, ListParameters  # noqa: E402

NAME = "sam3_claims"
NODE = f"/{NAME}"
INPUTS = {"image_topic": "/claims_cam/image", "camera_info_topic": "/claims_cam/camera_info",
          "depth_topic": "/claims_cam/depth"}
# What every (lifecycle) node has, not documented by us.
PARAMS = {"model.tiny": True, "model.device": "cpu", "warmup_frames": 1, **INPUTS}
ROS_TOPICS = {"/rosout", "/parameter_events", f"{NODE}/transition_event"}
ROS_SERVICES = {f"{NODE}/{s}" for s in (
    "change_state", "get_state", "get_available_states", "get_available_transitions", "get_transition_graph",
    "describe_parameters", "get_parameter_types", "get_parameters", "list_parameters", "set_parameters",
    "set_parameters_atomically", "get_type_description")}
ROS_PARAMETERS = {"use_sim_time", "start_type_description_service"}
README_TYPES = {"bool": ParameterType.PARAMETER_BOOL, "integer": ParameterType.PARAMETER_INTEGER,
                "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
                "string array": ParameterType.PARAMETER_STRING_ARRAY}


# -- the README, as a user reads it ---------------------------------------------------------------------------

def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", text, re.S | re.M)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def table_rows(section: str, first_header: str) -> list[list[str]]:
    """The rows of the table of ``section`` whose first column is headed ``first_header``."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def resolve(name: str) -> str:
    return name.replace("~", NODE, 1) if name.startswith("~") else name


def readme_outputs() -> dict[str, str]:
    return {resolve(code(row[0])[0]): code(row[1])[0] for row in table_rows(readme_section("Topics"), "topic")}


def readme_inputs() -> dict[str, str]:
    """Input parameter -> message type; an image topic ending in `compressed` is the other type."""
    inputs = {}
    for row in table_rows(readme_section("Topics"), "input (parameter)"):
        parameter = next(c for c in code(row[0]) if c.endswith("_topic"))
        inputs[parameter] = code(row[1])[0]
    return inputs


def readme_services() -> dict[str, str]:
    return {resolve(code(row[0])[0]): code(row[1])[0] for row in table_rows(readme_section("Services"), "service")}


def readme_actions() -> dict[str, str]:
    return {resolve(code(row[0])[0]): code(row[1])[0] for row in table_rows(readme_section("Actions"), "action")}


def readme_parameters() -> dict[str, dict]:
    rows = table_rows(readme_section("Parameters"), "parameter")
    return {code(row[0])[0]: {"type": row[1], "default": code(row[2])[0], "accepts": row[3]} for row in rows}


# -- the node --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    client = RosClient("sam3_claims_client")
    yield client
    client.close()


@pytest.fixture(scope="module")
def node(client):
    with NodeProcess(NAME, PARAMS) as process:
        assert client.transition(NODE, "configure") and client.transition(NODE, "activate")
        yield process
        assert process.alive, process.output()[-3000:]


def graph(lister, client, timeout_s: float = 20.0) -> dict[str, str]:
    """name -> type of what ``lister`` reports for the node, once discovery has settled."""
    deadline, found = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        now = {name: types[0] for name, types in lister(NAME, "/")}
        if now and now == found:
            return now
        found = now
        time.sleep(1.0)
    return found


def test_the_readme_topic_table_is_what_the_node_publishes(client, node):
    published = graph(client.node.get_publisher_names_and_types_by_node, client)
    ours = {name: kind for name, kind in published.items() if name not in ROS_TOPICS and "/_action/" not in name}
    assert ours == readme_outputs()


def test_the_readme_input_table_is_what_the_node_subscribes(client, node):
    subscribed = graph(client.node.get_subscriber_names_and_types_by_node, client)
    documented = {INPUTS[parameter]: kind for parameter, kind in readme_inputs().items()}
    assert subscribed == documented


def test_the_readme_service_and_action_tables_are_what_the_node_serves(client, node):
    from rclpy.action import get_action_server_names_and_types_by_node

    served = graph(client.node.get_service_names_and_types_by_node, client)
    ours = {name: kind for name, kind in served.items() if name not in ROS_SERVICES and "/_action/" not in name}
    assert ours == readme_services()
    actions = {name: types[0] for name, types in get_action_server_names_and_types_by_node(client.node, NAME, "/")}
    assert actions == readme_actions()


def test_the_readme_parameter_table_is_what_the_node_declares(client, node):
    documented = readme_parameters()
    listed = set(client.call(ListParameters, f"{NODE}/list_parameters", ListParameters.Request()).result.names)
    assert listed - ROS_PARAMETERS == set(documented)
    names = sorted(documented)
    kinds = client.call(GetParameterTypes, f"{NODE}/get_parameter_types", GetParameterTypes.Request(names=names)).types
    values = client.get_parameters(NODE, names)
    for name, kind in zip(names, kinds):
        claim = documented[name]
        if name in ("prompts", "cameras"):  # the README says: an empty list cannot carry a type
            assert kind in (ParameterType.PARAMETER_NOT_SET, ParameterType.PARAMETER_BYTE_ARRAY) and not values[name]
            continue
        assert kind == README_TYPES[claim["type"]], name
        if name in PARAMS:
            continue  # set for this test
        default = {"true": True, "false": False, '""': ""}.get(claim["default"], claim["default"])
        assert str(values[name]) == str(default), name
    described = client.call(DescribeParameters, f"{NODE}/describe_parameters",
                            DescribeParameters.Request(names=names)).descriptors
    for name, descriptor in zip(names, described):  # `ros2 param describe` shows the range
        accepts = documented[name]["accepts"].strip("`")
        assert descriptor.additional_constraints == ("" if accepts == "any" else accepts), name


# -- every documented range is what set_parameters enforces ----------------------------------------------------

def probes(name: str, claim: dict) -> tuple[list, list]:
    """Values the README's "accepted values" cell admits, and values it refuses."""
    accepts, kind = claim["accepts"].strip("`"), claim["type"]
    number = float if kind == "double" else int
    step = 0.01 if kind == "double" else 1
    if match := re.fullmatch(r"(-?[\d.]+) (<=|<) x <= (-?[\d.]+)", accepts):
        low, op, high = number(float(match[1])), match[2], number(float(match[3]))
        inside = [high] + ([low] if op == "<=" else [number(low + step)])
        return inside, [number(low - step) if op == "<=" else low, number(high + step), math.nan][:2 + (kind == "double")]
    if match := re.fullmatch(r"(>=|>) (-?[\d.]+)", accepts):
        low = number(float(match[2]))
        first = low if match[1] == ">=" else number(low + step)
        return [first, number(first * 10 + 5)], [number(low - step) if match[1] == ">=" else low]
    if accepts.startswith("one of "):
        choices = accepts[len("one of "):].split(", ")
        return choices, ["nonsense", choices[0].upper() + "x"]
    if accepts == "auto, cpu, cuda or cuda:N":
        return ["auto", "cpu", "cuda", "cuda:1"], ["gpu", "gpu0", "cuda:x", "CPU"]
    if accepts.startswith("a ROS topic name"):
        allowed_empty = "or empty" in accepts
        return (["cam/image", "/cam/color/image_raw"] + [""] * allowed_empty,
                ["/cam//image", "9cam", "cam image"] + [""] * (not allowed_empty))
    if accepts == "distinct names of letters, digits and _, not starting with a digit":
        return [["head", "wrist_2"]], [["head", "head"], ["9cam"], ["head cam"]]
    assert accepts == "any", f"{name}: the test cannot read the README's accepted values {accepts!r}"
    return {"bool": [True, False], "string": ["anything"], "integer": [7], "double": [0.25],
            "string array": [["a", "b"]]}[kind], []


def test_every_documented_range_is_what_set_parameters_enforces(client, node):
    documented = readme_parameters()
    defaults = client.get_parameters(NODE, sorted(documented))
    wrong = []
    for name, claim in documented.items():
        inside, outside = probes(name, claim)
        for value in inside:
            extra = {"tracking.confirm_hits": 1} if name == "tracking.tentative_max_age" else {}
            for key, v in extra.items():
                client.set_parameters(NODE, {key: v})
            result = client.set_parameters(NODE, {name: value})[0]
            if not result.successful:
                wrong.append(f"{name}={value!r} refused: {result.reason}")
            client.set_parameters(NODE, {name: defaults[name], **{k: defaults[k] for k in extra}})
        for value in outside:
            result = client.set_parameters(NODE, {name: value})[0]
            if result.successful:
                wrong.append(f"{name}={value!r} accepted")
                client.set_parameters(NODE, {name: defaults[name]})
            elif name not in result.reason:
                wrong.append(f"{name}={value!r} refused without naming it: {result.reason}")
    assert not wrong, "\n".join(wrong)
    assert client.get_parameters(NODE, sorted(documented)) == defaults


def test_the_documented_cross_check_confirm_hits_at_most_tentative_max_age(client, node):
    result = client.set_parameters(NODE, {"tracking.confirm_hits": 16})[0]  # default tentative_max_age: 15
    assert not result.successful and "tentative_max_age" in result.reason
