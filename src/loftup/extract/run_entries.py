"""A run's entry in its output folder's record (``upsample.json``'s ``running``): ``{"id",
"host", "pid", "started", "pid_ns", "boot_id"}`` (:func:`entry`), and whether the process of
one is still there, seen from this one (:func:`alive`): by its pid and start time on this host,
in this pid namespace and boot of it; a zombie is gone, and one of another host, container or
boot cannot be told."""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager

#: The ids of the runs of this process under way (a run that failed or was stopped in a
#: Python session is listed by the pid of a process that lives on)
_WRITING: set[str] = set()


@contextmanager
def this_run():
    """A new run's id (what :func:`.writers.mark_finished` knows its entry by), taken as this process's
    run under way until the block ends, whichever way (:func:`alive`)."""
    run_id = uuid.uuid4().hex
    _WRITING.add(run_id)
    try:
        yield run_id
    finally:
        _WRITING.discard(run_id)


def entry(run_id: str) -> dict:
    """The record's ``running`` entry of this process's run ``run_id``: its host, pid and the
    process's start time (:func:`_started`: a pid taken by another process since is told), and
    where they can be read, its pid namespace and the host's boot (:func:`_seen_from`)."""
    pid = os.getpid()
    said = {"id": run_id, "host": socket.gethostname(), "pid": pid, "started": _started(pid)}
    return {**said, **{k: v for k, v in _seen_from().items() if v is not None}}


def _seen_from() -> dict:
    """What a pid means here: this process's pid namespace (the inode of /proc/self/ns/pid) and
    the boot of its host (/proc/sys/kernel/random/boot_id); each None where it cannot be read.
    A container sharing a volume and a host name has its own pids, and a pid of another boot
    is another process."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip() or None
    except OSError:
        boot = None
    return {"pid_ns": namespace, "boot_id": boot}


def _elsewhere(listed: dict) -> str | None:
    """Why the pid of a ``running`` entry of this host's name is not one of this process's
    view: another pid namespace (a container), or another boot (or host of the same name); None
    where it is (or the entry does not say: an earlier record)."""
    here = _seen_from()
    if "pid_ns" in listed and listed["pid_ns"] != here["pid_ns"]:
        return "in another pid namespace (another container?)"
    if "boot_id" in listed and listed["boot_id"] != here["boot_id"]:
        return "of another boot of the host"
    return None


def entry_id(listed) -> str:
    """The run id of a ``running`` entry (an earlier loftup's: the id itself)."""
    return str(listed.get("id")) if isinstance(listed, dict) else str(listed)


def _started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat's 22nd field);
    None where that cannot be read (no /proc: not Linux, or the process is gone)."""
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _state(pid: int) -> str | None:
    """Process ``pid``'s state, /proc/PID/stat's 3rd field (R, S, D; T stopped, Z a zombie, X
    dead); None where it cannot be read."""
    fields = _stat(pid)
    return fields[0].decode(errors="replace") if fields else None


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (Ctrl-Z, a debugger: state T or t), so that it would
    never end by itself."""
    return _state(pid) in ("T", "t")


def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields from the 3rd on (the name, which may hold spaces, left out)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def alive(listed) -> bool | None:
    """Whether the run of a ``running`` entry is writing: True where its process runs on this
    host (one of this process: while it runs, :func:`this_run`), False where it is gone (or
    its pid is another process's now, started at another time), None where that cannot be
    told from here (another host, another pid namespace or boot of it: :func:`_elsewhere`, or
    an earlier loftup's bare id)."""
    if not isinstance(listed, dict) or listed.get("host") != socket.gethostname():
        return None
    if _elsewhere(listed) is not None:  # (its pid is not this view's: pid 1, say, is init)
        return None
    pid = listed.get("pid")
    if type(pid) is not int or pid <= 0:
        return None
    started = _started(pid)
    if pid == os.getpid() and listed.get("started") == started:
        return entry_id(listed) in _WRITING
    try:
        os.kill(pid, 0)  # (no signal: whether the process exists)
    except (ProcessLookupError, OverflowError):  # (past what a pid holds: an edited record's)
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return None
    was = listed.get("started")
    if _state(pid) in ("Z", "X"):  # a zombie: killed or ended, not yet reaped by its parent
        return False
    return not (type(was) is int and started is not None and started != was)
