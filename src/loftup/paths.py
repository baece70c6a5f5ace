"""Paths checked before any work: one the user gave that lies where they may not look
(:func:`check_visible`), and output paths: a file or a folder that a run will write, refused
at once (naming the option that gave it) when it is a folder where a file was meant, a file
where a folder was meant, a link to nothing, or lies where no file can be made, rather than
after minutes of work. Every command
and library call that writes a folder checks it here (:func:`check_folder_output`), so that
each says the same thing about the same mistake.

A file the user may not read is said by :mod:`loftup.read_refusal` (:func:`read_refused`,
importable from here too).

Imports nothing of loftup but its errors, :mod:`loftup.listing` and
:mod:`loftup.read_refusal`, so that every part (data, world, extract, eval, the command line)
can check its outputs without knowing the others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import PathPermissionError, UsageError
from .escaping import printable
from .listing import hidden, permission_denied, special_at, where_it_leads
from .listing import in_a_loop as _in_a_loop
from .read_refusal import read_refused  # noqa: F401  (importable from here, where it was)


def check_visible(
    path: str | os.PathLike, what: str = "", other: str | None = None, to_make: bool = False
) -> None:
    """A :class:`PathPermissionError` where ``path``, one the user gave (``what`` it is:
    "image", "--config"), lies in a folder this user may not search (links followed), naming
    the folder and the fix (:func:`loftup.listing.permission_denied`): looked at with pathlib
    on Python 3.11, it was a bare PermissionError, and with os.path "no such file". Nothing
    for any other path, there or not (one os.stat), nor for one seen not to be there (its
    folder can be listed, not searched, and lacks it: :func:`loftup.listing.absent`), which
    the caller says is missing. ``other``: another fix than a copy of it. ``to_make``: a
    folder a run makes where it is missing (a cache), refused there too: it cannot be made."""
    path = os.path.expanduser(os.fspath(path))
    why = (permission_denied if to_make else hidden)(path, *([other] if other else []))
    if why is not None:
        raise PathPermissionError(f"{what} {path}: {why}" if what else f"{path}: {why}")


def there(path: str | os.PathLike, what: str = "", other: str | None = None, to_make: bool = False,
          test=os.path.exists) -> bool:  # fmt: skip
    """Whether ``path`` (a file of the user's, or of a folder they gave: ``what`` it is) is
    there: ``test`` (``os.path.exists``, ``isdir`` or ``isfile``) holds of it, one os.stat; a
    :class:`PathPermissionError` where a folder this user may not search hides it
    (:func:`check_visible`, looked for only where that stat is refused, with ``other`` and
    ``to_make``: a file a run makes where it is missing), for which pathlib's exists raised a
    bare PermissionError and os.path's said it was not there."""
    path = os.path.expanduser(os.fspath(path))
    try:
        mode = os.stat(path).st_mode
    except PermissionError:
        check_visible(path, what, other, to_make)
        return False
    except (OSError, ValueError):  # gone, or a name no file has (a NUL byte)
        return False
    return _KINDS[test](mode)


#: :func:`there`'s tests, as the file's mode tells them
_KINDS = {
    os.path.exists: lambda mode: True,
    os.path.isdir: stat.S_ISDIR,
    os.path.isfile: stat.S_ISREG,
}


def figure_beside(json_path: str) -> str:
    """The figure drawn beside a JSON of numbers (``~`` expanded): its ``.json`` ending (or
    none) made ``.png``, any other ending kept and ``.png`` added, so that runs/coco.loftup and
    runs/coco.bilinear draw two figures, not one runs/coco.png."""
    path = Path(json_path).expanduser()
    if path.suffix.lower() in (".json", ""):
        return str(path.with_suffix(".png"))
    return str(path.with_name(path.name + ".png"))


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that is there (a file, a folder or a link, even one to
    nothing); what lies in a folder that cannot be searched counts as not there, so that the
    folder, which takes no new files, is the one named."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (made first where missing), or None."""
    base = existing_ancestor(folder)
    if os.path.islink(base) and not os.path.exists(base):
        return f"{base} is {where_it_leads(base)}"
    if not os.path.isdir(base):
        return f"{base} is a file, not a folder"
    from .atomic import remove_temps, temp_beside

    made: list[str] = []  # (its name listed before it is made: an interruption removes it)
    try:  # what writing will do: a file in it (os.access says yes to root on a read-only disk)
        try:
            temp_beside(base / "loftup-write-check", into=made)
        finally:
            remove_temps(made)
    except OSError as e:
        return f"{base} takes no new files ({e.strerror or e})"
    return None


def name_max(folder: str | os.PathLike) -> int:
    """The longest name, in bytes, that the file system of ``folder`` (or of its nearest
    ancestor that is there) takes: 255 on most, and where the system does not say."""
    base = existing_ancestor(Path(folder))
    try:
        return os.pathconf(base if os.path.isdir(base) else base.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such query here: the common limit
        return 255


def _too_long(target: Path, option: str, path, fix: str | None = None) -> None:
    """UsageError where a name along ``target`` is longer than its file system takes: writing
    it failed with a traceback (ENAMETOOLONG) after the work, and a folder's record file was
    "cannot be read ... move the file away", with no file to move. ``fix``: the caller's (a
    name the user never chose: ``give --figure another path``); "choose a shorter name"
    where None."""
    limit = name_max(target)
    for part in target.parts:
        size = len(os.fsencode(part))
        if size > limit:
            short = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            raise UsageError(
                f"{option} {path} cannot be written: a name in it ({short}) is {size} bytes, "
                f"over the {limit} this file system allows; {fix or 'choose a shorter name'}"
            )


def _no_plain_file(target: Path) -> str | None:
    """What ``target`` is where it is there and no plain file nor folder (the caller's), nor a
    link to one: a device, a pipe or a socket (``/dev/null``:
    :func:`~loftup.listing.special_at`), or a link into /proc (``/dev/stdout`` is
    /proc/self/fd/1); else None. Its file would be renamed onto the name (as root, /dev/null
    and /dev/stdout became plain files, and nothing was printed)."""
    hop = os.path.abspath(target)
    for _ in range(40):  # the links, one at a time (a loop of them ends here)
        if not os.path.islink(hop):
            break
        hop = os.path.join(os.path.dirname(hop), os.readlink(hop))
        if os.path.abspath(hop).startswith("/proc/"):
            return "a link to a process's open file (in /proc)"
    return special_at(target)  # (not there, or a link to nothing: a new file)


def check_file_output(path: str, option: str, fix: str | None = None, example: str = "out") -> None:
    """UsageError unless the file ``path`` (given as ``option``) can be written: it is not a
    folder (``example``: the file name the error suggests in it), and its folder exists or can
    be made, and takes new files. ``fix``: what the error says to do (where None, "choose
    another path", or "choose a shorter name" for a name too long)."""
    if not os.fspath(path):  # Path("") is the current folder: an unset shell variable
        raise UsageError(f"{option} is empty; give a file name, e.g. {example}")
    target = Path(path).expanduser()
    _too_long(target, option, path, fix)
    if os.path.isdir(target):  # a path no option names takes no file name in it: the fix
        raise UsageError(
            f"{option} {path} is a folder; {fix or f'give a file name, e.g. {path}/{example}'}"
        )
    fix = fix or "choose another path"
    special = _no_plain_file(target)
    if special:
        stdout = " (--json -: to stdout)" if option == "--json" else ""
        raise UsageError(
            f"{option} {path} is {special}, not a file: the file written would be renamed "
            f"onto it, replacing it; give a file's path{stdout}"
        )
    if os.path.islink(target) and _in_a_loop(target):  # the file would replace the link
        raise UsageError(
            f"{option} {path} is a link to {os.readlink(target)}, which leads back to it (a "
            "loop of links), no file; fix or remove the link, or give another path"
        )
    if os.path.islink(target):  # the file it names is written, in that file's folder
        real = Path(os.path.realpath(target))
        problem = _folder_problem(real.parent)
        problem = problem and f"it is a link to {real}, and {problem}"
    else:
        problem = _folder_problem(target.parent)
    if problem:
        raise UsageError(f"{option} {path} cannot be written: {problem}; {fix}")


def check_folder_output(
    path: str | os.PathLike, option: str, alternative: str = "", *, inside=None
) -> None:
    """UsageError unless the folder ``path`` (given as ``option``) exists or can be made and
    takes new files: not empty, a file, under one, a link to nothing, nor in a folder that
    takes no files (read-only, or not this user's). ``alternative``: another fix the message
    offers after "choose another folder" (`` (or --no-cache)``). ``inside``: the folder given
    as ``option`` where ``path`` is one a run makes in it (an experiment's ``OUT/scenes/train``),
    which the error names as the option's value (it named ``--out OUT/scenes/train``, a path
    the user never typed), ``path`` in what is wrong. Makes nothing: a folder made where it
    was missing would be left behind by a run refused later."""
    path = os.fspath(path)
    if not path:  # Path("") is the current folder: ``-o "$OUT"`` with $OUT unset wrote there
        raise UsageError(f"{option} is empty; give a folder{alternative}")
    given = path if inside is None else os.fspath(inside)
    target = Path(path).expanduser()
    _too_long(target, option, given)
    if os.path.exists(target) and not os.path.isdir(target):
        if inside is not None:  # a folder the run makes: not one the user gives
            raise UsageError(f"{option} {given} cannot be written: {path} is a file, where the "
                             "run makes a folder; move it away or choose another folder")  # fmt: skip
        raise UsageError(f"{option} {path} is a file; give a folder")
    problem = _folder_problem(target)
    if problem:  # (escaped here: the paths of ``alternative``'s command are in bash's quotes)
        raise UsageError(
            f"{option} {printable(given)} cannot be written: {printable(problem)}; choose "
            f"another folder{alternative}"
        )
