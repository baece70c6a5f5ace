"""From the meeting (:mod:`.meeting`) into the process group: gloo's own rendezvous (each
rank publishes its address at the store, then reads the others') waited in torch's C++ store,
which a process killed after the meeting held up for all that was left of the meeting's wait
(minutes), and which let Ctrl-C wait as long. Here each process beats (:class:`Pulse`) until it
has joined, and the group's store (:class:`Rendezvous`) waits for an address in Python's own
looks: between two, Ctrl-C stops it, and a process whose beat has stopped for
:data:`SILENT_FOR` seconds, with the group not whole, ends the others' wait, named.

Under ``key`` (the meeting's), ``key/pulse/R`` is RANK=R's beat, a count, or :data:`JOINED`
once RANK=R has joined the group (it then beats no more, and is waited for no more)."""

from __future__ import annotations

import threading
import time

import torch.distributed as dist

from ..errors import LoftUpError
from .claims import LOOK_EVERY, read
from .looks import Looks, point_at, unanswered
from .point import ANSWER, closed

#: how often (seconds) a process beats while it joins the group
BEAT_EVERY = 0.5

#: how long (seconds) a process may be silent (no beat) before the others take it for gone:
#: many beats, so that a live one on a loaded machine is not
SILENT_FOR = 5.0

#: how long (seconds) a process that has never beaten may be silent: its beat starts once it
#: has met the others, and a look at the meeting point under way then (a store call, up to
#: :data:`.point.ANSWER` s where the network is slow) delays it
SILENT_FIRST = SILENT_FOR + ANSWER

#: a process's last word at its pulse: it has joined the group
JOINED = "joined"


class Pulse:
    """RANK=``rank``'s beat at the meeting ``key`` of ``store``, from a thread, for the
    ``with`` block; :meth:`joined` (in the block) makes its last word :data:`JOINED`. A block
    left otherwise (an error, Ctrl-C) leaves the beat to stop: the others are told."""

    def __init__(self, store, key: str, rank: int, line=None):
        self.store, self.at, self.line = store, f"{key}/pulse/{rank}", line
        self.stop, self.last = threading.Event(), None
        self.thread = threading.Thread(target=self._beat, name="loftup-pulse", daemon=True)

    def __enter__(self) -> Pulse:
        self._set("1")  # the first beat now, not when the thread first runs
        self.thread.start()
        return self

    def _set(self, beat: str) -> bool:
        try:
            self.store.set(self.at, beat)
            return True
        except Exception:  # the point closed (RANK=0 gone): the others are told by it
            return False

    def joined(self) -> None:
        self.last = JOINED

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        if self.last is not None:
            self.store.set(self.at, self.last)

    def _beat(self) -> None:
        count = 1
        while not self.stop.wait(BEAT_EVERY) and not closed(self.line):  # (closed: a set logs)
            count += 1
            if not self._set(str(count)):
                return


class Silence:
    """The others' pulses at the meeting ``key``, as RANK=``rank`` sees them over time."""

    def __init__(self, store, key: str, rank: int, world: int):
        self.store, self.ranks = store, [r for r in range(world) if r != rank]
        self.keys = [f"{key}/pulse/{r}" for r in self.ranks]
        self.heard: dict[int, tuple[str, float]] = {}  # rank: (its beat, when first seen)
        self.next_look = 0.0

    def gone(self, now: float | None = None, store=None) -> list[int]:
        """The ranks, not joined, whose beat has not changed for :data:`SILENT_FOR` seconds
        (none that never beat before this process first looked: its clock, not theirs), or
        that have not beaten at all for :data:`SILENT_FIRST` seconds; ``now``: the time
        (``time.monotonic()`` unless given); ``store``: the client to look on (this one's
        unless given)."""
        now = time.monotonic() if now is None else now
        if now < self.next_look:
            return []
        self.next_look = now + BEAT_EVERY
        gone = []
        for r, beat in zip(self.ranks, read(self.store if store is None else store, self.keys)):
            if beat == JOINED:
                continue
            if self.heard.get(r, (None,))[0] != beat:
                self.heard[r] = (beat, now)
            elif now - self.heard[r][1] >= (SILENT_FOR if beat else SILENT_FIRST):
                gone.append(r)
        return gone


class Rendezvous(dist.Store):
    """``store`` as the group's rendezvous uses it: until :meth:`joined`, a wait for keys (the
    others' addresses) is looks at them, until ``deadline`` (``time.monotonic()``) and while no
    other process is silent (:class:`Silence`); either ends it with a LoftUpError that starts
    with ``met`` ("this process ... met the others at ..., but"). Then, the store's own calls.
    Kept referenced while a group uses it: torch holds only its C++ half."""

    def __init__(self, store, key, rank, world, deadline: float, met: str, line=None,
                 where: tuple[str, int] | None = None):  # fmt: skip
        super().__init__()
        self.inner, self.deadline, self.met, self.line = store, deadline, met, line
        # the main thread's looks, on a client of their own, timed (None: on ``store``)
        self.looks = Looks(where) if where is not None else None
        self.seconds = deadline - time.monotonic()
        self.silence: Silence | None = Silence(store, key, rank, world)
        self.looking = False  # whether this process's own looks (:meth:`_look`) are under way
        self.read: dict[str, bytes] = {}  # what it read while it joined (:meth:`addresses`)

    def joined(self) -> None:
        self.silence = None

    def point_gone(self, grace: float = 0.0) -> LoftUpError | None:
        """RANK=0's end, told, where the meeting point has closed (within ``grace`` seconds:
        a store call that failed as RANK=0 went may come just before the close)."""
        end = time.monotonic() + grace
        while not closed(self.line):
            if self.line is None or time.monotonic() >= end:
                return None
            time.sleep(0.01)
        return LoftUpError(
            f"{self.met} RANK=0, which holds the meeting point, ended before all joined the "
            "process group (killed, or an error of its own, which says why); start the run again"
        )

    def went_silent(self, gone: list[int], silence: Silence) -> LoftUpError:
        """What this process says of the ranks ``gone`` silent (:meth:`Silence.gone`)."""
        names = " and ".join(f"RANK={r}" for r in gone)
        silent = (
            f"no sign of life for {SILENT_FOR:g} s"
            if all(silence.heard[r][0] for r in gone)
            else f"no sign of life for {SILENT_FOR:g} s, or none at all for {SILENT_FIRST:g} s"
        )
        return LoftUpError(
            f"{self.met} {names} went silent ({silent}) before joining the process group: "
            "killed (or its machine lost), or ended by an error of its own, which says why; "
            "start the run again"
        )

    def _look(self, keys: list[str]) -> None:
        self.looking = True  # (the watcher of torch's C++ part of the join leaves it to this)
        try:
            self._look_for(keys)
        except dist.DistError:  # the point closed under a look (its trace logged by torch)
            gone = self.point_gone(grace=1.0)
            if gone is None:
                raise
            raise gone from None
        finally:
            self.looking = False

    def _look_for(self, keys: list[str]) -> None:
        pause = 0.01
        while True:
            gone = self.point_gone()  # first: the store's call to a closed point logs a trace
            if gone is not None:
                raise gone
            there, gone = self._asked(lambda client: self._round(client, keys))
            if there:
                return
            if gone:
                raise self.went_silent(gone, self.silence)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise LoftUpError(
                    f"{self.met} not all of them joined the process group within "
                    f"{self.seconds:.0f} s (one alive but stuck before it joins?); start the "
                    "run again"
                )
            time.sleep(min(pause, left))
            pause = min(2 * pause, LOOK_EVERY)

    def _round(self, client, keys: list[str]) -> tuple[bool, list[int]]:
        """One look, on ``client``: whether ``keys`` are all set, else the ranks gone silent."""
        if client.check(keys):
            return True, []
        return False, self.silence.gone(store=client)  # (not kept: the worker closes it)

    def _asked(self, call):
        """``call(client)``'s value, on the looks' own client, waited for in Python: a point
        that closes meanwhile, or that has not answered for :data:`SILENT_FOR` s (twice in a
        row, :data:`BEAT_EVERY` s apart: a pause of this whole process is not the point's
        silence), is a LoftUpError; ``call(self.inner)`` where no ``where`` was given."""
        if self.looks is None:
            return call(self.inner)
        look = self.looks.start(call)
        seconds = look.wait(SILENT_FOR, BEAT_EVERY, self._raise_if_gone)
        if seconds is not None:
            lead = f"{self.met} {point_at(self.looks.where)}"
            raise LoftUpError(unanswered(lead, seconds))
        return look.value()

    def _raise_if_gone(self) -> None:
        gone = self.point_gone()
        if gone is not None:
            raise gone

    def addresses(self, prefix: str, rank: int, world: int) -> dict[int, bytes]:
        """The addresses for the group that this process read from the others (gloo's keys
        under ``prefix``, each ending in its rank's number, whatever torch puts between) while
        it joined, by rank (not ``rank``'s own)."""
        found = {}
        for key, value in self.read.items():
            number = key.rpartition("/")[2]
            if key.startswith(f"{prefix}/") and number.isdigit() and int(number) < world:
                found[int(number)] = value
        found.pop(rank, None)
        return found

    def get(self, key):
        if self.silence is not None:
            self._look([key])
            self.read[key] = self._asked(lambda client: client.get(key))
            return self.read[key]
        return self.inner.get(key)

    def wait(self, keys, timeout=None):
        if self.silence is not None:
            return self._look(keys)
        return self.inner.wait(keys) if timeout is None else self.inner.wait(keys, timeout)

    def set_timeout(self, timeout):
        super().set_timeout(timeout)
        self.inner.set_timeout(timeout)

    # the rest, as the store does it
    def set(self, key, value):
        return self.inner.set(key, value)

    def add(self, key, value):
        return self.inner.add(key, value)

    def compare_set(self, key, expected, desired):
        return self.inner.compare_set(key, expected, desired)

    def check(self, keys):
        return self.inner.check(keys)

    def delete_key(self, key):
        return self.inner.delete_key(key)

    def num_keys(self):
        return self.inner.num_keys()

    def multi_get(self, keys):
        return self.inner.multi_get(keys)

    def multi_set(self, keys, values):
        return self.inner.multi_set(keys, values)

    def append(self, key, value):
        return self.inner.append(key, value)
