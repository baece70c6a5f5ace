"""The runs an output folder's record lists as writing under it (``upsample.json``'s
``running``), each by its entry (:func:`.run_entries.entry`; an earlier loftup's records list
bare ids), and what is known of them from here (:func:`.run_entries.alive`): a run
whose process is gone from its host is dropped where another run of the record ends
(:func:`mark_finished`; a killed run's id kept the record unfinished through every later run,
silently), and a ``--resume`` refuses to take over from one still writing on this host
(:func:`check_not_writing`; it removed that run's unfinished files as an interrupted run's,
and the run then failed an image)."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

from ..errors import LoftUpError, printable
from ..words import echoed, said

# (a run's entry and whether it is alive: importable from here, as before)
from .run_entries import (  # noqa: F401
    _elsewhere,
    _seen_from,
    _started,
    _state,
    alive,
    entry,
    entry_id,
    stopped,
    this_run,
)


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
            if stopped(pid):  # (Ctrl-Z, a debugger): it would never end
                wait = (  # (a signal it handles, loftup's SIGTERM, waits until it goes on)
                    f"it is stopped (Ctrl-Z?): let it go on (fg in its shell) and wait for it "
                    f"to end, or end it (kill {pid}; kill -CONT {pid}: stopped, it takes the "
                    f"signal once let go on) and {flag} goes on from what it wrote"
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
    writing = [i for i in _hosts_entries(saved) if alive(i) is not False]
    kept = len(unfinished_files(out_dir, outputs)) if writing else 0
    if not kept:
        return False
    said_here = (
        f"kept {kept} unfinished file(s) in {out_dir}: its record lists a run that may be "
        f"writing them ({_processes(writing)}); once it has ended, "
        f"{said('resume', said_as)} removes them"
    )
    print(printable(said_here), file=sys.stderr)
    return True


#: How many of the runs a record lists a note names, the others counted: each run of another
#: host or container killed stays listed until a --resume takes over (whether it still writes
#: cannot be told from here), and after many the notes named every one.
NAMED = 3


def _hosts_entries(saved: dict | None) -> list[dict]:
    """The entries of ``saved``'s ``running`` list that name a host (an edited record's others
    are passed over)."""
    listed = (saved or {}).get("running")
    return [
        i
        for i in (listed if isinstance(listed, list) else [])
        if isinstance(i, dict) and isinstance(i.get("host"), str)
    ]


def _processes(listed: list) -> str:
    """The first :data:`NAMED` of ``listed`` (``running`` entries of hosts) said as their
    processes (:func:`_process`), and how many more."""
    more = len(listed) - NAMED
    return "; ".join(map(_process, listed[:NAMED])) + (f"; and {more} more" if more > 0 else "")


def _process(listed: dict) -> str:
    """A ``running`` entry of a host said as its process: ``process 12 on gpu3``, and where its
    pid is not this view's though the host's name is, why (:func:`_elsewhere`)."""
    why = _elsewhere(listed) if listed["host"] == socket.gethostname() else None
    pid, host = echoed(str(listed.get("pid"))), echoed(listed["host"])  # (an edited record's)
    return f"process {pid} on {host}" + (f", {why}" if why else "")


def warn_elsewhere(out_dir: Path, saved: dict | None) -> None:
    """Warn, as a ``--resume`` removes the unfinished files under ``saved``, of each run it
    lists as writing on another host (whether it still is cannot be told from here): the
    first :data:`NAMED` by their processes, the others counted."""
    unseen = [i for i in _hosts_entries(saved) if alive(i) is None]
    for i in unseen[:NAMED]:
        said_here = (
            f"warning: {out_dir} lists a run as writing there, {_process(i)}, which cannot "
            "be seen from here: if it still is, its unfinished files are removed now"
        )
        print(printable(said_here), file=sys.stderr)
    if len(unseen) > NAMED:  # (the first named: NAMED)
        said_here = (
            f"warning: {out_dir} lists {len(unseen) - NAMED} more runs as writing there, which "
            "cannot be seen from here: if any still is, its unfinished files are removed now"
        )
        print(printable(said_here), file=sys.stderr)


@contextlib.contextmanager
def unlisted_if_interrupted(rank: int, said_as: dict | None = None):
    """A run's block, in which ``listed(out_dir, options)`` (what it yields) says that
    ``out_dir``'s record lists the run as writing (``options["run"]``, its id): from then on,
    an error or Ctrl-C takes it out of that record on its way out (rank 0's:
    :func:`mark_finished`, ``interrupted``), unfinished and resumable as a killed run's."""
    where: list[tuple[Path, dict]] = []
    try:
        yield lambda out_dir, options: where.append((out_dir, options))
    except BaseException:
        if rank == 0 and where:
            mark_finished(*where[-1], 0, said_as=said_as, interrupted=True)
        raise


def mark_finished(
    out_dir: Path,
    options: dict,
    written: int,
    alone_since=None,
    said_as: dict | None = None,
    interrupted: bool = False,
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
    error, since every output is written. ``interrupted``: the run ended by an error or Ctrl-C
    (``written`` unused), its entry taken out and the record left unfinished, resumable: in a
    process that lives on (a Python session) its pid still runs, and every other process took
    it for a run still writing (a ``--resume`` refused, "wait for it to end", for ever)."""
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
            if interrupted:  # (no word of the others: the run's own error is said)
                write_options(out_dir, {**now, "running": rest})
                return
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
        left = "still lists this run as writing" if interrupted else "was left unfinished"
        print(printable(f"warning: {path} {left} (its run ended): {e}"), file=sys.stderr)
