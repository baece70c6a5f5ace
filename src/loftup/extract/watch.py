"""The watch over torch's C++ part of the gloo group's join (:mod:`.meeting`): its connects
between the ranks, each try :data:`.join.CONNECT` s and tried again, where a rank killed just
as the others connect to it held them about 25 s, Ctrl-C ignored (Python's handlers run only
once the main thread is back in Python), and no look at the others' pulses was made.

:class:`Watch` looks at the others' pulses and at the meeting point from a thread of its own,
with a store client of its own (the shared one's calls wait the meeting's whole wait, and the
pulse's beats queue behind them); a second thread, which makes no store call, times those looks
(a point that stops answering, its machine lost, holds a look whatever the client's time-out)
and takes the signals. What they see (a rank gone silent, RANK=0's meeting point closed, or
not answering for :data:`.pulse.SILENT_FOR` s) ends the process at once with that one line
(status 2) only where loftup's command line owns the process
(:func:`loftup.cli.common.owning_the_process`); there Ctrl-C (130) and SIGTERM under loftup's
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
import time

from ..errors import terminate
from . import looks, point
from .looks import point_at, unanswered
from .pulse import BEAT_EVERY, SILENT_FOR, Rendezvous, Silence

#: the time-out (seconds) of the watch's own store client (:func:`.point.client`), and the
#: longest wait for each of its threads at the block's end (a look that hangs is left to its
#: daemon thread)
LOOK_WAIT = looks.LOOK_WAIT


def _cli_owns_process() -> bool:
    from ..cli.common import owns_process

    return owns_process()


class Watch:
    """For the ``with`` block (torch's join of the group, ``group`` its store, RANK=``rank``
    of ``world`` at the meeting ``key`` of the point at ``where`` (host, port)), threads that
    look at the others' pulses and the point while the main thread is in torch's C++; what they
    see is :attr:`saw`, and, where the command line owns the process, ends it. Whichever ends
    first, the block or the watch, has the last word: one line."""

    def __init__(self, group: Rendezvous, where: tuple[str, int], key: str, rank: int, world: int):
        self.group, self.where, self.rank = group, where, rank
        self.silence = Silence(None, key, rank, world)
        self.ends = _cli_owns_process()
        self.saw: str | None = None  # what the looks saw (a LoftUpError's text)
        self.said = threading.Lock()  # held by whoever ends the join: the block or the watch
        self.over = threading.Event()
        self.asking: float | None = None  # since when the looks have had no answer
        self.looker = threading.Thread(target=self._look, name="loftup-looks", daemon=True)
        self.watcher = threading.Thread(target=self._take, name="loftup-watch", daemon=True)
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
            self.watcher.start()
            self.looker.start()
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
        if self.watcher.ident is not None:  # (no store call: it ends within BEAT_EVERY s)
            self.watcher.join(LOOK_WAIT)
        if self.looker.ident is not None:  # (a look that hangs is left to its daemon thread)
            self.looker.join(LOOK_WAIT)
        self._pass_on()  # what came after the watcher's last read (it has ended by now)

    def _close(self) -> None:
        for end in (self.wake, self.woken):
            if end is not None:
                end.close()

    def _take(self) -> None:
        """The watching thread, which makes no store call (one may hang whatever its
        time-out): signals, taken at once where the process is the command's, and the looks'
        answers, timed."""
        stuck = 0  # (how many times in a row a look was seen unanswered too long)
        while not self.over.is_set():
            if self.woken is None:
                self.over.wait(BEAT_EVERY)
            else:
                try:
                    select.select([self.woken], [], [], BEAT_EVERY)
                except (OSError, ValueError):  # closed: the block is over
                    return
            for number in self._pass_on():
                said = _signal_said(number) if self.ends else None
                if said is not None:
                    self._end(*said)
            asking = self.asking
            if self.saw is not None or asking is None:
                stuck = 0
                continue
            # twice in a row, BEAT_EVERY s apart: a pause of this whole process (SIGSTOP, a
            # machine suspended) is not the point's silence, and the look answers after it
            stuck = stuck + 1 if time.monotonic() - asking >= SILENT_FOR else 0
            if stuck >= 2:
                lead = f"{self.group.met} {point_at(self.where)}"
                self._saw(unanswered(lead, time.monotonic() - asking))

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

    def _look(self) -> None:
        """The looking thread: the others' pulses and the meeting point, each
        :data:`BEAT_EVERY` s, until the block ends or one is seen (:attr:`saw`). A look may
        hang (a point stopped: the client's time-out is not kept by every call): the watching
        thread times them (:attr:`asking`)."""
        client = None
        while not self.over.wait(BEAT_EVERY) and self.saw is None:
            if self.group.looking:  # (its own looks say it)
                continue
            gone = self.group.point_gone()
            if gone is not None:
                return self._saw(str(gone))
            if self.asking is None:
                self.asking = time.monotonic()
            try:
                if client is None:
                    client = self.silence.store = point.client(*self.where, LOOK_WAIT)
                silent = self.silence.gone()
                self.asking = None
            except Exception:  # noqa: BLE001 - timed out, or the point closed under it
                client = None  # (a late answer would be read as the next look's)
                gone = None if self.over.is_set() else self.group.point_gone(grace=1.0)
                if gone is not None:
                    return self._saw(str(gone))
                continue
            if silent:
                return self._saw(str(self.group.went_silent(silent, self.silence)))
        return None

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
    if number == signal.SIGINT and signal.getsignal(number) is signal.default_int_handler:
        return "interrupted", 130
    if number == signal.SIGTERM and signal.getsignal(number) is terminate:
        return "terminated (SIGTERM)", 143
    return None


def _end(line: str, status: int) -> None:
    """End the process with ``line`` on stderr and exit ``status``, now: the main thread is in
    torch's C++, where no exception reaches it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or None (pythonw)
            pass
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # stderr gone: the status still says it
        pass
    os._exit(status)
