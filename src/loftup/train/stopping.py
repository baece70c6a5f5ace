"""SIGTERM, SIGHUP and Ctrl-C (SIGINT) during a training run: stop at once before and after the
steps, after the current step (with a checkpoint) while they run; a second Ctrl-C stops at
once. What a stop says (:func:`.stop_lines.stop_line`) is also kept in the run's folder
(:func:`.stop_lines.write_stop_note`), for a terminal that went with the signal; the line a handler
says at once is written by :func:`.terminal_line.say_from_handler`; the stop each signal raises
(:class:`HungUp` for SIGHUP) and which one the ranks stop on: :mod:`.stop_signals`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import terminate
from ..stops import Scope, check, clean_up_only, owns_process, stop
from .stop_lines import (  # noqa: F401  (importable from here, as before stop_lines.py)
    GO_ON,
    NAMES,
    STOP_NOTE,
    clear_stop_note,
    complete_line,
    say_stop,
    stop_line,
    write_stop_note,
)
from .stop_signals import PRECEDENCE, HungUp, signal_of  # noqa: F401  (as before stop_signals.py)
from .terminal_line import say_from_handler

log = logging.getLogger("loftup.train")


class StopOnSignals:
    """SIGTERM (a scheduler's cancel, time limit or preemption), SIGHUP (the terminal gone: an
    ssh connection dropped without tmux or nohup) and SIGINT (Ctrl-C) during a training run (in
    the main thread). Before and after the steps each stops the run at once (:class:`Terminated`,
    :class:`HungUp`, :class:`KeyboardInterrupt`); while they run (inside :meth:`steps`, which
    ends however the steps end, by an error too) the first asks them to stop after the current
    one, with a checkpoint (:attr:`requested`: which signal; the loop then calls :meth:`stop`),
    so that no work is lost. A Ctrl-C after that stops at once, without waiting for the step (a
    later SIGTERM or SIGHUP is ignored: launchers send SIGTERM twice). ``announce``: say at the
    first signal that the run is stopping and how to stop it at once (rank 0 only, under
    torchrun); ``go_on``: how the command running the run goes on after a stop (its lines:
    :mod:`.stop_lines`); ``ignore_at_end``: the run is a torchrun job's whole command (``loftup
    train`` on several processes), whose clean-up a SIGTERM or SIGHUP does not cut short once
    its ranks voted no stop at its end (:meth:`finished`); ``hang_up_at_end``: the run is one
    process's whole command (``loftup train``), which a SIGHUP after the run still stops as a
    SIGTERM does, saying that the run is complete (:meth:`_put_back`).

    DataLoader workers ignore SIGTERM, SIGINT and SIGHUP
    (:func:`~loftup.train.loader.worker_ignores_stops`), so a signal sent to every process of
    the job (as Slurm does, and the terminal does with Ctrl-C) leaves them feeding the step
    being finished (the handler inherited by a forked worker does nothing in it either). SIGINT
    is left alone where it was ignored (a job started with ``nohup`` or in the background of a
    script), SIGHUP unless it had its default action (which ends the run with no checkpoint):
    ignored under ``nohup``, or a program's own handler. The previous handlers are put back at
    the end, but for a run of the command line's that a stop ended (or, ``ignore_at_end``,
    that ended complete): SIGTERM and SIGHUP stay ignored for the rest of its clean-up; and
    (``hang_up_at_end``) one that ended complete keeps this SIGHUP handler to the command's
    end (:meth:`_put_back`)."""

    def __init__(
        self,
        announce: bool = True,
        go_on: str = GO_ON,
        ignore_at_end: bool = False,
        hang_up_at_end: bool = False,
    ):
        self.requested: int | None = None
        self.in_steps = False
        self.stopped = False  # the steps stopped on a signal (stop): its clean-up runs
        self.announce = announce
        self.go_on = go_on
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        self._scope: Scope | None = None
        #: (steps, total, checkpoint) once the run is complete (:meth:`completed`)
        self.complete: tuple[int, int, Path] | None = None
        self.at_end = False  # the run complete, its ranks yet to vote: a signal asks (completed)
        self.ignore_at_end = ignore_at_end
        self.hang_up_at_end = hang_up_at_end
        self.clean_up = False  # a torchrun job's run complete, voted on: SIGTERM ignored

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a DataLoader worker, forked with this handler
            return
        # the clean-up is not cut short, nor the end of a run whose stop was asked for during
        # its last step (between the steps and finish_first: a launcher's second SIGTERM)
        if (self.stopped or self.clean_up or self.requested is not None) and (
            signum != signal.SIGINT
        ):
            return
        asks = self.in_steps or self.at_end
        if signum == signal.SIGHUP and not asks:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a second one: not during clean-up
            stop(HungUp(), (signal.SIGHUP, self._handle))  # (kept where a finaliser swallows it)
        if signum == signal.SIGINT and (not asks or self.requested is not None):
            stop(KeyboardInterrupt())
        if not asks:
            terminate()
        if self.requested is not None:
            return
        self.requested = signum
        if self.announce and self.in_steps:  # (at the end: the stop's line says it, soon)
            again = " (Ctrl-C again: stop at once, without one)" if signum == signal.SIGINT else ""
            say_from_handler(f"{NAMES[signum]}: stopping after this step, with a checkpoint{again}")

    @contextmanager
    def steps(self):
        """While the steps run: a signal asks them to stop after the current one (one that
        stopped the run before them, swallowed by a finaliser, stops it now)."""
        check()
        self.in_steps = True
        try:
            yield self
        finally:
            self.in_steps = False

    def votes(self) -> dict[str, float]:
        """This process's part of the step's all-reduce that stops every rank at the same step:
        whether a signal asked it to stop, and which (see :meth:`agreed`)."""
        votes = {"stop": float(self.requested is not None)}
        for signum in PRECEDENCE[:-1]:
            votes[f"stop_{signum.name.lower()}"] = float(self.requested == signum)
        return votes

    def agreed(self, means: dict[str, float]) -> int | None:
        """The signal that stops every rank after this step, from ``means`` (the :meth:`votes`
        averaged over the ranks, which are taken out of it): SIGTERM where any rank got it, else
        SIGHUP, else Ctrl-C; ``None``: no rank got one."""
        stop = means.pop("stop") > 0
        got = [s for s in PRECEDENCE[:-1] if means.pop(f"stop_{s.name.lower()}") > 0]
        if not stop:
            return None
        return got[0] if got else signal.SIGINT

    def stop(self, signum: int) -> None:
        """End the run, whose steps stopped at ``signum`` (:meth:`agreed`): :class:`Terminated`
        as SIGTERM ends a command (status 143), :class:`HungUp` for SIGHUP (129), else
        :class:`KeyboardInterrupt` as Ctrl-C does (130). A later SIGTERM or SIGHUP (a
        launcher's second; bash's, then the kernel's, at a dropped connection) is ignored while
        the clean-up runs (shutting down the DataLoader's workers, which, interrupted, would
        outlive the run); a Ctrl-C still stops at once. A run that is complete says so
        (:meth:`completed`)."""
        self.in_steps = False
        self.stopped = True
        self.say_complete(signum)
        if signum == signal.SIGTERM:
            terminate()
        if signum == signal.SIGHUP:
            raise HungUp
        raise KeyboardInterrupt

    def completed(self, steps: int, total: int, ckpt_path: Path) -> None:
        """The run is complete: ``final/`` and ``summary.json`` written after ``steps`` of
        ``total`` steps, its last checkpoint ``ckpt_path``. A stop from now on (:meth:`stop`,
        one a finaliser swallowed, one as the run's folder is let go) says so as it ends the
        run, with the line of a stop after the last step (:func:`stop_line`), once. Until
        :meth:`voted`, a signal asks the run to stop, as during the steps (the ranks vote on
        it: :func:`~loftup.train.ending.end_run`), rather than stopping it at once: a rank
        that left for it would skip a collective the others wait in."""
        self.complete = (steps, total, Path(ckpt_path))
        self.at_end = True

    def voted(self, agreed: int | None) -> int | None:
        """The signal the run stops on, the ranks' vote at its end taken (``agreed``): a
        signal from now on stops it at once, and one that asked after this process's vote
        stops this one alone (the others may have ended)."""
        self.at_end = False
        return agreed if agreed is not None else self.requested

    def finished(self) -> None:
        """The ranks voted no stop at the end of the complete run: what is left is its
        clean-up (the run's folder let go, the process group's teardown, the command's result
        said, the process's exit). Where the run is a torchrun job's whole command
        (``ignore_at_end``: ``loftup train`` on several processes) and the command line owns
        the process, a SIGTERM or SIGHUP from now on is ignored, on every rank, to the
        process's end (one that asked since this process's vote too; :meth:`_put_back`,
        :func:`~loftup.stops.clean_up_only`): one that reached a single rank ended it alone
        (143), and torchrun failed the job of a complete run. A Ctrl-C still stops at once.
        Anywhere else (one process; ``loftup demo`` or ``loftup experiment``, whose later work
        is still to do; a Python caller) a signal still stops, saying the run is complete."""
        if self.ignore_at_end and owns_process():
            self.clean_up = True
            clean_up_only()
            if self.requested != signal.SIGINT:
                self.requested = None

    def say_complete(self, signum: int | None) -> None:
        """Say (rank 0: ``announce``) that the run ``signum`` stops is complete, where it is
        (:meth:`completed`) and was not said yet; ``None``: the run ends otherwise (another
        process ended during a collective of its end), on an error said next. Where a command
        wraps the run (``go_on``: ``loftup demo``, ``loftup experiment``), whose later work is
        still to do, the line is kept in the run's ``stopped.txt`` too, as a stop's during the
        steps is (a SIGHUP's terminal is gone); the run's next start removes it."""
        complete, self.complete = self.complete, None
        if complete is not None and self.announce:
            if signum is None:
                line = complete_line(*complete, self.go_on)
            else:
                line = stop_line(signum, *complete, self.go_on)
            if self.go_on != GO_ON:
                say_stop(complete[2].parent, line)
            else:
                log.warning("%s", line)

    def caught(self, e: BaseException) -> None:
        """The stop ``e``, caught once the run is complete (a finaliser swallowed it during the
        export, or it came as rank 0's export ended), put to the ranks' vote (:meth:`votes`)
        as a signal that asked the run to stop (one that asked first stays); a later SIGTERM
        or SIGHUP is ignored meanwhile."""
        if self.requested is None:
            self.requested = signal_of(e)

    def finish_first(self) -> None:
        """A stop that came with the last step (or after its votes): the run ends as a whole
        run does (``final/`` exported) before :meth:`stop`, a later SIGTERM or SIGHUP ignored
        meanwhile as after :meth:`stop` (a Ctrl-C still stops at once)."""
        self.in_steps = False
        self.stopped = True

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        try:  # a signal as it sets them (SIGINT: raised here) leaves nothing changed
            self._scope = Scope()  # (the stops raised kept: loftup.stops)
            self._scope.__enter__()  # (closed by __exit__ whether or not this got to open it)
            self._take(signal.SIGTERM)
            if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):  # None: not Python's
                self._take(signal.SIGINT)
            if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:
                self._take(signal.SIGHUP)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _take(self, signum: int) -> None:
        """``signum``'s handler made :meth:`_handle`, the one before it kept first (put back by
        :meth:`__exit__` however far this got)."""
        self._previous[signum] = signal.getsignal(signum)
        signal.signal(signum, self._handle)

    def __exit__(self, exc_type, *exc) -> None:
        scope, self._scope = self._scope, None
        late = None
        if scope is not None and exc_type is None:
            try:  # a stop a finaliser swallowed after the steps (the loader's __del__, the
                check()  # export): its scope's end would forget it (train() from Python)
            except BaseException as e:
                late, exc_type = e, type(e)
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, HungUp)):
            self.say_complete(signal_of(late or exc[0]))  # (a stop once the run is complete)
        try:
            self._put_back(scope, exc_type)
        finally:
            if late is not None:
                raise late

    def _put_back(self, scope, exc_type) -> None:
        """Close this run's scope and put back the handlers it took; where the run ends with a
        stop (SIGTERM, SIGHUP or Ctrl-C), or its clean-up alone is left (:meth:`finished`), and
        is the command line's (it owns the process: :func:`~loftup.stops.owns_process`),
        SIGTERM and SIGHUP are left ignored instead: the command's clean-up goes on (the
        DataLoader's shutdown, the process group's), and the command line puts both back as it
        found them as it returns (the console script: as the process exits). SIGHUP is left ignored
        only where this run took it or it has its default action (a handler of the caller's
        stays). Where the run is one process's whole command (``hang_up_at_end``) and ends
        complete, SIGHUP's handler, if this run took it, stays this one until the command line
        puts back the default as it returns: a SIGHUP in the command's clean-up (its result
        said) stops it as its SIGTERM handler does, with :class:`HungUp` (status 129), the run
        said complete, where the default action killed it without a word; a second one is
        ignored (:meth:`_handle`). A Python caller's handlers are put back whatever they are
        (loftup's terminate too: it is not the command line for that). A stop as the scope
        closes (this run's handler still on: :meth:`_handle` stops at once, the run not asking
        any more) is a stop the run ends with: the handlers are put back as for one, then it
        is raised (they were left as the run had set them, for the caller's rest)."""
        late = None
        try:
            if scope is not None:
                scope.__exit__()
        except (KeyboardInterrupt, HungUp) as e:  # (Terminated a KeyboardInterrupt)
            late, exc_type = e, type(e)
        stopped = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, HungUp))
        ignored = (stopped or self.clean_up) and owns_process()  # (Terminated a KeyboardInterrupt)
        hang_up = self.hang_up_at_end and self.complete is not None and exc_type is None
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            previous = self._previous.pop(signum, None)
            mine = previous is not None or signal.getsignal(signum) == signal.SIG_DFL
            if ignored and signum != signal.SIGINT and (signum == signal.SIGTERM or mine):
                signal.signal(signum, signal.SIG_IGN)  # (a Ctrl-C still stops at once)
            elif signum == signal.SIGHUP and previous is not None and hang_up and owns_process():
                continue  # (this handler: raises HungUp, the run not asking any more)
            elif previous is not None:
                signal.signal(signum, previous)
        if late is not None:
            raise late
