"""The lock of ``loftup eval davis --save-masks DIR``: a run holds it exclusively from the check
before its work to its end (:func:`lock_folder`); a reader asks whether one does
(:func:`_locked`). It is ``fcntl.flock`` (:mod:`..file_lock` says why) on the regular file
:data:`LOCK` in DIR, not on DIR: NFS passes a file's lock to its server, so that runs on two
machines see each other, where a folder's stays on the machine. DIR itself is locked too, for
a loftup from before the file (its runs lock DIR). The system releases a lock when its process
ends, however it ends; the processes a run forks (its DataLoader workers) close their copy.
The run that made the file removes it at its end where DIR then holds no masks (refused,
failed: DIR as it was); else it stays, one of DIR's own files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..atomic import FILE_MODE
from ..file_lock import NO_LOCKS, open_lock_file, still_at, tries
from ..file_lock import lock_nowait as _flock  # (by this name: tests press on it)
from .mask_mark import LOCK, MARK, in_group

#: The descriptors holding a lock (:func:`lock`) this process has open; of a lock file's,
#: DIR's own it holds too, and the file's path where this process made it.
_HELD: set[int] = set()
_FOLDER: dict[int, int] = {}
#: The descriptors holding a reader's shared lock (:func:`reading_masks`): closed in a forked
#: child too, whose copy kept runs refused after the block, for as long as the child lived.
_READING: set[int] = set()
_MADE: dict[int, Path] = {}

#: Who locks the file, in the refusal of a link or folder in its place.
RUNS = "loftup eval davis --save-masks runs"


def _close_inherited_locks() -> None:
    """In a child forked while a run holds DIR's lock (a DataLoader worker): close its copy of
    the lock's descriptors. A flock lasts while any copy is open: a worker that outlived a
    killed run (stopped, busy, its watchdog not yet run) kept DIR locked, and the next run
    was refused as if that one still wrote there. The parent's lock is kept."""
    for fd in _HELD | _READING:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()
    _READING.clear()
    _FOLDER.clear()
    _MADE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _lock_file(target: Path, exclusive: bool) -> int:
    """A descriptor of ``target``'s lock file holding its lock (made where missing, when
    ``exclusive``; else FileNotFoundError: no run holds it). Taken again where the file was
    removed meanwhile (by the run that made it, ending): its lock would be no one's."""
    path = target / LOCK
    for _ in tries(path):
        made = False
        if exclusive:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
            try:
                fd, made = open_lock_file(path, flags, RUNS), True
            except FileExistsError:
                try:
                    fd = open_lock_file(path, flags & ~(os.O_CREAT | os.O_EXCL), RUNS)
                except FileNotFoundError:
                    continue  # removed between the two opens
                except PermissionError:
                    raise _not_writable(path, target) from None
        else:
            fd = open_lock_file(path, os.O_RDONLY, RUNS)
        try:
            if made:  # readable by all (a reader that cannot open it takes DIR's lock), and
                os.chmod(fd, _mode(target))  # in a group-writable DIR lockable by its group
                in_group(path, target)
            _flock(fd, exclusive)
            if still_at(fd, path):
                if made:
                    _MADE[fd] = path
                elif exclusive:
                    _share(fd, target)
                return fd
        except BaseException as e:
            os.close(fd)
            if made and getattr(e, "errno", None) in NO_LOCKS:  # (no one else holds it)
                _remove_unless_marked(path, target)
            raise
        os.close(fd)


def _not_writable(path: Path, target: Path) -> Exception:
    """The refusal where this user may not open the lock file for reading and writing (another
    member's, made before DIR was shared; another user's): what refuses it, with the fix for
    the class of users this user is of for the file (:func:`..read_refusal.mode_refuses`).
    Its paths escaped here, its commands' in bash's quotes: a command pasted from it names the
    file (:func:`~loftup.escaping.shell_quoted`)."""
    from ..errors import LoftUpError
    from ..escaping import printable, shell_quoted
    from ..read_refusal import folder_refusal, mode_refuses

    try:
        why = folder_refusal(path) or mode_refuses(path, os.lstat(path), "rw")
    except OSError:  # (gone meanwhile, or a folder this user may not search)
        why = "permission denied"
    if "(chmod g+" in why:  # a member: DIR's group bits mend it, and its owner's runs give them
        why += (
            f"; or, for the whole folder, chmod -R g+rwX {shell_quoted(target)} (the owner's "
            "next run into it mends the lock file too)"
        )
    return LoftUpError(
        f"--save-masks {printable(str(target))}: this user may not write its lock file "
        f"{printable(str(path))}, which every run into it locks: {why}; or choose another folder"
    )


def _share(fd: int, target: Path) -> None:
    """Give this user's lock file the mode a new one gets (:func:`_mode`): one made before DIR
    was shared (or under another umask) is then writable by DIR's group."""
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and _mode(target) & ~st.st_mode & 0o777:
            os.chmod(fd, (st.st_mode & 0o777) | _mode(target))


def _mode(target: Path) -> int:
    """The lock file's mode: readable by everyone whatever the umask, writable by DIR's group
    where DIR is."""
    return FILE_MODE | 0o644 | (target.stat().st_mode & 0o060)


def _remove_unless_marked(path: Path, target: Path) -> None:
    """Remove the lock file ``path`` where ``target`` holds no masks (no mark): as it was."""
    if not os.path.lexists(target / MARK):
        with contextlib.suppress(OSError):
            os.unlink(path)


def lock(target: Path) -> int:
    """A descriptor holding ``target``'s lock (its file's and, for an older loftup, its
    own; OSError as flock raised it: BlockingIOError where another run holds either)."""
    fd = _lock_file(target, exclusive=True)
    _HELD.add(fd)  # (os.open's descriptors are not inherited by a program a child runs)
    try:
        _lock_folder(fd, target)
    except BaseException:  # (a Ctrl-C too: the lock not kept for the process's lifetime)
        unlock(fd, target)
        raise
    return fd


def _lock_folder(fd: int, target: Path) -> None:
    """Lock DIR itself too (for an older loftup), its descriptor held with ``fd``'s."""
    try:
        folder = os.open(target, os.O_RDONLY)
    except OSError:
        return
    try:
        _flock(folder, exclusive=True)
    except BaseException as e:
        os.close(folder)
        if isinstance(e, OSError) and not isinstance(e, BlockingIOError):
            return  # the file's lock decides
        raise  # (BlockingIOError: an older loftup's run)
    _HELD.add(folder)
    _FOLDER[fd] = folder


def unlock(fd: int | None, target: Path) -> None:
    """Release the lock ``fd`` holds (:func:`lock`), removing the lock file where this run
    made it and ``target`` holds no masks (no mark): as it was."""
    if fd not in _HELD:  # not in a forked child: there it is closed, its number reused
        return
    path = _MADE.pop(fd, None)
    if path is not None:
        _remove_unless_marked(path, target)
    for held in (_FOLDER.pop(fd, None), fd):
        if held is not None:
            _HELD.discard(held)
            os.close(held)


def _locked(target: Path) -> bool | None:
    """Whether a run holds ``target``'s lock (None: its file system keeps none). Where this
    user may not open the lock file, DIR's own lock says it (False where it cannot tell).
    The same errors as :func:`lock`'s, read the same way."""
    try:
        fd = _lock_file(target, exclusive=False)
    except FileNotFoundError:  # no run made it
        fd = None
    except BlockingIOError:
        return True
    except PermissionError:  # (a file made private: DIR's own lock, which runs take too)
        fd, private = None, True
    except OSError as e:
        if e.errno in NO_LOCKS:
            return None
        raise
    else:
        private = False
    if fd is not None:
        os.close(fd)
    try:  # an older loftup's run
        folder = os.open(target, os.O_RDONLY)
    except OSError:
        return False
    try:
        _flock(folder, exclusive=False)
    except BlockingIOError:
        return True
    except OSError as e:  # (where the file exists, its lock's error said it; where it could
        # not be opened, this user cannot tell: not "no locks")
        return None if fd is None and not private and e.errno in NO_LOCKS else False
    finally:
        os.close(folder)
    return False


@contextlib.contextmanager
def reading_masks(folder: str | os.PathLike):
    """Read the masks of ``folder`` (``--save-masks``) holding its lock shared for the whole
    block: a run into it is refused until the block ends, so that no run's masks replace
    these while they are read (a check alone, :func:`.mask_folder.complete_masks`, protects
    one instant). Yields what ``complete_masks`` returns (its errors: a run holds the folder,
    masks incomplete or lacking a sequence)."""
    from .mask_folder import complete_masks

    target = Path(folder)
    listed = complete_masks(folder)  # (the folder checked first: its errors said plainly)
    try:
        fd = _lock_file(target, exclusive=False)
    except (FileNotFoundError, PermissionError):  # masks of a loftup from before the file,
        fd = os.open(target, os.O_RDONLY)  # or a file this user may not open: DIR's own lock
        try:
            _flock(fd, exclusive=False)
        except OSError as e:
            os.close(fd)
            fd = _no_lock(e, folder)
    except OSError as e:
        fd = _no_lock(e, folder)
    if fd is not None:
        _READING.add(fd)
    try:
        if fd is not None:  # (a run may have ended between the check and the lock)
            listed = complete_masks(folder)
        yield listed
    finally:
        if fd in _READING:  # (not in a forked child: there it is closed, its number reused)
            _READING.discard(fd)
            os.close(fd)


def _no_lock(e: OSError, folder) -> None:
    """None where ``e`` says the file system keeps no locks (the block then runs unlocked);
    else ``e``, or the refusal where a run holds the lock."""
    if isinstance(e, BlockingIOError):
        from ..errors import LoftUpError

        raise LoftUpError(
            f"{folder} is being written by a loftup eval davis --save-masks run (it holds the "
            "folder's lock): read the masks once that run has ended"
        ) from None
    if e.errno in NO_LOCKS:
        return None
    raise e
