"""The README's Command reference against the parser: every option it lists exists in the
command it is listed under, every option of every command is listed, and a default it quotes
is the one the parser has (where the parser holds a default; those it resolves later, `None`
there, are said in words)."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from loftup.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference() -> dict[str, list[list[str]]]:
    """The section's tables: heading (``loftup eval seg|depth|normals|davis``) -> rows of cells."""
    text = README.read_text()
    start = text.index("\n## Command reference\n")
    section = text[start : text.index("\n## ", start + 1)]
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in section.splitlines():
        if line.startswith("### "):
            heading = line[4:].strip("` ")
            tables[heading] = []
        elif line.startswith("| `") and heading:
            tables[heading].append([cell.strip() for cell in line.strip("|").split(" | ")])
    return tables


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _parsers(heading: str) -> list[argparse.ArgumentParser]:
    """The parsers a heading covers: ``loftup world scenes|backbone|probe`` is three."""
    words = heading.split()
    assert words[0] == "loftup", heading
    parser = _subparsers(build_parser())[words[1]]
    subs = _subparsers(parser)
    if not subs:
        return [parser]
    return [subs[name] for name in words[2].split("|")]


def _options(parser) -> set[str]:
    return {
        flag
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        for flag in action.option_strings
    }


def _flags(cell: str) -> set[str]:
    return set(re.findall(r"`(--?[a-z0-9][a-z0-9-]*)", cell))


TABLES = _reference()
IDS = {"ids": lambda heading: " ".join(heading.split()[:2])}  # "loftup upsample"


def test_every_command_has_a_table():
    commands = set(_subparsers(build_parser()))
    listed = {heading.split()[1] for heading in TABLES}
    assert commands == listed
    for heading in TABLES:  # a command with tasks lists each of them
        parser = _subparsers(build_parser())[heading.split()[1]]
        if _subparsers(parser):
            assert set(heading.split()[2].split("|")) == set(_subparsers(parser)), heading


@pytest.mark.parametrize("heading", sorted(TABLES), **IDS)
def test_the_options_listed_are_the_commands_options(heading):
    listed = set().union(*(_flags(row[0]) for row in TABLES[heading]))
    parsed = set().union(*(_options(p) for p in _parsers(heading)))
    assert listed - parsed == set(), f"{heading}: listed, but not an option"
    assert parsed - listed == set(), f"{heading}: an option the README does not list"


def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def _unsaid_defaults(action, cell: str) -> list:
    """The parts of ``action``'s default that ``cell`` does not quote (a string in backticks, a
    number as a number: ``0.003`` or ``3e-3``); none for a switch or a default resolved later."""
    default = action.default
    values = list(default) if isinstance(default, (list, tuple)) else [default]
    unsaid = []
    for value in values:
        if value is None or isinstance(value, bool):
            continue
        said = f"`{value}`" in cell if isinstance(value, str) else float(value) in _numbers(cell)
        if not said:
            unsaid.append(value)
    return unsaid


@pytest.mark.parametrize("heading", sorted(TABLES), **IDS)
def test_the_defaults_quoted_are_the_parsers(heading):
    wrong = []
    for flags, default_cell, *_ in TABLES[heading]:
        for parser in _parsers(heading):
            for action in parser._actions:
                if _flags(flags) & set(action.option_strings):
                    unsaid = _unsaid_defaults(action, default_cell)
                    wrong += [
                        f"{flags}: the parser's {v!r}, README {default_cell!r}" for v in unsaid
                    ]
    assert not wrong, f"{heading}: " + "; ".join(wrong)


def test_every_command_in_the_readmes_shell_blocks_parses(capsys):
    """A command a user copies from a ```bash block (`loftup ...`, `.venv/bin/loftup ...`,
    `torchrun ... -m loftup ...`) is one the parser takes: an option renamed or removed fails
    here, not in the user's terminal."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found = re.search(r"(?:^|[\s/])loftup (.*)", line.split(" #")[0])
            if found:
                commands.append(found.group(1))
    assert len(commands) >= 20, commands
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command))
        except SystemExit as e:  # --help exits 0; an unknown option or value exits 2
            assert e.code == 0, f"loftup {command}: {capsys.readouterr().err}"
