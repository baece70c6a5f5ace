"""The watch over torch's C++ part of the gloo group's join (:mod:`.meeting`): its connects
between the ranks, each try :data:`.join.CONNECT` s and tried again, where a rank killed just
as the others connect to it held them about 25 s, Ctrl-C ignored (Python's handlers run only
once the main thread is back in Python), and no look at the others' pulses was made. A thread
here (:class:`Watch`) sees what the main thread cannot, and ends the process at once with the
one line the command would have said: a rank gone silent or RANK=0's meeting point closed
(status 2), Ctrl-C (130), SIGTERM under loftup's own handler (143; torchrun's stop of the
others). What the main thread's own looks at the store (:class:`.pulse.Rendezvous`) see, they
say themselves, as an exception: the watch leaves it to them."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import sys
import threading

from ..errors import terminate
from .pulse import BEAT_EVERY, Rendezvous, Silence

#: gloo's own lines of a connect that failed (each try's, then torch's of the whole), which
#: the join's error (:func:`.join.join_failed`) says again, its first line included: the user's
#: one line was at the bottom of five
_GLOOS_CONNECT_LINES = re.compile(
    rb"\] ERROR failed to connect, willRetry=|\] Gloo connectFullMesh failed with "
)


class StderrLessGloosConnectLines:
    """For the ``with`` block, what is written to file descriptor 2 (C++'s logs, and Python's
    own stderr) passed on there by a thread, line by line as each comes, less gloo's lines of a
    failed connect (:data:`_GLOOS_CONNECT_LINES`)."""

    def __init__(self):
        self.stderr = -1  # (what file descriptor 2 was, while the block runs)

    def __enter__(self) -> StderrLessGloosConnectLines:
        _flush()
        try:
            self.stderr = os.dup(2)
        except OSError:  # no stderr (closed by a daemon): nothing to keep clean
            return self
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.thread = threading.Thread(target=self._pass_on, args=(read,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.stderr < 0:
            return
        _flush()
        os.dup2(self.stderr, 2)  # (the pipe's last writer: its reader is at its end)
        self.thread.join()
        os.close(self.stderr)
        self.stderr = -1

    def _pass_on(self, read: int) -> None:
        with open(read, "rb") as pipe, open(self.stderr, "wb", closefd=False) as to:
            for line in pipe:  # (a line as soon as it is whole: a pipe's read takes what came)
                if not _GLOOS_CONNECT_LINES.search(line):
                    to.write(line)
                    to.flush()


class Watch:
    """For the ``with`` block (torch's join of the group, ``group`` its store, RANK=``rank``
    of ``world`` at the meeting ``key``), a thread that ends the process where a rank goes
    silent, the meeting point closes, or Ctrl-C (SIGTERM) comes while the main thread is in
    torch's C++. Whichever ends first, the block or the thread, has the last word: one line."""

    def __init__(self, group: Rendezvous, store, key: str, rank: int, world: int):
        self.group, self.rank = group, rank
        self.silence = Silence(store, key, rank, world)
        self.said = threading.Lock()  # held by whoever ends the join: the block or the thread
        self.over = False
        self.wake, self.woken = socket.socketpair()  # signals (set_wakeup_fd), and the block's end
        self.wake.setblocking(False)
        self.woken.setblocking(False)
        self.earlier = -1  # the wakeup fd that was set before (signals are passed on to it)
        self.pending: list[int] = []
        self.stderr = StderrLessGloosConnectLines()
        self.thread = threading.Thread(target=self._watch, name="loftup-watch", daemon=True)

    def __enter__(self) -> Watch:
        if threading.current_thread() is threading.main_thread():
            self.earlier = signal.set_wakeup_fd(self.wake.fileno(), warn_on_full_buffer=False)
        self.stderr.__enter__()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self.said:  # (waits while the thread ends the process)
            self.over = True
        with contextlib.suppress(OSError):  # (full of signals not taken yet: it wakes anyway)
            self.wake.send(b"\0")
        self.thread.join()
        self.stderr.__exit__()
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self.earlier)
        self.wake.close()
        self.woken.close()

    def _watch(self) -> None:
        while not self.over:
            select.select([self.woken], [], [], BEAT_EVERY)
            self._take_signals()
            if self.over:
                return
            said = self._stuck()
            if said is None or self.group.looking:  # (its own looks say it)
                continue
            if not self.said.acquire(blocking=False):  # the join is over: nothing to say
                return
            if self.over:
                self.said.release()
                return
            self.stderr.__exit__()  # (what was written before passed on first)
            _end(f"[rank {self.rank}] {said[0]}", said[1])

    def _take_signals(self) -> None:
        try:
            got = self.woken.recv(256)
        except BlockingIOError:
            return
        if self.earlier != -1:  # (asyncio, say, learns of its signals from it)
            try:
                os.write(self.earlier, got.replace(b"\0", b""))
            except OSError:
                pass
        self.pending += [n for n in got if n]

    def _stuck(self) -> tuple[str, int] | None:
        """What to end the process with (its line, less the rank; its status), or None."""
        for number in self.pending:
            if number == signal.SIGINT and signal.getsignal(number) is signal.default_int_handler:
                return "interrupted", 130
            if number == signal.SIGTERM and signal.getsignal(number) is terminate:
                return "terminated (SIGTERM)", 143
        gone = self.group.point_gone()
        if gone is not None:
            return f"error: {gone}", 2
        try:
            silent = self.silence.gone()
        except Exception:  # noqa: BLE001 - the point closing under the look: said at the next
            return None
        if silent:
            return f"error: {self.group.went_silent(silent, self.silence)}", 2
        return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or None (pythonw)
            pass


def _end(line: str, status: int) -> None:
    """End the process with ``line`` on stderr and exit ``status``, now: the main thread is in
    torch's C++, where no exception reaches it."""
    _flush()
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr gone: the status still says what happened
        pass
    os._exit(status)
