"""Reads waited on: a dataset's items read in a thread of their own and given up on after
``data.timeout`` seconds, so that a read that hangs (a stalled network disk, a named pipe) ends
the run with a :class:`LoftUpError` naming the file instead of hanging it. Used by the loader
without workers (:func:`loftup.train.loader.make_loader`) and for the reads made before it
(:func:`reads_waited_on`: SAM's masks computed up front, the pictures' images)."""

from __future__ import annotations

import queue
import threading
import time
import weakref

import torch

from ..data.dataset import MaskedImages
from ..errors import LoftUpError


def reads_waited_on(dataset: MaskedImages, timeout: float, data_root: str, computing=None):
    """``dataset.load`` for the reads made before the loader's (SAM's masks computed up front,
    the pictures' images), as the loader without workers makes its own: in a thread, waited on
    ``timeout`` seconds at most (``data.timeout``; 0: for ever), the file tracked, so that a
    read that hangs (a stalled network disk) ends the run with a :class:`LoftUpError` naming
    the file instead of hanging it (:class:`ReadsInAThread`); the time ``computing`` (a
    :class:`Stopwatch`) counts is not charged. Called before
    :func:`~loftup.train.loader.make_loader`, which tracks the loader's own readers."""
    dataset.track_reads(1)
    if not timeout:
        return dataset.load
    return ReadsInAThread(dataset, timeout, data_root, dataset.load, computing).__getitem__


class Stopwatch:
    """The time that the functions it times (:meth:`timed`) have taken so far, the one running
    now included: computation done in a reading thread, which a read's timeout does not count."""

    def __init__(self) -> None:
        self._done, self._since = 0.0, None

    def timed(self, fn):
        def timed(*args, **kwargs):
            self._since = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self._done += time.monotonic() - self._since
                self._since = None

        return timed

    def seconds(self) -> float:
        since = self._since  # read first: a call that ends meanwhile is counted twice, not never
        return self._done + (time.monotonic() - since if since is not None else 0.0)


class ReadsInAThread(torch.utils.data.Dataset):
    """``dataset``'s items, read in a thread of their own and waited on ``timeout`` seconds at
    most, for a run without workers. A read that hangs (a stalled network disk) cannot be
    interrupted from Python, but need not hang the run: a :class:`LoftUpError` naming the file
    ends it, the thread left behind (a daemon: it does not hold up the interpreter's exit), and
    Ctrl-C stops a run that waits for it (the second: the first waits for the step's end)."""

    def __init__(
        self, dataset: MaskedImages, timeout: float, data_root: str, read=None, computing=None
    ) -> None:
        self.dataset, self.timeout, self.data_root = dataset, timeout, data_root
        self.read = read or dataset.__getitem__  # or dataset.load (reads_waited_on)
        self.computing = computing or Stopwatch()  # its time is not the read's
        self._asked, self._given = queue.SimpleQueue(), queue.SimpleQueue()
        self._count, self._thread, self._stuck = 0, None, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        if self._stuck is not None:
            raise LoftUpError(self._stuck)
        if self._thread is None:
            self._thread = threading.Thread(
                target=_serve, args=(self.read, self._asked, self._given), daemon=True,
                name="loftup data reader",
            )  # fmt: skip
            self._thread.start()
            weakref.finalize(self, self._asked.put, None)  # the thread ends with this object
        self._count += 1
        self._asked.put((self._count, i))
        deadline = time.monotonic() + self.timeout - self.computing.seconds()
        while True:
            try:
                left = deadline + self.computing.seconds() - time.monotonic()
                count, ok, value = self._given.get(timeout=max(0.0, left))
            except queue.Empty:
                if deadline + self.computing.seconds() > time.monotonic():
                    continue  # computing (SAM) since: not reading
                read = self.dataset.reading(0)
                where = f"{read[0]} has been read for {read[1]:.0f} s" if read else (
                    f"a file under {self.data_root} is being read"
                )  # fmt: skip
                self._stuck = f"reading item {i} took over {self.timeout:g} s (data.timeout): " + (
                    stuck_advice(where)
                )
                raise LoftUpError(self._stuck) from None
            if count == self._count:  # else the answer to a read given up on (Ctrl-C)
                break
        if not ok:
            raise value
        return value


def _serve(read, asked: queue.SimpleQueue, given: queue.SimpleQueue) -> None:
    """A :class:`ReadsInAThread`'s thread: reads the items asked for until it gets None."""
    while (ask := asked.get()) is not None:
        count, i = ask
        try:
            given.put((count, True, read(i)))
        except BaseException as e:  # raised again where the item was asked for
            given.put((count, False, e))


def stuck_advice(where: str) -> str:
    """What a read that gave nothing within ``data.timeout`` says after ``where`` (which file)."""
    return (
        f"{where} (a stalled network disk? a named pipe?); check that it reads, or raise "
        "data.timeout (0: wait for ever) if the files are only slow"
    )
