"""The main thread's looks at the meeting point while gloo's rendezvous waits for the others'
addresses (:class:`.pulse.Rendezvous`). A store call to a point that has stopped (its process,
its machine lost, the network to it cut) waits whatever the client's time-out: the look then
held the main thread, in torch's C++, for as long as the point stayed stopped, and said
nothing. Each look is made here on a client of its own (:func:`.point.client`) from a thread
of its own, and waited for in Python: one that goes unanswered is timed, and named
(:func:`unanswered`), as the watch's are (:mod:`.watch`)."""

from __future__ import annotations

import threading
import time

from ..errors import LoftUpError
from . import point

#: the time-out (seconds) of the looks' own store clients (a connect; a wait for a key)
LOOK_WAIT = 2.0


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
    """One call under way on its own thread, on ``client`` (None: a new one, to ``where``):
    :attr:`done` once it has returned or raised; :attr:`sent`: when it was made
    (``time.monotonic()``)."""

    def __init__(self, call, client, where: tuple[str, int]):
        self.done, self.sent = threading.Event(), time.monotonic()
        self.client, self._value, self._error = client, None, None
        threading.Thread(target=self._make, args=(call, where), name="loftup-look",
                         daemon=True).start()  # fmt: skip

    def _make(self, call, where) -> None:
        try:
            if self.client is None:
                self.client = point.client(*where, LOOK_WAIT)
            self._value = call(self.client)
        except BaseException as e:  # noqa: BLE001 - said to the thread that waits for it
            self._error = e
        finally:
            self.done.set()

    def wait(self, silent: float, every: float, tick=None) -> float | None:
        """Wait for the call in Python (Ctrl-C stops the wait), calling ``tick()`` (which may
        raise) each ``every`` s it has not returned: None once it has returned or raised, else
        the seconds since it was made once it has gone unanswered for ``silent`` s twice in a
        row, ``every`` s apart (a pause of this whole process is not the point's silence)."""
        stuck = 0
        while not self.done.wait(every):
            if tick is not None:
                tick()
            stuck = stuck + 1 if time.monotonic() - self.sent >= silent else 0
            if stuck >= 2:
                return time.monotonic() - self.sent
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
    """Calls ``call(client)`` on a client of the meeting point at ``where`` (host, port) of
    their own, one at a time (:meth:`start`); a client whose call failed or went unanswered is
    dropped (a late answer would be read as the next call's), the next call makes a new one."""

    def __init__(self, where: tuple[str, int]):
        self.where = where
        self._last: Look | None = None

    def start(self, call) -> Look:
        last = self._last
        kept = last.client if last is not None and last.answered() else None
        self._last = Look(call, kept, self.where)
        return self._last


class Unanswered(LoftUpError):
    """A call to the meeting point that went unanswered (:class:`Timed`)."""


class Timed:
    """``store``'s calls, each made on a thread of its own and waited for in Python (Ctrl-C
    stops the wait): one unanswered for ``silent`` s (twice in a row, ``every`` s apart: a
    pause of this whole process is not the point's silence) raises :class:`Unanswered`, which
    starts with ``this`` ("this process ..."). For the meeting's own calls where the point is
    another process's (a stopped point held the meeting's wait, Ctrl-C ignored, for as long as
    it stayed stopped)."""

    def __init__(self, store, where: tuple[str, int], this: str, silent: float, every: float):
        self.store, self.where, self.this = store, where, this
        self.silent, self.every = silent, every

    def __getattr__(self, name: str):
        made = getattr(self.store, name)

        def timed(*args):
            look = Look(lambda client: made(*args), self.store, self.where)
            seconds = look.wait(self.silent, self.every)
            if seconds is not None:
                host, port = self.where
                lead = f"{self.this} came to {host}:{port}, but the meeting point there"
                raise Unanswered(unanswered(lead, seconds, joining=False))
            return look.value()

        return timed
