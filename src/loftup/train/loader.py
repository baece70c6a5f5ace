"""The training data and its loader: the images and masks of ``cfg.data``, SAM's masks computed
up front, the DataLoader and its workers. The batches they give are read with :func:`batches`
(:mod:`.feed`: a worker that gives nothing for ``data.timeout`` seconds, or dies, stops the run
with an error naming the file); without workers, and before the loader, items are read in a
thread and waited on as long (:mod:`.reads`)."""

from __future__ import annotations

import logging
import os
import signal

import torch
from tqdm.auto import tqdm

from ..bars import bar_settings
from ..data.dataset import MaskedImages, collate
from ..errors import worker_ignores_sigterm
from .config import TrainConfig
from .distributed import DistInfo, barrier
from .feed import Batches, batches  # noqa: F401  (importable from here, as before feed.py)
from .reads import ReadsInAThread, Stopwatch, reads_waited_on

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


def mask_strength(cfg: TrainConfig) -> tuple[str, float]:
    """The key and value of how strongly ``cfg``'s run pulls features to their masks' means
    (:func:`~loftup.train.targets.mask_adjust`): stage 1's target by ``stage1.mask_alpha``,
    stage 2's teacher by ``stage2.teacher_alpha``."""
    if cfg.stage == 1:
        return "stage1.mask_alpha", cfg.stage1.mask_alpha
    return "stage2.teacher_alpha", cfg.stage2.teacher_alpha


def masks_matter(cfg: TrainConfig) -> bool:
    """Whether any mask can change what ``cfg``'s run computes: not where its
    :func:`mask_strength` is 0 (the adjustment then leaves every feature as it is)."""
    return mask_strength(cfg)[1] > 0


class ImagesAlone(MaskedImages):
    """:class:`MaskedImages` whose items hold no masks (K = 0), for a run whose loss no mask
    can change (:func:`masks_matter`): SAM's or the superpixels' masks are neither computed nor
    cached, SA-1B's JSON not read. The images listed, their order and how each is read (its
    pixel limit, tracked for data.timeout's errors) are MaskedImages' own; SAM's weights and
    the mask cache are not looked for."""

    makes_masks = False


def training_data(
    cfg: TrainConfig, device: torch.device, *, progress: bool = False
) -> MaskedImages:
    """The images and masks of ``cfg.data`` at the size of ``cfg.stage``'s images (the images
    alone where no mask can change the loss: :class:`ImagesAlone`). ``progress``: a bar while
    they are listed."""
    d = cfg.data
    size = cfg.stage1.image_size if cfg.stage == 1 else cfg.stage2.load_size
    kind = MaskedImages if masks_matter(cfg) else ImagesAlone
    return kind(
        d.root, size=size, masks=d.masks, max_masks=d.max_masks, max_images=d.max_images,
        superpixels=d.superpixels, sam_weights=d.sam_weights, sam_device=device,
        cache_dir=d.cache_dir, max_image_pixels=d.max_image_pixels, progress=progress,
    )  # fmt: skip


def precompute_masks(
    dataset: MaskedImages, info: DistInfo, timeout: float = 0, *, progress: bool = True
) -> None:
    """Compute and cache SAM masks before training (each rank a share), so workers only read;
    each image's files waited on ``timeout`` seconds at most (:func:`reads_waited_on`), SAM's
    computation for as long as it takes (ViT-H on a CPU may take minutes an image: that is
    no stalled disk). ``progress``: rank 0's bar over them (``log.progress``)."""
    from ..data.images import READ_ERRORS

    sam, computing = dataset._sam, Stopwatch()
    if sam is not None:
        dataset._sam = computing.timed(sam)
    try:
        load = reads_waited_on(dataset, timeout, str(dataset.root), computing)
        indices = range(info.rank, len(dataset), info.world)
        shown = info.is_main and progress
        for i in tqdm(indices, desc="SAM masks", **bar_settings(shown=shown)):
            try:
                load(i)
            except READ_ERRORS:
                pass  # reported when the training reads it
    finally:
        dataset._sam = sam
    if sam is not None:
        sam.release()  # data workers must not inherit a model on the GPU
    barrier(info)


def masks_up_front(dataset: MaskedImages, cfg: TrainConfig, info: DistInfo) -> None:
    """Before the loader: SAM's masks computed and cached (:func:`precompute_masks`), where
    they matter; where no mask can (:func:`masks_matter`), that said once, none read or made."""
    d = cfg.data
    if masks_matter(cfg):
        if d.masks == "sam":
            precompute_masks(dataset, info, d.timeout, progress=cfg.log.progress)
        return
    if info.is_main:
        what = {"sa1b": "SA-1B's masks are not read", "sam": "SAM's masks are not computed",
                "superpixels": "the superpixels are not computed"}[d.masks]  # fmt: skip
        log.info("%s=0: no mask changes the targets, so %s", mask_strength(cfg)[0], what)


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
    process reads, in a thread: :class:`ReadsInAThread`). A batch (with workers) or an item
    (without) is waited on ``data.timeout`` seconds at most (0: for ever), and the file each
    reader is on is tracked (:meth:`MaskedImages.track_reads`) for the errors to name it; read
    with :func:`batches`."""
    d = cfg.data
    workers = worker_count(d.num_workers, main)
    dataset.track_reads(max(workers, 1))
    items = dataset if workers or not d.timeout else ReadsInAThread(dataset, d.timeout, d.root)
    return torch.utils.data.DataLoader(
        items, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", worker_init_fn=worker_ignores_stops,
        timeout=d.timeout if workers else 0,  # PyTorch takes none without workers
    )  # fmt: skip
