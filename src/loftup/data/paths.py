"""A path given from Python or the command line, its leading ``~`` read as the home folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError


def home_expanded(path: str | os.PathLike, what: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` made the home folder (``Path.expanduser``), or
    a one-line UsageError naming ``what`` (e.g. "data folder") and the path where there is no
    such home (``~user`` of no user of this machine, or ``~`` with HOME unset), for which
    ``Path.expanduser`` raised a bare RuntimeError."""
    given = Path(os.fspath(path))
    try:
        return given.expanduser()
    except RuntimeError:
        head = given.parts[0]
        raise UsageError(
            f"{what} {os.fspath(path)}: {head} is no home folder ({no_home_why(head)}); give "
            "the path without it, e.g. its absolute path"
        ) from None


def no_home_why(head: str) -> str:
    """Why ``head`` (``~`` or ``~user``) names no home folder, for a message."""
    if head != "~":
        return f"no user {head[1:]} on this machine"
    return "HOME is not set, nor is a home recorded for this user"
