"""Every `sam3-ros` command line of the README against the argument parser, both ways (issue 15):
each option the README shows for a subcommand exists there, and each option of each subcommand
is shown in the README."""
import argparse
import re
import shlex
from pathlib import Path

import pytest

from sam3_ros.cli import _parser, main

README = Path(__file__).resolve().parents[1] / "README.md"
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-v)(?![\w-])")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def parser_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def undocumented(parser: argparse.ArgumentParser, shown: set[str]) -> list[str]:
    """Options of ``parser`` (but --help) none of whose spellings the README shows."""
    return [a.option_strings[-1] for a in parser._actions
            if a.option_strings and "--help" not in a.option_strings and not shown & set(a.option_strings)]


def readme_commands() -> list[str]:
    """Every `sam3-ros ...` command of the README: code block lines (with their continuation lines,
    after a backslash or indented under them) and inline code spans."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        current = None
        for line in block.splitlines():
            continues = current is not None and (current.endswith("\\") or line.startswith(" "))
            if continues:
                current = current.rstrip("\\") + " " + line.strip()
                continue
            if current:
                commands.append(current)
            current = line.split("  #")[0].strip() if "sam3-ros " in line else None
        if current:
            commands.append(current)
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [span for span in re.findall(r"`([^`\n]+)`", without_blocks) if "sam3-ros " in span]
    return commands


def by_subcommand() -> dict[str, set[str]]:
    shown: dict[str, set[str]] = {}
    for command in readme_commands():
        words = command[command.index("sam3-ros "):].split()
        name = words[1] if len(words) > 1 and re.fullmatch(r"[a-z][a-z-]*", words[1]) else ""  # "..." too
        shown.setdefault(name, set()).update(OPTION.findall(" ".join(words[1:])))
    return shown


def test_the_readme_shows_sam3_ros_commands():
    assert {"run", "demo", "export", "build-engines", "bench"} <= set(by_subcommand())


def test_every_option_the_readme_shows_exists():
    parsers, shown = subparsers(), by_subcommand()
    top = parser_options(_parser())
    assert set(shown) <= {"", *parsers}, f"the README shows unknown commands: {set(shown) - {'', *parsers}}"
    for name, options in shown.items():
        known = top if name == "" else parser_options(parsers[name]) | top
        assert options <= known, f"sam3-ros {name}: the README shows {sorted(options - known)}, unknown to the parser"


def test_every_option_of_every_command_is_in_the_readme():
    shown = by_subcommand()
    for name, parser in subparsers().items():
        missing = undocumented(parser, shown.get(name, set()))
        assert not missing, f"sam3-ros {name}: {missing} are not in the README"
    assert not undocumented(_parser(), set().union(*shown.values()))  # --version, -v


@pytest.mark.parametrize("command", ["--version", "run --help", "demo --help", "export --help",
                                     "build-engines --help", "bench --help"])
def test_version_and_help_exit_zero(command, capsys):
    with pytest.raises(SystemExit) as done:
        main(shlex.split(command))
    assert done.value.code == 0
    assert capsys.readouterr().out.strip()


def test_every_option_has_help_text():
    for name, parser in subparsers().items():
        silent = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
        assert not silent, f"sam3-ros {name}: no help text for {silent}"
