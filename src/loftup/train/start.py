"""What a run starts from: the checkpoint it resumes (``--resume``); its models and optimiser
built from the config, restored from that checkpoint, on the run's device and, under torchrun,
wrapped in DistributedDataParallel; its data, loader and folder (:func:`start_run`). The loop
(:mod:`.loop`) takes it from there."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.dataset import MaskedImages
from ..data.sampler import StepSampler
from ..errors import LoftUpError
from .batches import default_global_sizes
from .build import (
    Init,
    build_featurizer,
    build_optimizer,
    build_trainee,
    build_upsampler,
    restore,
)
from .checkpoint import (
    CHECKPOINT_NAME,
    has_checkpoint,
    load_checkpoint,
    set_rng_state,
    unpack_history,
)
from .config import TrainConfig
from .distributed import DistInfo, broadcast_object, convert_batchnorm
from .earlier import OUT_OPTION, Earlier, read_earlier
from .ema import EMATeacher
from .loader import make_loader, masks_up_front, training_data
from .monitor import Monitor
from .objectives import Trainee
from .pictures import pictures, validation_images
from .resuming import apply_optim_config, check_resumable, window_change
from .run_folder import open_run_folder

log = logging.getLogger("loftup.train")


def checkpoint_to_resume(
    cfg: TrainConfig, out_dir: Path, resume: bool, main: bool, another: str = OUT_OPTION
) -> tuple[Path, dict | None]:
    """``out_dir``'s checkpoint path, and the checkpoint itself where ``resume`` finds one
    (None: the run starts at step 0), checked against ``cfg`` (the same kind of run). A
    checkpoint there without ``resume`` is refused: the run would write over it. Loaded here,
    with the run folder locked (an experiment has read its step before: loaded again, 0.2 s,
    so that a run that another process took further meanwhile is resumed as it is now).
    ``another``: the option that chose the folder, offered where this user may not read it."""
    ckpt_path = out_dir / CHECKPOINT_NAME
    held = has_checkpoint(ckpt_path, another)  # a link to nothing refused, not trained over
    if held and not resume:
        raise LoftUpError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it, or choose "
            f"another {another}"
        )
    if resume and held:
        ckpt = load_checkpoint(ckpt_path, another)
        check_resumable(ckpt, cfg, ckpt_path, another)
        return ckpt_path, ckpt
    if resume and main:
        log.info("no checkpoint in %s yet: starting from step 0", out_dir)
    return ckpt_path, None


def earlier_of(out_dir: Path, ckpt: dict | None, info: DistInfo, another: str) -> Earlier | None:
    """Rank 0's :func:`~.earlier.read_earlier` of the run in ``out_dir`` that resumes ``ckpt``
    (None: one starting afresh, which keeps nothing, and the other ranks), read before the
    models and data are built and before anything in the folder changes; one this user may
    not read is refused (its fix, and ``another``) by every rank, as the folder's lock is."""
    earlier, problem = None, None
    if ckpt is not None and info.is_main:
        try:
            earlier = read_earlier(out_dir, ckpt["step"], another, ckpt.get("history"))
        except LoftUpError as e:
            problem = e
    said = broadcast_object(None if problem is None else str(problem), info)
    if problem is not None:
        raise problem
    if said is not None:
        raise LoftUpError(said)
    return earlier


def warn_if_other_data(ckpt: dict, images: int, ckpt_path: Path) -> None:
    """Say so where the data of a resumed run holds another number of images than the
    checkpoint's run had (images added or removed, ``data.max_images`` changed, or image types
    listed that the loftup of the checkpoint did not list): the data order is a seeded
    permutation of them, so the run goes on reading them in another order than an
    uninterrupted run would have (and ``epochs`` counts other steps). A checkpoint from before
    it recorded the count says nothing."""
    was = ckpt.get("images")
    if was is not None and was != images:
        log.warning(
            "%s was trained on %d images, the data now holds %d: the resumed run reads them in "
            "another order than an uninterrupted run would (restore the folder, or data."
            "max_images, to go on exactly; the files listed may also differ: training reads "
            ".gif, .ppm and .pgm images, which older versions skipped)", ckpt_path, was, images,
        )  # fmt: skip


@dataclass
class Models:
    """A run's models and optimiser, ready for its first step.

    ``cfg``: the run's config with ``model`` set to the architecture it trains (stage 2 keeps
    its init's); ``trainee``: the upsampler with the training-only modules
    (:class:`~loftup.train.objectives.Trainee`); ``model``: what the step calls, the trainee or
    its DDP wrapper; ``teacher``: stage 2's EMA teacher (None in stage 1); ``history`` and
    ``skipped``: the per-step scalars and unreadable-file count of a resumed checkpoint."""

    cfg: TrainConfig
    featurizer: torch.nn.Module
    trainee: Trainee
    model: torch.nn.Module
    teacher: EMATeacher | None
    optimizer: torch.optim.Optimizer
    history: list[dict] = field(default_factory=list)
    skipped: int = 0


def build_models(cfg: TrainConfig, info: DistInfo, ckpt: dict | None, init: Init | None) -> Models:
    """The featurizer, the trainee (and stage 2's teacher) and the optimiser of ``cfg``, on
    ``info.device``, restored from ``ckpt`` when resuming (its RNG states too); ``init``: stage
    2's starting point already read by the preflight (else read here). What it finds is said
    by rank 0 alone."""
    device = info.device
    torch.manual_seed(cfg.seed)
    featurizer = build_featurizer(cfg, device)
    upsampler, cfg, extras = build_upsampler(
        cfg, featurizer.dim, featurizer.input_norm_key(), ckpt, init, say=info.is_main
    )
    trainee = build_trainee(cfg, upsampler, featurizer.patch_size, extras)
    teacher = None
    if cfg.stage == 2:
        teacher = EMATeacher(upsampler, beta=cfg.stage2.ema_beta, every=cfg.stage2.ema_every)
    history, skipped = [], 0
    if ckpt is not None:
        restore(ckpt, trainee, teacher)
        history, skipped = unpack_history(ckpt["history"]), ckpt["skipped"]
    trainee.to(device).train()
    if teacher is not None:
        teacher.model.to(device)
    model = trainee
    if info.enabled:
        convert_batchnorm(trainee)  # statistics over the global batch, as in one process
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(trainee, device_ids=ids)
    optimizer = build_optimizer(cfg, trainee.parameters())
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        window = window_change(ckpt, cfg)
        if window and info.is_main:  # said once, not by every process; a forgotten override
            log.warning("resuming with this run's %s", window)  # changes what is attended
        for change in apply_optim_config(optimizer, cfg):
            if info.is_main:
                log.info("resuming with this run's %s", change)
        set_rng_state(ckpt["rng"])
    return Models(cfg, featurizer, trainee, model, teacher, optimizer, history, skipped)


@dataclass
class Started:
    """A run ready for its first step: its ``models``; its ``dataset`` and the ``loader`` of
    the steps from ``step0`` (the resumed checkpoint's, else 0) to ``total``; stage 2's global
    view ``sizes``; and on rank 0 (else None) the images of its pictures (``viz``) and the
    ``monitor`` writing its folder."""

    models: Models
    dataset: MaskedImages
    loader: torch.utils.data.DataLoader
    total: int
    step0: int
    sizes: list[int]
    viz: torch.Tensor | None = None
    monitor: Monitor | None = None


def start_run(
    cfg: TrainConfig,
    info: DistInfo,
    out_dir: Path,
    ckpt_path: Path,
    ckpt: dict | None,
    init: Init | None,
    earlier: Earlier | None = None,
) -> Started:
    """The data, models, loader and (rank 0) run folder of ``cfg``, resuming ``ckpt`` (read
    from ``ckpt_path``; None: from step 0), in this order: too few images for a batch is said
    before any model loads; ``init``: as :func:`build_models` takes it; ``earlier``: what the
    resumed run keeps of its folder (:func:`earlier_of`)."""
    device, main = info.device, info.is_main
    # -- the data (listed before any model loads: too few images for a batch is said first) --
    dataset = training_data(cfg, device, progress=main and cfg.log.progress)
    total = (
        cfg.max_steps
        if cfg.max_steps is not None
        else cfg.epochs * (len(dataset) // cfg.batch_size)
    )
    step0 = ckpt["step"] if ckpt is not None else 0
    if ckpt is not None and main:
        warn_if_other_data(ckpt, len(dataset), ckpt_path)
    if step0 > total and main:  # a lower max_steps (epochs) cannot undo steps taken
        log.warning(
            "%s holds step %d, past this run's %d (max_steps, epochs): there is nothing to "
            "train, and final/ is exported from the checkpoint as it is", ckpt_path, step0, total,
        )  # fmt: skip
    sampler = StepSampler(
        len(dataset), global_batch=cfg.batch_size, steps=total, seed=cfg.seed,
        start_step=step0, rank=info.rank, world=info.world,
    )  # fmt: skip

    # -- the models ------------------------------------------------------------------------
    m = build_models(cfg, info, ckpt, init)
    cfg, featurizer = m.cfg, m.featurizer

    # -- the loader (reads before it, as its own, waited on data.timeout seconds at most) -----
    masks_up_front(dataset, cfg, info)
    sizes = cfg.stage2.global_sizes or default_global_sizes(featurizer.patch_size)
    viz = validation_images(dataset, cfg, sizes, device) if main else None
    loader = make_loader(dataset, sampler, cfg, device, main)

    monitor = None
    if main:
        resumed = ckpt.get("config", {}) if ckpt is not None else None
        # the hub commit a hub id's or released name's init was loaded from (None: a file, a resume)
        commit = getattr(m.trainee.upsampler, "source_commit", None)
        # the folder: locked since the start
        monitor = open_run_folder(cfg, out_dir, info.world, step0, resumed, commit, earlier)
        # TensorBoard drops the events from step0 on (those a crashed run wrote past its
        # checkpoint), the checkpoint step's picture with them: draw it again
        redraw = step0 and cfg.log.tensorboard and monitor.picture_path(step0).exists()
        if redraw and viz is not None:
            pictures(monitor, m.trainee.upsampler, featurizer, viz, step0)
        log.info(
            "stage %d: %d images (%d without annotations), %d steps of %d, %d process(es) on %s",
            cfg.stage, len(dataset), dataset.orphans, total, cfg.batch_size, info.world, device,
        )  # fmt: skip
    return Started(m, dataset, loader, total, step0, sizes, viz, monitor)
