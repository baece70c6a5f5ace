"""Files are written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import BrokenFileError
from .escaping import printable
from .read_refusal import read_refused


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``os.umask`` sets it
    too, which would race with other threads); read once, at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: What a new file's mode is (``0o666`` less the umask): a temporary file is made private
#: (``0o600``) and is given this before it takes its final name, as ``open`` would have made it.
FILE_MODE = 0o666 & ~_umask()

#: What a new folder's mode is (``0o777`` less the umask): ``tempfile.mkdtemp`` makes it
#: private (``0o700``), which a folder that takes its final name by a rename must not stay.
FOLDER_MODE = 0o777 & ~_umask()


#: The ending of :func:`temp_beside`'s files (hidden, ``.NAME.XXXX.tmp``).
TEMP_SUFFIX = ".tmp"


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`temp_beside` under ``folder`` (searched recursively): what
    a process killed before its rename (``kill -9``, a lost node) left behind."""
    import re

    folder = Path(folder)
    if not folder.is_dir():
        return []
    # mkstemp's names only (.NAME. + 8 of its characters + .tmp): a user's own ".notes.tmp"
    # in the folder is none of ours
    ours = re.compile(rf"\..+\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}")
    found = folder.rglob(f".*{TEMP_SUFFIX}")
    return [p for p in found if ours.fullmatch(p.name) and p.is_file() and not p.is_symlink()]


#: The characters of a temporary file's 8 random ones (``tempfile.mkstemp``'s, which
#: :func:`leftovers` and the clean-ups of killed runs look for).
_NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def temp_beside(path: str | os.PathLike, *, into: list | None = None) -> str:
    """A new empty temporary file in ``path``'s folder (made if missing), named after it and
    hidden (``.name.XXXX.tmp``), with the mode of a new file (:data:`FILE_MODE`): a rename onto
    ``path`` then replaces it in one step.

    ``into``: a list its name is appended to before the file is made, for whoever removes
    them on an error (:func:`remove_temps`): a SIGTERM or Ctrl-C between the making and the
    return (whose name then reached no one) left the file behind."""
    import secrets

    path = Path(path)
    if path.is_dir():  # the rename would fail after the work, naming the temporary file
        raise IsADirectoryError(
            errno.EISDIR, "is a folder; a file name was expected here", str(path)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # the name cut to 200 bytes: with the dots, the 8 random characters and the suffix, a name
    # that the file system takes (255 bytes) must not make a temporary name it refuses
    name = os.fsdecode(os.fsencode(path.name)[:200])
    made = [] if into is None else into
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(tempfile.TMP_MAX):
        chars = "".join(secrets.choice(_NAME_CHARACTERS) for _ in range(8))
        tmp = os.path.join(path.parent, f".{name}.{chars}{TEMP_SUFFIX}")
        made.append(tmp)  # named before it is made
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # another's: not ours to remove
            made.remove(tmp)
            continue
        except OSError as e:  # named by the file asked for, not by a temporary name never made
            made.remove(tmp)
            raise OSError(e.errno, e.strerror, str(path)) from None
        try:
            os.fchmod(fd, FILE_MODE)  # the mode any new file gets here, not 0o600
        finally:
            os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path))


def remove_temps(names: list) -> None:
    """Remove the temporary files ``names`` lists (:func:`temp_beside`'s ``into``) that are
    there, emptying it."""
    while names:
        try:
            os.unlink(names[-1])
        except FileNotFoundError:
            pass
        names.pop()


def _fsync(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Flush ``path``'s data (or a folder's entries) to the disk. A folder that cannot be
    opened or synced (some file systems refuse) is left to the system: its file is already
    safe, only the new name might be lost, and then the old file is still there."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the complete temporary file ``tmp`` onto ``path`` so that a power cut cannot
    leave ``path`` empty or part-written: the data is flushed to the disk before the rename
    (without it, a file system may write the new name first), and the rename after it."""
    _fsync(tmp)
    try:
        os.replace(tmp, path)
    except OSError as e:  # named by the file asked for (os.replace names the temporary one)
        raise OSError(e.errno, e.strerror, os.fspath(path)) from None
    _fsync(Path(path).parent, folder=True)


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], object], *, follow_links: bool = False
) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``.

    A crash, a power cut or an exception leaves ``path`` as it was (absent or the previous
    version) or complete, and no temporary file behind (a killed process leaves one, which
    :func:`leftovers` finds).

    ``path`` a symbolic link: by default the link is replaced by the new file (never the file
    it names: a Hugging Face cache's snapshot files are links to shared, content-named blobs,
    and a run folder's temporary files stay where :func:`leftovers` looks). ``follow_links``
    (a file the user named, such as ``--json``): the link stays and the file it names is
    replaced (made, for a link to nothing yet), as a shell's ``>`` would write it.
    """
    if follow_links and os.path.islink(path):
        path = os.path.realpath(path)
    made: list[str] = []
    try:  # (from before the file is made: an interruption anywhere removes it)
        tmp = temp_beside(path, into=made)
        write(tmp)
        # a writer may put a new file in tmp's place (safetensors' save_file does, 0o600)
        os.chmod(tmp, FILE_MODE)
        replace_durably(tmp, path)
    except BaseException:
        remove_temps(made)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, follow_links: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (``follow_links``: see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, follow_links=follow_links)


def _finite(obj):
    """NaN and infinities -> None, recursively: strict JSON, which every reader accepts."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj, *, sort_keys: bool = False) -> str:
    """``obj`` as indented strict JSON (NaN and infinities as ``null``), what
    :func:`write_json` writes (less its final newline)."""
    return json.dumps(_finite(obj), indent=2, sort_keys=sort_keys, allow_nan=False)


def write_json(
    path: str | os.PathLike, obj, *, sort_keys: bool = False, follow_links: bool = False
) -> Path:
    """Write ``obj`` as indented strict JSON (NaN and infinities as ``null``) atomically
    (``follow_links``: see :func:`atomic_write`); returns the path."""
    path = Path(path)
    text = json_text(obj, sort_keys=sort_keys) + "\n"
    atomic_write_bytes(path, text.encode(), follow_links=follow_links)
    return path


def read_json_object(
    path: str | os.PathLike, what: str = "record", another: str = ""
) -> dict | None:
    """The JSON object a record file holds (such as :func:`write_json` writes); None if there
    is no file. A :class:`loftup.errors.BrokenFileError` (a ValueError) naming the file and the
    problem if it cannot be read or holds something other than an object; the caller adds what
    to do (each command's fix differs: another --out, --resume left out, ...). One this user
    may not read is no broken file for a caller to delete or write over: a
    :class:`loftup.errors.PathPermissionError` (no ValueError) naming ``what`` it is, its mode
    and the fix (:func:`loftup.read_refusal.read_refused`), and ``another``: the option that
    chose the folder of a record that is loftup's own output ("-o"), another one of which is
    the other fix."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except PermissionError as e:  # it was "cannot be read ([Errno 13] ...)", to delete
        raise read_refused(path, e, what, another=another) or e from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BrokenFileError(f"{path} cannot be read ({printable(str(e))})") from None
    if not isinstance(obj, dict):
        raise BrokenFileError(
            f"{path} cannot be read (a JSON object was expected, not {type(obj).__name__})"
        )
    return obj
