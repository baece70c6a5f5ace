"""The looks at the meeting point made while the main thread waits on it: the meeting's own
calls to a point another process holds (:class:`Timed`), those of gloo's rendezvous for the
others' addresses (:class:`.pulse.Rendezvous`), and the watch's over gloo's connects
(:mod:`.watch`). A store call to a point that has stopped (its process, its machine lost, the
network to it cut) waits whatever the client's time-out: the look then held the main thread,
in torch's C++, for as long as the point stayed stopped, and said nothing. Each look is made
here by a worker thread (:class:`Looks`), on a client of the point, and waited for in Python:
one that goes unanswered is timed, and named (:func:`unanswered`)."""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import weakref

from ..errors import LoftUpError
from . import point

#: the time-out (seconds) of the looks' own store clients (a connect; a wait for a key)
LOOK_WAIT = 2.0

#: how long (seconds) a worker (:class:`Looks`) waits for its next look before it ends, and
#: with it its own client (the looks come every fraction of a second while they are needed)
IDLE = 1.0

#: the looks handed and not yet done, in every :class:`Looks` of this process (:func:`in_flight`)
_PENDING: set[Look] = set()

#: every :class:`Looks` of this process, for a forked child to start afresh (:func:`_forked`)
_ALL: weakref.WeakSet[Looks] = weakref.WeakSet()
_AT_FORK: list[bool] = []  # (whether :func:`_forked` is registered)


def in_flight(since: float = float("-inf")) -> bool:
    """Whether a look handed at ``since`` (``time.monotonic()``) or later is under way or
    waiting for its worker: one left behind (unanswered, or its wait stopped by Ctrl-C) holds
    its worker in torch's C++ at a stopped point; should the point answer or close while Python
    ends the process, the call returns into a thread Python no longer runs, and the process
    aborts (SIGABRT, a C++ trace) after its one line. The command line then ends it with
    :func:`exit_now`."""
    return any(look.sent >= since for look in list(_PENDING))


def flush_stdio() -> None:
    """Flush stdout and stderr, as far as they still can be."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed, or None (pythonw)
            pass


def exit_now(status: int) -> None:
    """End the process with ``status`` now, stdio flushed (``os._exit``: no interpreter
    finalisation, which a worker still in a store call may abort; loftup's temporary files and
    locks are undone by then, by their ``with`` blocks or by the kernel)."""
    flush_stdio()
    os._exit(status)


def unanswered(lead: str, seconds: float, joining: bool = True) -> str:
    """What a process says of a meeting point that has not answered a look for ``seconds``;
    ``lead``: the words before "has not answered", which name it ("this process ... met the
    others at ..., but " + :func:`point_at`); ``joining``: said while all join the process
    group (not at the meeting before it)."""
    until = " before all joined the process group" if joining else ""
    return (
        f"{lead} has not answered for {seconds:.0f} s{until} (its machine lost or stopped, or "
        "the network to it cut); start the run again"
    )


def point_at(where: tuple[str, int]) -> str:
    """The meeting point at ``where`` (host, port), named in a sentence."""
    host, port = where
    return f"the meeting point at {host}:{port}"


class Look:
    """One call handed to a :class:`Looks`: :attr:`done` once it has returned or raised;
    :attr:`sent`: when it was handed (``time.monotonic()``; one held behind a look that hangs is
    timed from then, as the point has not answered since at least then)."""

    def __init__(self, call):
        self.call, self.done, self.sent = call, threading.Event(), time.monotonic()
        self._value, self._error = None, None

    def wait(self, silent: float, every: float, tick=None, pause=None) -> float | None:
        """Wait for the call in Python (Ctrl-C stops the wait), calling ``tick()`` (which may
        raise) each time it is seen not returned: None once it has returned or raised, else
        the seconds since it was handed once it has been seen unanswered for ``silent`` s twice,
        ``every`` s apart (a pause of this whole process is not the point's silence).
        ``pause(seconds)``: the wait between two sights of it (by default until it returns,
        ``every`` s at most), which may end sooner, or raise to end the wait."""
        pause = pause or self.done.wait
        first = None  # when it was first seen unanswered for ``silent`` s
        while not self.done.is_set():
            pause(every)
            if self.done.is_set():
                break
            if tick is not None:
                tick()
            now = time.monotonic()
            if now - self.sent >= silent:
                first = now if first is None else first
                if now - first >= every:
                    return now - self.sent
        return None

    def answered(self) -> bool:
        """Whether the call has returned (not raised)."""
        return self.done.is_set() and self._error is None

    def value(self):
        """The call's value (its error raised), once :attr:`done`."""
        if self._error is not None:
            raise self._error
        return self._value


class Looks:
    """Calls ``call(client)`` (:meth:`start`) one after the other, in the order handed, on one
    thread (the worker: started with the first, ended once idle :data:`IDLE` s, started again
    by the next) and one client of the meeting point at ``where`` (host, port): ``client``, or
    else one of the worker's own (:func:`.point.client`), made as needed and dropped where a
    call failed (a late answer would be read as the next call's) or the worker ends. A look
    that hangs (a point stopped) holds those handed after it, each timed from when it was
    handed: no thread nor client is added for them. The client is used by the worker alone
    (torch's TCPStore client takes one call at a time, and one call's time-out leaves its late
    answer to the next)."""

    def __init__(self, where: tuple[str, int], client=None):
        self.where, self._kept, self._client = where, client, client
        self._handed: collections.deque[Look] = collections.deque()
        self._ready = threading.Condition()
        self._working = False
        self._making: Look | None = None  # the look the worker is making
        if not _AT_FORK:  # (once)
            os.register_at_fork(after_in_child=_forked)
            _AT_FORK.append(True)
        _ALL.add(self)

    def start(self, call) -> Look:
        look = Look(call)
        with self._ready:
            self._handed.append(look)
            _PENDING.add(look)
            if self._working:
                self._ready.notify()
            else:
                # working before the thread starts: Ctrl-C in Thread.start (its wait for the
                # thread to run) left it False while the worker ran, and the next look started
                # a second worker on the one client
                self._working = True
                worker = threading.Thread(target=self._work, name="loftup-looks", daemon=True)
                try:
                    worker.start()
                except BaseException:
                    if worker.ident is None:  # (not started: the look is not made)
                        self._working = False
                        self._handed.remove(look)
                        _PENDING.discard(look)
                    raise
        return look

    def hung(self, after: float) -> bool:
        """Whether the look the worker is making was handed more than ``after`` s ago and has
        not returned (the point not answering now)."""
        making = self._making
        return making is not None and time.monotonic() - making.sent > after

    def _work(self) -> None:
        while True:
            with self._ready:
                if not self._ready.wait_for(lambda: self._handed, IDLE):
                    self._working = False
                    self._client = self._kept  # (the worker's own, dropped: closed)
                    return
                look = self._handed.popleft()
                self._making = look
            try:
                self._make(look)
            finally:
                self._making = None

    def _make(self, look: Look) -> None:
        try:
            if self._client is None:
                self._client = point.client(*self.where, LOOK_WAIT)
            look._value = look.call(self._client)
        except BaseException as e:  # noqa: BLE001 - said to the thread that waits for it
            look._error = e
            self._client = self._kept
        finally:
            look.done.set()
            _PENDING.discard(look)


def _forked() -> None:
    """In a forked child: no worker runs there (nor any look), whatever the parent's did, and
    the workers' own clients are the parent's connections."""
    _PENDING.clear()
    for many in list(_ALL):
        many._handed, many._ready = collections.deque(), threading.Condition()
        many._working, many._making, many._client = False, None, many._kept


class Unanswered(LoftUpError):
    """A call to the meeting point that went unanswered (:class:`Timed`)."""


class Timed:
    """``store``'s calls, each made by a worker (:class:`Looks`, on ``store`` itself) and waited
    for in Python (Ctrl-C stops the wait): one unanswered for ``silent`` s (seen twice,
    ``every`` s apart: a pause of this whole process is not the point's silence) raises
    :class:`Unanswered`, which starts with ``this`` ("this process ..."). For the meeting's own
    calls where the point is another process's (a stopped point held the meeting's wait, Ctrl-C
    ignored, for as long as it stayed stopped)."""

    def __init__(self, store, where: tuple[str, int], this: str, silent: float, every: float,
                 looks: Looks | None = None):  # fmt: skip
        self.store, self.where, self.this = store, where, this
        self.silent, self.every = silent, every
        self.looks = looks if looks is not None else Looks(where, store)

    def last(self) -> Timed | None:
        """These calls for a last word on the way out (Ctrl-C, SIGTERM): None where a look
        handed more than ``every`` s ago has not returned (the point is not answering: a call
        would queue behind it, and its wait held the process's end :data:`.pulse.SILENT_FOR`
        s), else each given ``every`` s of silence, not ``silent``."""
        if self.looks.hung(self.every):
            return None
        return Timed(self.store, self.where, self.this, self.every, self.every, self.looks)

    def __getattr__(self, name: str):
        made = getattr(self.store, name)

        def timed(*args):
            look = self.looks.start(lambda client: made(*args))
            seconds = look.wait(self.silent, self.every)
            if seconds is not None:
                host, port = self.where
                lead = f"{self.this} came to {host}:{port}, but the meeting point there"
                raise Unanswered(unanswered(lead, seconds, joining=False))
            return look.value()

        return timed
