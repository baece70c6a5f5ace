"""What a training run that a signal stops says: how to go on (:func:`stop_line`), that the
run is complete (:func:`complete_line`), or that ``final/`` is still to be exported
(:func:`export_stop_line`); kept in the run's folder (:func:`write_stop_note`, :func:`say_stop`)
for a terminal that went with the signal."""

from __future__ import annotations

import logging
import signal
from contextlib import suppress
from pathlib import Path

from ..atomic import atomic_write_bytes

#: how each signal is named in what the run says
NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP", signal.SIGINT: "Ctrl-C (SIGINT)"}
#: the file in a run's folder that keeps what its stop said (how to go on): the terminal the
#: line went to may be gone with the signal (SIGHUP: an ssh connection dropped)
STOP_NOTE = "stopped.txt"

#: How a run stopped before its last step goes on, as ``loftup train`` says it (a caller that
#: runs it, ``loftup experiment`` or ``loftup demo``, gives its own:
#: :func:`loftup.train.train`'s ``go_on``)
GO_ON = "run the same command with --resume to go on"

log = logging.getLogger("loftup.train")


def stop_line(signum: int, done: int, total: int, ckpt_path: Path, go_on: str = GO_ON) -> str:
    """What a run stopped by ``signum`` after ``done`` steps of ``total`` says: how to go on
    (``go_on``) from its checkpoint ``ckpt_path``, or that the run is complete (the last step
    taken; :func:`_complete`)."""
    if done >= total:
        last = f"{NAMES[signum]}: stopped after the last step ({done} of {total})"
        return f"{last}: {_complete(ckpt_path, go_on)}"
    return f"{NAMES[signum]}: stopped after step {done} of {total}; {ckpt_path} holds it: {go_on}"


def complete_line(done: int, total: int, ckpt_path: Path, go_on: str = GO_ON) -> str:
    """What a complete run (``done`` of ``total`` steps, its last checkpoint ``ckpt_path``)
    that an error ends as it ends says before the error: ``loftup train``'s needs no --resume;
    one a command wraps (``go_on`` its own) says how that command goes on."""
    said = _complete(ckpt_path, go_on)
    return f"the last step taken ({done} of {total}): {said}" + (
        " (no --resume needed)" if go_on == GO_ON else ""
    )


def _complete(ckpt_path: Path, go_on: str) -> str:
    """That the run is complete, ``ckpt_path`` and ``final/`` written; where a command wraps
    the run (``go_on`` not :data:`GO_ON`: ``loftup demo``, ``loftup experiment``), that this
    training run is, and how the command goes on (``go_on``): its later work is not done."""
    written = f"{ckpt_path} and {ckpt_path.parent / 'final'} are written"
    if go_on == GO_ON:
        return f"the run is complete, {written}"
    return f"this training run is complete, {written}; {go_on}"


def export_stop_line(
    signum: int, done: int, total: int, ckpt_path: Path, go_on: str = GO_ON
) -> str:
    """What a run stopped by ``signum`` as it wrote ``final/`` (after ``done`` steps of
    ``total``, its checkpoint ``ckpt_path``) says: the checkpoint holds every step, and
    ``--resume`` exports it (``go_on``, where a command wraps the run)."""
    final = ckpt_path.parent / "final"
    after = f"the last step ({done} of {total})" if done >= total else f"step {done} of {total}"
    how = "run the same command with --resume to export it" if go_on == GO_ON else go_on
    return (
        f"{NAMES[signum]}: stopped as {final} was written, after {after}; {ckpt_path} holds "
        f"it: {how}"
    )


def say_stop(out_dir: Path, line: str) -> None:
    """Log ``line`` (a stop's) and keep it in ``out_dir`` (:func:`write_stop_note`): the
    terminal may be gone (SIGHUP)."""
    write_stop_note(out_dir, line)
    log.warning("%s", line)


def write_stop_note(out_dir: Path, line: str) -> None:
    """Keep ``line`` (:func:`stop_line`) in ``out_dir``'s :data:`STOP_NOTE`; one that cannot be
    written (a full disk) does not hold up the stop."""
    with suppress(OSError):
        atomic_write_bytes(Path(out_dir) / STOP_NOTE, f"{line}\n".encode())


def clear_stop_note(out_dir: Path) -> None:
    """Remove the :data:`STOP_NOTE` of an earlier run in ``out_dir`` (this run says its own)."""
    (Path(out_dir) / STOP_NOTE).unlink(missing_ok=True)
