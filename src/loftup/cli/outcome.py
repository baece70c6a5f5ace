"""How a command ends, as the user reads it: :func:`_main` runs the command and says what
stopped it as one line on stderr (:func:`_say`): an error meant for the user
(:class:`loftup.LoftUpError`, a path the file system refuses, an optional package missing, a
hub id that is none, no memory left), status 2; SIGTERM (143) or Ctrl-C (130); a closed stdout
(141). A warning is said as one line too (:func:`_show_warning`)."""

from __future__ import annotations

import errno
import os
import signal
import sys

from ..errors import LoftUpError, Terminated, printable
from ..listing import permission_denied
from ..stops import check
from .common import stdout_for_json
from .refusals import _bad_hub_id, _homeless_path

#: Errors of the file system that the user's paths or disk cause, and the user can fix: a file
#: where a folder goes (or the reverse), no permission, a read-only or full disk, a path whose
#: folder does not exist and cannot be made (``-o /proc/x``; ENOENT: the line names the path,
#: so one that is a bug of ours, a package file gone missing say, is still found from it), a
#: name too long for the file system, or a loop of links.
_USER_OS_ERRORS = {
    errno.ENOENT,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}


#: What to lower when a command runs out of memory.
_MEMORY_FIX = {
    "train": "a smaller batch_size, stage1.image_size or stage2.load_size (a run that wrote a "
    "checkpoint goes on from it with --resume)",
    "upsample": "a smaller --size, --backbone-size or --batch-size",
    "eval": "a smaller --batch-size (then --probe-batch-size, which changes the probe's training)",
    "bench": "smaller --sizes or --batch",
    "experiment": "--quick, or a smaller --batch-size",
    "demo": "a smaller --size or --batch-size",
    "world": "a smaller --size (scenes, probe), --count (probe) or --batch-size (backbone)",
}


def _hung_up(e: BaseException) -> bool:
    """Whether ``e`` is training's HungUp (SIGHUP: loftup.train.stop_signals, loaded where it
    was raised)."""
    stop_signals = sys.modules.get("loftup.train.stop_signals")
    return stop_signals is not None and isinstance(e, stop_signals.HungUp)


#: what a stop that ends the command says first, its work done (:func:`said_before_a_stop`)
_DONE: list = []


def said_before_a_stop(line) -> None:
    """``line(signum)``: what a stop by ``signum`` (SIGTERM, SIGHUP, SIGINT) that ends the
    command from now on says before its own line (:func:`_stopped`), the command's work being
    done (``loftup train``'s run complete: "terminated (SIGTERM)" alone read as a run to
    resume). For the rest of the command (:func:`forget_the_work`)."""
    _DONE[:] = [line]


def forget_the_work() -> None:
    """A command begins (or ended): no :func:`said_before_a_stop` of an earlier one is said."""
    _DONE.clear()


def _stopped(e: BaseException) -> int:
    """Say what stopped the command (SIGTERM, Ctrl-C; a SIGHUP is not said: no terminal is
    left to read it), after what its work did (:func:`said_before_a_stop`); its exit status."""
    hung_up, terminated = isinstance(e, SystemExit), isinstance(e, Terminated)  # (SE: HungUp)
    signum = signal.SIGHUP if hung_up else signal.SIGTERM if terminated else signal.SIGINT
    for line in _DONE:
        _say(line(signum))
    _DONE.clear()  # (said once)
    if hung_up:
        return 129
    if terminated:
        _say("terminated (SIGTERM)")
        return 143
    _say("interrupted")
    return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print ``message`` as ``warning: ...`` on one line, escaped where it is not printable
    (:func:`~loftup.escaping.printable`: a path's newline written ``\\n``, its no-break space
    kept, so the name said is the file's). Through tqdm, which takes the bars that are drawn
    off the line, writes it and draws them again below it (Python's own printing would append
    it to the bar's line, and the bar's next update would overwrite it)."""
    from tqdm import tqdm

    try:
        said = printable(str(message))  # another library's warning; loftup's made escaped: as is
        tqdm.write(f"warning: {said}", file=file or sys.stderr)
    except (OSError, ValueError):  # a closed stderr: lost, as Python's own printing loses it
        pass


def _main(args) -> int:
    try:
        if isinstance(getattr(args, "device", None), str):  # one this machine has, before any work
            from ..api import resolve_device

            resolve_device(args.device)
        if isinstance(getattr(args, "backbone", None), str):  # "$BB" unset, as the option says
            from ..featurizers import refuse_blank

            # left out: what -m records (upsample; where it records none, that refusal names
            # the backbones of its width), else the option's default (eval, experiment)
            absent = " for the one -m records" if args.command == "upsample" else " for its default"
            refuse_blank(
                args.backbone, {"backbone": "--backbone"}, absent=", or leave it out" + absent
            )
        json_out = getattr(args, "json", None)
        if isinstance(json_out, str) and json_out != "-":  # said now, not after the work is done
            from ..paths import check_file_output

            # a folder, under a file, or in a read-only folder
            check_file_output(json_out, "--json", example="out.json")
        with stdout_for_json(json_out):
            status = int(args.func(args) or 0)
            check()  # a stop a finaliser swallowed (the command went on): its status
            return status
    except LoftUpError as e:  # (a path in it holding an escape, a newline: _say shows it)
        _say(f"error: {e}")
        return 2
    except BrokenPipeError:
        # whoever read stdout stopped (`loftup info --json - | head`): end quietly, as the
        # shell's tools do (status 128 + SIGPIPE), and let nothing flush there on the way out
        _drop_stdout()
        return 141
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        # a path the user gave that cannot be written (or read): its name and why, no traceback;
        # in a folder this user may not search (pathlib's is_file on 3.11): that folder, the fix
        why = (
            e.filename and e.errno in (errno.EACCES, errno.EPERM) and permission_denied(e.filename)
        )
        where = f"{e.filename}: " if e.filename else ""
        _say(f"error: {where}{why or e.strerror or e}")
        return 2
    except (KeyboardInterrupt, SystemExit) as e:  # Terminated too; HungUp a SystemExit
        if isinstance(e, SystemExit) and not _hung_up(e):
            raise
        return _stopped(e)
    except Exception as e:
        from ..errors import memory_shortfall, missing_dependency, out_of_memory

        missing = missing_dependency(e)
        if missing:
            _say(f"error: {missing}")
            return 2
        homeless = _homeless_path(args, e)
        if homeless:
            _say(f"error: {homeless}")
            return 2
        if _bad_hub_id(e):
            said = " ".join(str(e).split()).rstrip(".")
            _say(f"error: no hub id ORG/NAME: {said} (nor a file or folder here); check the "
                 "name or the path")  # fmt: skip
            return 2
        if not out_of_memory(e):
            raise
        fix = _MEMORY_FIX.get(args.command, "smaller inputs")
        if getattr(args, "task", None) == "davis":  # no probe to train: no --probe-batch-size
            fix = "a smaller --batch-size"
        _say(f"error: out of memory in loftup {args.command}: {memory_shortfall(e)}; try {fix}")
        return 2


def _drop_stdout() -> None:
    """Point stdout at the null device: the text still buffered for a closed pipe would fail
    again, with a traceback, when Python flushes it at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing to do
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _say(line: str) -> None:
    """``line`` on stderr, on a line of its own: the progress bars a failed command left open
    are closed first (else the error lands on the end of the bar's line). Under torchrun it
    starts with the process's rank: each says what ended it (one rank's error may be the cause
    of the others'), and the reader can tell which said what. What is not printable in it
    (an escape, a newline, a bidirectional control, the byte of a name that is no UTF-8: a
    path's, a file's text, an environment variable's, wherever the line quotes them) is
    written escaped (:func:`~loftup.escaping.printable`): shown, neither obeyed by the terminal
    nor breaking the line, nor reordering it (U+202E)."""
    from tqdm import tqdm

    world = os.environ.get("WORLD_SIZE", "").strip()  # not a number: the error may say so
    if world.isdigit() and int(world) > 1 and "RANK" in os.environ:
        line = f"[rank {os.environ['RANK']}] {line}"

    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot be closed must not hide the error
            pass
    try:  # one write, newline included: under torchrun the ranks' lines do not interleave
        sys.stderr.write(printable(line) + "\n")
        sys.stderr.flush()
    except OSError:  # stderr gone (its reader, `2>&1 | tee log`, ended by the same Ctrl-C):
        pass  # the exit status still says what happened
