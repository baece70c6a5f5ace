"""The batches of a training DataLoader (:func:`batches`), its workers watched: a worker that
gives nothing within ``data.timeout`` seconds is killed, and one that dies is named with the file
it was reading, each as a one-line :class:`LoftUpError` with the fix; the workers shut down
however the loop over them ends."""

from __future__ import annotations

import torch

from ..errors import WORKER_DIED, LoftUpError, from_workers
from .reads import stuck_advice


def batches(loader: torch.utils.data.DataLoader, data_root: str) -> Batches:
    """The batches of ``loader`` (made by :func:`~loftup.train.loader.make_loader`): iterate
    over them inside ``with``, which shuts its workers down at the end however the loop ends
    (left alive they would outlive the run: they ignore SIGTERM, and the interpreter's exit
    would wait on them for ever). A worker's error is one line
    (:func:`loftup.errors.from_workers`); a worker that gives no batch within the loader's
    timeout (stuck on a file: a stalled network disk, a named pipe) is killed, and a
    :class:`LoftUpError` names the file it is reading, the timeout and the fix; a worker that
    dies (killed for lack of memory, a crash in a native reader) is a LoftUpError naming the
    file it was reading, whenever the main process hears of it (in the middle of a step, too:
    PyTorch's SIGCHLD handler raises wherever it is)."""
    return Batches(loader, data_root)


class Batches:
    """What :func:`batches` gives: iterable once, a context manager."""

    def __init__(self, loader, data_root: str) -> None:
        self.loader, self.data_root = loader, data_root
        self._it = None  # the DataLoader's iterator, once iteration begins
        self._batches = from_workers(_Watched(self), "data.num_workers")

    def __iter__(self):
        return self._batches

    def __next__(self):
        return next(self._batches)

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, exc_type, e, tb) -> None:
        died = self._died(e) if isinstance(e, RuntimeError) else None
        self._batches.close()  # the workers shut down now, not when the error is collected
        if died is not None:
            raise died from None

    def _next(self):
        try:
            return next(self._it)
        except RuntimeError as e:
            if str(e).startswith("DataLoader timed out"):
                _kill_workers(self._it)
                raise LoftUpError(self._stuck()) from None
            died = self._died(e)
            if died is None:
                raise
            raise died from None

    def _stuck(self) -> str:
        timeout = self.loader.timeout
        reads = [(r, k) for k in range(self.loader.num_workers) if (r := _reading(self, k))]
        if reads:
            (what, seconds), k = max(reads, key=lambda read: read[0][1])
            where = f"worker {k} has been reading {what} for {seconds:.0f} s"
        else:
            where = f"a worker is stuck on a file under {self.data_root}"
        return f"no batch came from the data-loading workers in {timeout:g} s (data.timeout): " + (
            stuck_advice(where)
        )

    def _died(self, e: RuntimeError) -> LoftUpError | None:
        """The LoftUpError for PyTorch's error that a worker died (None for another error)."""
        found = WORKER_DIED.match(str(e))
        if found is None:
            return None
        pids = {int(p) for p in found.group(1).replace(",", " ").split()}
        workers = getattr(self._it, "_workers", ())
        reads = [_reading(self, k) for k, w in enumerate(workers) if w.pid in pids]
        files = "; ".join(f"while reading {r[0]}" for r in reads if r)
        return LoftUpError(
            f"a data-loading worker process died without an error ({str(e).strip().rstrip('.')}"
            f"{', ' + files if files else ''}): the system killed it, most often for lack of "
            "host memory, or a library crashed on a file; lower data.num_workers, or set it "
            "to 0 to read in this process"
        )


class _Watched:
    """The DataLoader of a :class:`Batches`, as :func:`~loftup.errors.from_workers` reads it."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __iter__(self):  # from_workers's iter(), and its yield from's
        if self.batches._it is None:
            self.batches._it = iter(self.batches.loader)
        return self

    def __next__(self):
        return self.batches._next()

    def _shutdown_workers(self) -> None:
        shutdown = getattr(self.batches._it, "_shutdown_workers", None)  # multi-process only
        if shutdown is not None:
            shutdown()


def _reading(batches: Batches, reader: int) -> tuple[str, float] | None:
    dataset = batches.loader.dataset
    dataset = getattr(dataset, "dataset", dataset)  # a ReadsInAThread's
    return dataset.reading(reader) if hasattr(dataset, "reading") else None


def _kill_workers(it) -> None:
    """SIGKILL the workers of a multi-process DataLoader iterator that are still alive, once
    PyTorch no longer watches them (its SIGCHLD handler would report them as crashed)."""
    from torch.utils.data import _utils

    if getattr(it, "_worker_pids_set", False):
        _utils.signal_handling._remove_worker_pids(id(it))
        it._worker_pids_set = False
    for w in getattr(it, "_workers", ()):
        if w.is_alive():
            w.kill()
            w.join(timeout=5)
