"""The runs an output folder's record lists as writing under it (``upsample.json``'s
``running``), each as ``{"id", "host", "pid", "started", "pid_ns", "boot_id"}`` (:func:`entry`; an earlier
loftup's records list bare ids), and what is known of them from here (:func:`alive`): a run
whose process is gone from its host is dropped where another run of the record ends
(:func:`mark_finished`; a killed run's id kept the record unfinished through every later run,
silently), and a ``--resume`` refuses to take over from one still writing on this host
(:func:`check_not_writing`; it removed that run's unfinished files as an interrupted run's,
and the run then failed an image)."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import LoftUpError, printable
from ..words import said

#: The ids of the runs of this process under way (a run that failed or was stopped in a
#: Python session is listed by the pid of a process that lives on)
_WRITING: set[str] = set()


@contextmanager
def this_run():
    """A new run's id (what :func:`mark_finished` knows its entry by), taken as this process's
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


def running_entries(saved: dict | None, resume: bool, own: dict) -> list:
    """The record's ``running``: the runs writing under it, this one's (``own``) last. A run
    that goes on from a record no run said finished (read at its start, or written by another
    while it loaded) adds itself to that record's (to its ``run`` in a record without them: one
    of an earlier loftup), those whose process is gone left out; a ``--resume`` takes over,
    and a run over a finished record or none begins them."""
    if resume or saved is None or saved.get("finished") is True:
        return [own]
    listed = saved.get("running")
    if not (isinstance(listed, list) and all(isinstance(i, (str, dict)) for i in listed)):
        listed = [str(saved.get("run") or "a run of an earlier loftup")]
    return [*(i for i in listed if alive(i) is not False), own]


def check_not_writing(
    out_dir: Path, saved: dict | None, resume: bool, said_as, rank: int = 0, world: int = 1
) -> None:
    """Refuse a ``--resume`` over a record whose ``running`` lists a run still writing on this
    host: it would remove that run's unfinished files as an interrupted run's, and compute its
    images too. Said by its pid; a run listed on another host is warned of as its files are
    removed (:func:`warn_elsewhere`). Under torchrun judged by rank 0 (the record lists its
    process: another rank took it for another run's, refused, and the ranks split), and its
    verdict said by every rank (:func:`.torchrun.judged_by_rank_0`)."""
    from .torchrun import judged_by_rank_0

    judged_by_rank_0(lambda: _check_not_writing(out_dir, saved, resume, said_as), rank, world)


def _check_not_writing(out_dir: Path, saved: dict | None, resume: bool, said_as) -> None:
    """:func:`check_not_writing` as one process judges it."""
    if not resume or saved is None or saved.get("finished") is True:
        return
    listed = saved.get("running")
    for i in listed if isinstance(listed, list) else []:
        if alive(i) is True:
            flag, pid = said("resume", said_as), i["pid"]
            wait = f"wait for it to end (then {flag} goes on from what it wrote)"
            if _state(pid) in ("T", "t"):  # stopped (Ctrl-Z, a debugger): it would never end
                wait = (
                    f"it is stopped (Ctrl-Z?): let it go on (fg in its shell) and wait for it "
                    f"to end, or end it (kill {pid}) and {flag} goes on from what it wrote"
                )
            raise LoftUpError(
                f"{flag}: a run is still writing in {out_dir}: process {pid} on this host, "
                f"which its record lists as writing; {wait}, or choose another "
                f"{said('out', said_as)}"
            )


def keeps_unfinished(out_dir: Path, saved: dict | None, outputs: list, said_as=None) -> bool:
    """Whether a run that is not a ``--resume``, going on under the record ``saved``, keeps the
    unfinished (temporary) files of its ``outputs`` there, saying so: where ``saved`` lists a
    run that may still be writing them (on this host, or one that cannot be seen from here),
    which it removed as an interrupted run's. A ``--resume`` removes them once that run has
    ended (a rerun does too, once no run it lists may be writing)."""
    from .record import unfinished_files

    if saved is None or saved.get("finished") is True:
        return False
    listed = saved.get("running")
    writing = [
        i
        for i in (listed if isinstance(listed, list) else [])
        if isinstance(i, dict) and isinstance(i.get("host"), str) and alive(i) is not False
    ]
    kept = len(unfinished_files(out_dir, outputs)) if writing else 0
    if not kept:
        return False
    said_here = (
        f"kept {kept} unfinished file(s) in {out_dir}: its record lists a run that may be "
        f"writing them ({'; '.join(map(_process, writing))}); once it has ended, "
        f"{said('resume', said_as)} removes them"
    )
    print(printable(said_here), file=sys.stderr)
    return True


def _process(listed: dict) -> str:
    """A ``running`` entry of a host said as its process: ``process 12 on gpu3``, and where its
    pid is not this view's though the host's name is, why (:func:`_elsewhere`)."""
    why = _elsewhere(listed) if listed["host"] == socket.gethostname() else None
    return f"process {listed.get('pid')} on {listed['host']}" + (f", {why}" if why else "")


def warn_elsewhere(out_dir: Path, saved: dict | None) -> None:
    """Warn, as a ``--resume`` removes the unfinished files under ``saved``, of each run it
    lists as writing on another host (whether it still is cannot be told from here)."""
    listed = (saved or {}).get("running")
    for i in listed if isinstance(listed, list) else []:
        if isinstance(i, dict) and alive(i) is None and isinstance(i.get("host"), str):
            said_here = (
                f"warning: {out_dir} lists a run as writing there, {_process(i)}, which cannot "
                "be seen from here: if it still is, its unfinished files are removed now"
            )
            print(printable(said_here), file=sys.stderr)


def mark_finished(
    out_dir: Path, options: dict, written: int, alone_since=None, said_as: dict | None = None
) -> None:
    """This run's entry (``options["run"]``) taken out of ``out_dir``'s record's ``running``
    as it ends, every image failed too, with those of runs whose process is gone (killed:
    :func:`alive`); where others remain (writing, or not seen from here) it says so, and the
    last listed to end rewrites it with ``"finished": true`` and ``written`` (how many images'
    files it leaves there, written now or kept by ``--resume``): what lets a later run of other
    options replace a record whose run left no output (:func:`.record.stale_record`); with
    ``alone_since``, where it or a run whose record it went on from began with no record there
    (that record's mtime: no loftup file there is older). One that does not list this run (a
    ``--resume`` took over, or a record replaced) is not its to mark. A record that cannot be
    rewritten (no room left) stays as it was, unfinished and resumable: a warning, not an
    error, since every output is written."""
    from ..atomic import read_json_object
    from .record import OPTIONS_NAME, write_options
    from .record_lock import record_lock

    path = out_dir / OPTIONS_NAME
    try:
        with record_lock(out_dir):  # no other run writes its record between read and write
            try:
                now = read_json_object(path, another=said("out", said_as))
            except (LoftUpError, OSError, ValueError):  # gone, or unreadable now: another's
                return
            listed = now.get("running") if now is not None else None
            if not isinstance(listed, list) or options["run"] not in map(entry_id, listed):
                return
            rest = [i for i in listed if entry_id(i) != options["run"] and alive(i) is not False]
            if rest:  # another run writes under it still: the last to end marks it
                write_options(out_dir, {**now, "running": rest})
                print(
                    printable(
                        f"{path} still lists {len(rest)} other run(s) as writing: the last to "
                        f"end marks it finished (if none is, {said('resume', said_as)} takes "
                        "over)"
                    ),
                    file=sys.stderr,
                )
                return
            alone = {"alone_since": alone_since} if type(alone_since) is int else {}
            write_options(
                out_dir, {**now, "running": [], "finished": True, "written": written, **alone}
            )
    except (OSError, LoftUpError) as e:  # (the lock file too: no room for it, a link there)
        print(
            printable(f"warning: {path} was left unfinished (its run ended): {e}"),
            file=sys.stderr,
        )
