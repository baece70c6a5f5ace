"""A training run's end, once its steps are taken: rank 0 exports the run (``final/``,
``summary.json``), then every rank stops on a signal that any of them caught since, or
none does. Under torchrun a stop caught by one process alone (a finaliser swallowed it
during the export, or it came as the export ended) ended that one with only "terminated
(SIGTERM)" while the others said the run was done and exited 0."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..stops import check
from .distributed import DistInfo, barrier, collective_failure, mean_over_ranks
from .stop_lines import export_stop_line, say_stop
from .stop_signals import HungUp, signal_of
from .stopping import StopOnSignals


def end_run(
    signals: StopOnSignals,
    info: DistInfo,
    export: Callable[[Callable[[], None]], object],
    steps: int,
    total: int,
    ckpt_path: Path,
) -> None:
    """Rank 0 runs ``export(done)``, which calls ``done()`` once the run is complete (``final/``
    and ``summary.json`` written after ``steps`` of ``total`` steps, its last checkpoint
    ``ckpt_path``: :meth:`StopOnSignals.completed`). From then on (on the other ranks, from
    their wait for it) a signal asks the run to stop rather than stopping it at once, and a
    stop a finaliser swallowed during the export is raised again (:func:`check`) and caught:
    every rank takes part in one vote, stop or none (as the steps' votes:
    :meth:`StopOnSignals.votes`), and every rank stops on the agreed signal
    (:meth:`StopOnSignals.stop`), rank 0 saying that the run is complete; a stop that came
    with the last step (:meth:`StopOnSignals.finish_first`) votes there too. A stop during the
    export itself ends rank 0 at once, as after the steps, saying (and keeping in
    ``stopped.txt``) that ``--resume`` exports the run (:func:`_stopped_in_export`); another
    rank that got a signal meanwhile (one sent to all) stops on it as it hears that rank 0
    ended, where it said that another process had ended. A rank that died fails the others'
    collective at once (a hung one after LOFTUP_DIST_TIMEOUT): nothing waits for ever, and
    rank 0, its run complete, says so before that error, which says that nothing is lost
    (:func:`_another_ended`)."""

    def done() -> None:
        signals.completed(steps, total, ckpt_path)

    try:  # (a signal as rank 0's export ends asks from then on: see completed)
        if info.is_main:
            export(done)
    except (KeyboardInterrupt, HungUp) as e:  # (Terminated a KeyboardInterrupt)
        if signals.complete is None:  # during the export: not complete
            _stopped_in_export(signals, e, steps, total, ckpt_path)
            raise
        signals.caught(e)
    signals.at_end = True  # (the others: a signal as they wait for rank 0's export asks too)
    try:
        barrier(info)  # rank 0's export is whole before any process goes on
    except RuntimeError as e:  # another process ended (rank 0 stopped at once during its export)
        _another_ended(signals, e, info)
        raise
    done()
    try:
        check()  # a stop a finaliser swallowed during the export (or kept since)
    except (KeyboardInterrupt, HungUp) as e:
        signals.caught(e)
    try:
        means = mean_over_ranks(signals.votes(), info)
    except RuntimeError as e:  # another process ended before its vote
        _another_ended(signals, e, info)
        raise
    agreed = signals.agreed(means)
    if agreed is None:  # (the command line's: SIGTERM and SIGHUP ignored from now on)
        signals.finished()
    agreed = signals.voted(agreed)
    if agreed is not None:
        signals.stop(agreed)


def _stopped_in_export(
    signals: StopOnSignals, e: BaseException, steps: int, total: int, ckpt_path: Path
) -> None:
    """Rank 0's export stopped by ``e`` before the run was complete (``final/`` or
    ``summary.json`` not written): its checkpoint holds every step, and the run's line says
    so, that ``--resume`` exports it (or how the command wrapping it goes on), kept in
    ``stopped.txt`` as a stop during the steps is (a SIGHUP's terminal is gone)."""
    if signals.announce:
        line = export_stop_line(signal_of(e), steps, total, ckpt_path, signals.go_on)
        say_stop(ckpt_path.parent, line)


def _another_ended(signals: StopOnSignals, e: RuntimeError, info: DistInfo) -> None:
    """Another process ended during a collective of the run's end (the barrier, the vote;
    ``e`` its error): this one stops on the signal it got meanwhile (one sent to all), rank 0
    saying that the run is complete where it is; with none, rank 0 of a complete run says so
    and raises the error that another process ended after the run was complete, nothing lost
    (else the caller raises ``e``: :func:`~.distributed.collective_failure` says it), and a
    signal from now on stops this process at once (:meth:`StopOnSignals.voted`)."""
    if signals.requested is not None:
        signals.stop(signals.voted(None))
    signals.voted(None)
    complete = signals.complete is not None
    signals.say_complete(None)
    failure = collective_failure(e, info, complete=complete)
    if complete and failure is not None:
        raise failure from None
