"""The training data and its loader: the images and masks of ``cfg.data``, SAM's masks computed
up front, the DataLoader's workers, and the batches they give (a read that gives nothing for
``data.timeout`` seconds, or a worker that dies, stops the run with an error naming the file)."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import threading
import time
import weakref

import torch
from tqdm.auto import tqdm

from ..data.dataset import MaskedImages, collate
from ..errors import LoftUpError, from_workers, worker_ignores_sigterm
from .config import TrainConfig
from .distributed import DistInfo, barrier

log = logging.getLogger("loftup.train")


def worker_count(asked: int, main: bool) -> int:
    """DataLoader workers: ``asked``, at most one for each CPU this process may use (the SA-1B
    recipes ask for 8, for a GPU node; on a laptop more would only contend, and PyTorch warns).
    The data and its order do not depend on it: every random draw is made per step."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if asked > cpus:
        if main:
            log.info("data.num_workers=%d, but this process has %d CPUs: %d workers", asked, cpus,
                     cpus)  # fmt: skip
        return cpus
    return asked


def training_data(cfg: TrainConfig, device: torch.device) -> MaskedImages:
    """The images and masks of ``cfg.data`` at the size of ``cfg.stage``'s images."""
    d = cfg.data
    size = cfg.stage1.image_size if cfg.stage == 1 else cfg.stage2.load_size
    return MaskedImages(
        d.root, size=size, masks=d.masks, max_masks=d.max_masks, max_images=d.max_images,
        superpixels=d.superpixels, sam_weights=d.sam_weights, sam_device=device,
        cache_dir=d.cache_dir, max_image_pixels=d.max_image_pixels,
    )  # fmt: skip


def reads_waited_on(dataset: MaskedImages, timeout: float, data_root: str, computing=None):
    """``dataset.load`` for the reads made before the loader's (SAM's masks computed up front,
    the pictures' images), as the loader without workers makes its own: in a thread, waited on
    ``timeout`` seconds at most (``data.timeout``; 0: for ever), the file tracked, so that a
    read that hangs (a stalled network disk) ends the run with a :class:`LoftUpError` naming
    the file instead of hanging it (:class:`_ReadsInAThread`); the time ``computing`` (a
    :class:`_Stopwatch`) counts is not charged. Called before :func:`make_loader`, which
    tracks the loader's own readers."""
    dataset.track_reads(1)
    if not timeout:
        return dataset.load
    return _ReadsInAThread(dataset, timeout, data_root, dataset.load, computing).__getitem__


def precompute_masks(dataset: MaskedImages, info: DistInfo, timeout: float = 0) -> None:
    """Compute and cache SAM masks before training (each rank a share), so workers only read;
    each image's files waited on ``timeout`` seconds at most (:func:`reads_waited_on`), SAM's
    computation for as long as it takes (ViT-H on a CPU may take minutes an image: that is
    no stalled disk)."""
    from ..data.images import READ_ERRORS

    sam, computing = dataset._sam, _Stopwatch()
    if sam is not None:
        dataset._sam = computing.timed(sam)
    try:
        load = reads_waited_on(dataset, timeout, str(dataset.root), computing)
        indices = range(info.rank, len(dataset), info.world)
        for i in tqdm(indices, desc="SAM masks", disable=not info.is_main):
            try:
                load(i)
            except READ_ERRORS:
                pass  # reported when the training reads it
    finally:
        dataset._sam = sam
    if sam is not None:
        sam.release()  # data workers must not inherit a model on the GPU
    barrier(info)


class _Stopwatch:
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


def worker_ignores_stops(worker_id: int) -> None:
    """A training DataLoader's ``worker_init_fn``: the worker ignores SIGTERM, SIGINT and
    SIGHUP, which a scheduler (SIGTERM) and the terminal (Ctrl-C, a hang-up) send to every
    process of the job; the main process stops after the current step
    (:class:`~loftup.train.stopping.StopOnSignals`), which its workers go on feeding. (PyTorch's
    workers end quietly at a Ctrl-C: the step being finished would then fail for want of its
    batch.) They still end with their loader, or with the main process (PyTorch's watchdog)."""
    worker_ignores_sigterm(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # whatever the start method (not only forked)


def make_loader(
    dataset: MaskedImages, sampler, cfg: TrainConfig, device: torch.device, main: bool
) -> torch.utils.data.DataLoader:
    """The DataLoader of a run: ``data.num_workers`` worker processes (at most one per CPU),
    which ignore SIGTERM, SIGINT and SIGHUP (:func:`worker_ignores_stops`), or none (the main
    process reads, in a thread: :class:`_ReadsInAThread`). A batch (with workers) or an item
    (without) is waited on ``data.timeout`` seconds at most (0: for ever), and the file each
    reader is on is tracked (:meth:`MaskedImages.track_reads`) for the errors to name it; read
    with :func:`batches`."""
    d = cfg.data
    workers = worker_count(d.num_workers, main)
    dataset.track_reads(max(workers, 1))
    items = dataset if workers or not d.timeout else _ReadsInAThread(dataset, d.timeout, d.root)
    return torch.utils.data.DataLoader(
        items, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", worker_init_fn=worker_ignores_stops,
        timeout=d.timeout if workers else 0,  # PyTorch takes none without workers
    )  # fmt: skip


def batches(loader: torch.utils.data.DataLoader, data_root: str) -> Batches:
    """The batches of ``loader`` (made by :func:`make_loader`): iterate over them inside
    ``with``, which shuts its workers down at the end however the loop ends (left alive they
    would outlive the run: they ignore SIGTERM, and the interpreter's exit would wait on them
    for ever). A worker's error is one line (:func:`loftup.errors.from_workers`); a worker that
    gives no batch within the loader's timeout (stuck on a file: a stalled network disk, a
    named pipe) is killed, and a :class:`LoftUpError` names the file it is reading, the timeout
    and the fix; a worker that dies (killed for lack of memory, a crash in a native reader) is
    a LoftUpError naming the file it was reading, whenever the main process hears of it (in
    the middle of a step, too: PyTorch's SIGCHLD handler raises wherever it is)."""
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
            _stuck_advice(where)
        )

    def _died(self, e: RuntimeError) -> LoftUpError | None:
        """The LoftUpError for PyTorch's error that a worker died (None for another error)."""
        found = _DIED.match(str(e))
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


#: PyTorch's words for a worker that died (its SIGCHLD handler's, and its iterator's)
_DIED = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\) (?:exited|is killed)")


def _reading(batches: Batches, reader: int) -> tuple[str, float] | None:
    dataset = batches.loader.dataset
    dataset = getattr(dataset, "dataset", dataset)  # a _ReadsInAThread's
    return dataset.reading(reader) if hasattr(dataset, "reading") else None


def _stuck_advice(where: str) -> str:
    return (
        f"{where} (a stalled network disk? a named pipe?); check that it reads, or raise "
        "data.timeout (0: wait for ever) if the files are only slow"
    )


class _ReadsInAThread(torch.utils.data.Dataset):
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
        self.computing = computing or _Stopwatch()  # its time is not the read's
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
                    _stuck_advice(where)
                )
                raise LoftUpError(self._stuck) from None
            if count == self._count:  # else the answer to a read given up on (Ctrl-C)
                break
        if not ok:
            raise value
        return value


def _serve(read, asked: queue.SimpleQueue, given: queue.SimpleQueue) -> None:
    """A :class:`_ReadsInAThread`'s thread: reads the items asked for until it gets None."""
    while (ask := asked.get()) is not None:
        count, i = ask
        try:
            given.put((count, True, read(i)))
        except BaseException as e:  # raised again where the item was asked for
            given.put((count, False, e))


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
