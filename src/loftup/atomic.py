"""Files are written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def temp_beside(path: str | os.PathLike) -> str:
    """A new empty temporary file in ``path``'s folder (made if missing), named after it and
    hidden (``.name.XXXX.tmp``): a rename onto ``path`` then replaces it in one step."""
    path = Path(path)
    if path.is_dir():  # the rename would fail after the work, naming the temporary file
        raise IsADirectoryError(
            errno.EISDIR, "is a folder; a file name was expected here", str(path)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``.

    A crash or an exception leaves ``path`` as it was (absent or the previous version) and no
    temporary file behind.
    """
    tmp = temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)
