"""A command a refusal prints, pasted into bash as the command line prints it: for the tests that
its path names the file, whatever the file's name holds (:data:`ODD`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

#: Names that a message escapes (a newline) or that a shell reads in quotes (a single quote).
ODD = ["new\nline", "it's"]

#: A path as a command quotes it: bash's $'...', single quotes (shlex.quote's, with '"'"' for
#: a quote), or bare.
_WORD = r"""(?:\$'(?:[^'\\]|\\.)*'|'[^']*'|"[^"]*"|[^\s'"();`])+"""

needs_bash = pytest.mark.skipif(
    shutil.which("bash") is None, reason="the command is pasted into bash"
)


def pasted(said: str, start: str) -> str:
    """The command in ``said`` (a message as the command line prints it) that begins with
    ``start`` ("rm ", "chmod -R g+rwX "), to the end of the path after it."""
    found = re.search(re.escape(start) + _WORD, said)
    assert found, f"no {start!r} command in {said!r}"
    return found.group()


def bash(command: str) -> subprocess.CompletedProcess:
    """``command`` run by bash, as a user pastes it; fails with what bash said unless it
    succeeded."""
    done = subprocess.run(
        ["bash", "-c", command], env={**os.environ, "LC_ALL": "C.UTF-8"}, capture_output=True
    )
    assert done.returncode == 0, (command, done.stderr)
    return done


def named(command: str, start: str) -> bytes:
    """The path that the ``command`` beginning with ``start`` names, as bash reads it: a file
    that exists (``ls -d``), its name's bytes."""
    word = command.removeprefix(start)
    return bash(f"ls -d -- {word} >/dev/null && printf %s {word}").stdout


def paste(said: str, start: str, path) -> None:
    """Run the command of ``said`` that begins with ``start`` in bash as pasted, once it is
    seen to name ``path``."""
    command = pasted(said, start)
    assert named(command, start) == os.fsencode(path)
    bash(command)
