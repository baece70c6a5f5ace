"""Output paths checked before any work: a file or a folder that a run will write, refused at
once (naming the option that gave it) when it is a folder where a file was meant, a file where
a folder was meant, or lies where no file can be made, rather than after minutes of work.

Imports nothing of loftup but its errors, so that every part (data, world, extract, eval, the
command line) can check its outputs without knowing the others.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a file or a folder)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (made first where missing), or None."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    try:  # what writing will do: a file in it (os.access says yes to root on a read-only disk)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".loftup-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        return f"{base} cannot be written ({e.strerror or e})"
    return None


def check_file_output(
    path: str, option: str, fix: str = "choose another path", example: str = "out"
) -> None:
    """UsageError unless the file ``path`` (given as ``option``) can be written: it is not a
    folder (``example``: the file name the error suggests in it), and its folder exists or can
    be made, and takes new files."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path}/{example}")
    problem = _folder_problem(target.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}; {fix}")


def check_folder_output(path: str, option: str, alternative: str = "") -> None:
    """UsageError unless the folder ``path`` (given as ``option``) exists or can be made and
    takes new files."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path} is a file; give a folder")
    problem = _folder_problem(target)
    if problem:
        raise UsageError(
            f"{option} {path} cannot be written: {problem}; choose another folder{alternative}"
        )
