"""The watch over torch's C++ part of the gloo group's join (:mod:`.meeting`): its connects
between the ranks, each try :data:`.join.CONNECT` s and tried again, where a rank killed just
as the others connect to it held them about 25 s, Ctrl-C ignored (Python's handlers run only
once the main thread is back in Python), and no look at the others' pulses was made.

:class:`Watch` looks at the others' pulses and at the meeting point from a thread of its own,
which makes no store call: its looks are made by the worker of the main thread's own looks
(:class:`.looks.Looks`, the rendezvous's: one client of the point, not the shared one, whose
calls wait the meeting's whole wait, and the pulse's beats queue behind them), and timed here
(a point that stops answering, its machine lost, holds a look whatever the client's time-out),
while the signals are taken. What they see (a rank gone silent, RANK=0's meeting point closed,
or not answering for :data:`.pulse.SILENT_FOR` s) ends the process at once with that one line
(status 2) only where loftup's command line owns the process
(:func:`loftup.stops.owning_the_process`); there Ctrl-C (130) and SIGTERM under loftup's
own handler (143; torchrun's stop of the others) end it too. Called from Python
(``upsample_folder``, ``loftup.train.train``, a notebook) the process is the caller's: the join
ends as torch ends it, signals are left as they are, and the join's LoftUpError says what the
watch saw (:attr:`Watch.saw`)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import threading

from ..errors import printable, terminate
from ..stops import interrupt, owns_process
from .looks import LOOK_WAIT, Looks, exit_now, flush_stdio, point_at, unanswered
from .pulse import BEAT_EVERY, SILENT_FOR, Rendezvous, Silence


class _Over(Exception):
    """The block is over (:meth:`Watch._pause`)."""


class Watch:
    """For the ``with`` block (torch's join of the group, ``group`` its store, RANK=``rank``
    of ``world`` at the meeting ``key`` of the point at ``where`` (host, port)), a thread that
    looks at the others' pulses and the point while the main thread is in torch's C++; what it
    sees is :attr:`saw`, and, where the command line owns the process, ends it. Whichever ends
    first, the block or the watch, has the last word: one line."""

    def __init__(self, group: Rendezvous, where: tuple[str, int], key: str, rank: int, world: int):
        self.group, self.where, self.rank = group, where, rank
        # the looks' worker and client are the main thread's (a group without: its own)
        self.looks = group.looks if group.looks is not None else Looks(where)
        self.silence = Silence(None, key, rank, world)
        self.ends = owns_process()
        self.saw: str | None = None  # what the looks saw (a LoftUpError's text)
        self.said = threading.Lock()  # held by whoever ends the join: the block or the watch
        self.over = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="loftup-watch", daemon=True)
        # signals are taken only where the process may be ended for them, on the main thread
        self.signals = self.ends and threading.current_thread() is threading.main_thread()
        self.wake = self.woken = None  # signals (set_wakeup_fd), and the block's end
        self.earlier = -1  # the wakeup fd that was set before (signals are passed on to it)

    def __enter__(self) -> Watch:
        with contextlib.ExitStack() as undo:  # (a part that fails undoes those before it)
            if self.signals:
                self.wake, self.woken = socket.socketpair()
                undo.callback(self._close)
                self.wake.setblocking(False)
                self.woken.setblocking(False)
                self.earlier = signal.set_wakeup_fd(self.wake.fileno(), warn_on_full_buffer=False)
                undo.callback(self._restore)
            undo.callback(self._stop)
            self.thread.start()
            undo.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._restore()  # first: signals from now on are the earlier fd's, as before
        finally:
            try:  # (a KeyboardInterrupt in a wait below leaves the sockets closed all the same)
                self._stop()
            finally:
                self._close()

    def _restore(self) -> None:
        if self.signals and self.wake is not None:
            signal.set_wakeup_fd(self.earlier)

    def _stop(self) -> None:
        with self.said:  # (waits while the watch ends the process)
            self.over.set()
        if self.wake is not None:
            with contextlib.suppress(OSError):  # (full of signals not taken yet: it wakes)
                self.wake.send(b"\0")
        if self.thread.ident is not None:  # (no store call: it ends at once; a look that hangs
            self.thread.join(LOOK_WAIT)  # is left to the looks' worker)
        self._pass_on()  # what came after the thread's last read (it has ended by now)

    def _close(self) -> None:
        for end in (self.wake, self.woken):
            if end is not None:
                end.close()

    def _watch(self) -> None:
        """The watching thread: the others' pulses and the meeting point, each
        :data:`BEAT_EVERY` s, until the block ends or one is seen (:attr:`saw`), each look
        handed to the looks' worker and timed here (:meth:`.looks.Look.wait`: one may hang, a
        point stopped, whatever the client's time-out), the signals taken meanwhile."""
        try:
            while self.saw is None:
                if self.group.looking:  # (its own looks say it)
                    self._pause(BEAT_EVERY)
                    continue
                gone = self.group.point_gone()
                if gone is not None:
                    return self._saw(str(gone))
                look = self.looks.start(self._round)
                self._pause(BEAT_EVERY)  # (it answers meanwhile, in a few ms)
                seconds = look.wait(SILENT_FOR, BEAT_EVERY, pause=self._pause)
                if seconds is not None:
                    lead = f"{self.group.met} {point_at(self.where)}"
                    return self._saw(unanswered(lead, seconds))
                if look.answered() and look.value():  # (one that failed: the next look says)
                    return self._saw(str(self.group.went_silent(look.value(), self.silence)))
        except _Over:
            pass
        return None

    def _round(self, client) -> list[int]:
        """One look, on ``client`` (by the looks' worker, which closes it once idle): the ranks
        gone silent."""
        return self.silence.gone(store=client)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` s (less where a signal comes), then take the signals that came,
        at once where the process is the command's; :class:`_Over` once the block is over."""
        if self.woken is None:
            self.over.wait(seconds)
        else:
            try:
                select.select([self.woken], [], [], seconds)
            except (OSError, ValueError):  # closed: the block is over
                raise _Over from None
        for number in self._pass_on():
            said = _signal_said(number) if self.ends else None
            if said is not None:
                self._end(*said)
        if self.over.is_set():
            raise _Over

    def _pass_on(self) -> list[int]:
        """The signal numbers in the wake-up socket, passed on to the earlier wakeup fd
        (asyncio, say, learns of its signals from it)."""
        try:
            got = self.woken.recv(256) if self.woken is not None else b""
        except (BlockingIOError, OSError):
            return []
        got = got.replace(b"\0", b"")
        if got and self.earlier != -1:
            with contextlib.suppress(OSError):
                os.write(self.earlier, got)
        return list(got)

    def _saw(self, text: str) -> None:
        self.saw = text
        if self.ends:
            self._end(f"error: {text}", 2)

    def _end(self, said: str, status: int) -> None:
        if not self.said.acquire(blocking=False):
            return  # the join is over: the block says what comes next
        if self.over.is_set():
            self.said.release()
            return
        _end(f"[rank {self.rank}] {said}", status)


def _signal_said(number: int) -> tuple[str, int] | None:
    """What to end the process with for the signal ``number`` (its line, less the rank; its
    status), or None where the handler the command set is not loftup's."""
    ctrl_c = (signal.default_int_handler, interrupt)  # Python's, or the command line's
    if number == signal.SIGINT and signal.getsignal(number) in ctrl_c:
        return "interrupted", 130
    if number == signal.SIGTERM and signal.getsignal(number) is terminate:
        return "terminated (SIGTERM)", 143
    return None


def _end(line: str, status: int) -> None:
    """End the process with ``line`` on stderr and exit ``status``, now: the main thread is in
    torch's C++, where no exception reaches it."""
    flush_stdio()
    try:
        sys.stderr.write(printable(line) + "\n")  # a quoted path's escape: shown
    except (AttributeError, OSError, ValueError):  # stderr gone: the status still says it
        pass
    exit_now(status)
