"""The training data and its loader: the images and masks of ``cfg.data``, SAM's masks computed
up front, the DataLoader's workers, and the batches they give (a worker that gives none for
``data.timeout`` seconds stops the run with an error naming the data folder)."""

from __future__ import annotations

import logging
import os
import signal

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


def precompute_masks(dataset: MaskedImages, info: DistInfo) -> None:
    """Compute and cache SAM masks before training (each rank a share), so workers only read."""
    from ..data.images import READ_ERRORS

    indices = range(info.rank, len(dataset), info.world)
    for i in tqdm(indices, desc="SAM masks", disable=not info.is_main):
        try:
            dataset.load(i)
        except READ_ERRORS:
            pass  # reported when the training reads it
    if dataset._sam is not None:
        dataset._sam.release()  # data workers must not inherit a model on the GPU
    barrier(info)


def worker_ignores_stops(worker_id: int) -> None:
    """A training DataLoader's ``worker_init_fn``: the worker ignores SIGTERM and SIGINT, which
    a scheduler (SIGTERM) and the terminal (Ctrl-C) send to every process of the job; the main
    process stops after the current step (:class:`~loftup.train.stopping.StopOnSignals`), which
    its workers go on feeding. (PyTorch's workers end quietly at a Ctrl-C: the step being
    finished would then fail for want of its batch.) They still end with their loader, or with
    the main process (PyTorch's watchdog)."""
    worker_ignores_sigterm(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(
    dataset: MaskedImages, sampler, cfg: TrainConfig, device: torch.device, main: bool
) -> torch.utils.data.DataLoader:
    """The DataLoader of a run: ``data.num_workers`` worker processes (at most one per CPU),
    which ignore SIGTERM and SIGINT (:func:`worker_ignores_stops`) and, with workers,
    wait ``data.timeout`` seconds at most for a batch (0: for ever); read with :func:`batches`."""
    workers = worker_count(cfg.data.num_workers, main)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", worker_init_fn=worker_ignores_stops,
        timeout=cfg.data.timeout if workers else 0,  # PyTorch takes none without workers
    )  # fmt: skip


def batches(loader: torch.utils.data.DataLoader, data_root: str):
    """The batches of ``loader``, as :func:`loftup.errors.from_workers` gives them (a worker's
    error in one line). A batch that the workers do not give within the loader's timeout (a
    worker stuck on a file: a stalled network disk, a named pipe) is a :class:`LoftUpError`
    naming ``data_root``, the timeout and the fix; the stuck workers are killed first (they
    ignore SIGTERM, and the interpreter's exit would wait on them for ever)."""
    if not loader.timeout:
        return from_workers(loader, "data.num_workers")
    return from_workers(_Watched(loader, data_root), "data.num_workers")


class _Watched:
    """A DataLoader whose iterator turns PyTorch's "DataLoader timed out" into a LoftUpError."""

    def __init__(self, loader, data_root: str) -> None:
        self.loader, self.data_root = loader, data_root

    def __iter__(self):
        return _WatchedIterator(iter(self.loader), self.loader.timeout, self.data_root)


class _WatchedIterator:
    def __init__(self, it, timeout: float, data_root: str) -> None:
        self._it, self._timeout, self._root = it, timeout, data_root

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._it)
        except RuntimeError as e:
            if not str(e).startswith("DataLoader timed out"):
                raise
            _kill_workers(self._it)
        raise LoftUpError(
            f"no batch came from the data-loading workers in {self._timeout:g} s (data.timeout): "
            f"a worker is stuck reading a file under {self._root} (a stalled network disk?); "
            "run with data.num_workers=0 to read in the main process and see where it stops, "
            "or raise data.timeout (0: wait for ever) if the files are only slow"
        )

    def __getattr__(self, name: str):  # _shutdown_workers, for from_workers
        return getattr(self._it, name)


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
