"""The training loop, top to bottom: LoftUp's stage 1 or stage 2, on one process or many.

One process (CPU or one GPU)::

    loftup train --stage 1 --config stage1_sa1b data.root=/data/sa1b log.out_dir=runs/s1

Several (DDP, switched on by torchrun's environment; nccl on GPUs, gloo on CPUs)::

    torchrun --nproc_per_node 8 -m loftup train --stage 1 --config stage1_sa1b data.root=...

In Python: ``loftup.train.train(load_config("stage1_cpu", ["data.root=..."]))`` returns a
:class:`TrainResult` with the loss history. Only rank 0 logs and writes files; every rank sees
its own slice of each global batch (see :class:`loftup.data.dataset.StepSampler`).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.dataset import MaskedImages, StepSampler, check_global_batch, collate, data_folder
from ..errors import (
    LoftUpError,
    Terminated,
    UsageError,
    from_workers,
    require,
    terminate,
    worker_ignores_sigterm,
)
from ..hub import save_pretrained
from .batches import default_global_sizes, draw_step, stage1_inputs, stage2_inputs
from .build import (
    apply_optim_config,
    build_featurizer,
    build_optimizer,
    build_trainee,
    build_upsampler,
    check_resumable,
    checkpoint_payload,
    given_model_keys,
    init_architecture,
    restore,
    stage2_architecture,
)
from .checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_state,
    unpack_history,
)
from .config import TrainConfig, check_backbone_fit, load_config, validate
from .distributed import (
    DistInfo,
    barrier,
    convert_batchnorm,
    env_world,
    mean_over_ranks,
    setup,
    teardown,
)
from .ema import EMATeacher
from .monitor import Monitor, write_run_record

log = logging.getLogger("loftup.train")


@dataclass
class TrainResult:
    """What a run produced: its folder, last checkpoint, exported upsampler and loss history."""

    out_dir: Path
    checkpoint: Path
    pretrained: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [row["loss"] for row in self.history]


class _StopOnSigterm:
    """SIGTERM during a training run (in the main thread). Before and after the steps it stops
    the run at once (:class:`Terminated`, like Ctrl-C); while they run (``in_steps``) it asks them
    to stop after the current one, with a checkpoint, so that a scheduler's cancel or
    preemption loses no work. DataLoader workers ignore SIGTERM
    (:func:`~loftup.errors.worker_ignores_sigterm`), so a signal sent to every process of the
    job (as Slurm does) leaves them feeding the step being finished. The previous handler is
    put back at the end."""

    def __init__(self) -> None:
        self.requested = False
        self.in_steps = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if not self.in_steps:
            terminate()
        self.requested = True

    def __enter__(self) -> _StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._previous is None:
            return
        if exc_type is not None and issubclass(exc_type, Terminated):
            if self._previous is terminate:  # the command line's: it keeps ignoring a second
                return  # SIGTERM while the first one's clean-up runs, and restores its own
        signal.signal(signal.SIGTERM, self._previous)


def _workers(asked: int, main: bool) -> int:
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


def train(config: TrainConfig | str | dict, *, resume: bool = False) -> TrainResult:
    """Train stage ``config.stage``; ``resume`` continues from ``log.out_dir/checkpoint.pt``."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    preflight(cfg, resume)  # every value and path the user gave, before anything is loaded
    info = setup(cfg.device)
    try:
        with _StopOnSigterm() as sigterm:
            result = _run(cfg, info, resume, sigterm)
    except BaseException as e:
        teardown(info, e)  # its frames hold the DDP wrapper: released before the group
        raise
    teardown(info)
    return result


def preflight(cfg: TrainConfig, resume: bool = False) -> None:
    """What can be checked without loading anything, checked first: every config value (again:
    a TrainConfig may have been changed after it was built), the backbone's name against the
    sizes it needs, the global batch against torchrun's process count, stage 2's ``init`` (unless a checkpoint to resume holds the run) and the ``model.*`` keys set against its architecture, the data
    folder and the output folder. A :class:`UsageError` names the problem and the fix."""
    validate(cfg)
    check_backbone_fit(cfg)
    check_global_batch(cfg.batch_size, env_world())  # under torchrun, before joining the group
    resuming = resume and (Path(cfg.log.out_dir).expanduser() / CHECKPOINT_NAME).exists()
    if cfg.stage == 2 and not resuming:
        check_init(cfg.init)
        if given_model_keys(cfg) - {"attention_window"}:  # read init's config, not the backbone
            stage2_architecture(cfg, init_architecture(cfg.init), f"init {cfg.init}")
    check_out_dir(cfg.log.out_dir)
    check_backbone_weights(cfg.backbone, cfg.backbone_weights)
    data_folder(cfg.data.root)


def check_backbone_weights(backbone: str, weights: str | None) -> None:
    """``backbone_weights`` that name a file, or a path that does not exist: every backbone
    reads a folder (or a hub id, looked up when it loads)."""
    from ..hub import looks_like_path

    if not weights:
        return
    path = Path(weights).expanduser()
    if path.is_file():
        raise UsageError(
            f"backbone weights for {backbone}: {weights} is a file, but they must be a folder or "
            f"a hub id (if it is one of its files, pass its folder, {path.parent})"
        )
    if not path.exists() and looks_like_path(weights):
        raise UsageError(
            f"backbone weights for {backbone}: {weights} does not exist; pass the folder of its "
            "weights or a hub id"
        )


def check_init(init: str | None) -> None:
    """Stage 2's ``init``: set, and a file, a folder or a released name."""
    from ..hub import ALIASES, RELEASED

    if not init:
        raise UsageError(
            "stage 2 starts from a stage-1 result: set init=RUN/checkpoint.pt (or RUN/final, or "
            "a released name such as loftup_dinov2s)"
        )
    if ALIASES.get(init, init) not in RELEASED and not Path(init).expanduser().exists():
        raise UsageError(
            f"init {init} does not exist; stage 2 starts from a stage-1 result (RUN/checkpoint.pt "
            f"or RUN/final) or a released name ({', '.join(RELEASED)})"
        )


def check_out_dir(out_dir: str) -> Path:
    """``log.out_dir`` as a Path, or a UsageError if it (or a folder above it) is a file."""
    path = Path(out_dir).expanduser()
    for p in (path, *path.parents):
        if not p.exists():
            continue
        if p.is_dir():
            break
        what = f"{path} is a file" if p == path else f"{path} lies under {p}, which is a file"
        raise UsageError(
            f"{what}, but a run's output (--out, log.out_dir) is a folder that will hold "
            "checkpoint.pt, final/ and metrics.csv; give a folder path"
        )
    return path


def training_data(cfg: TrainConfig, device: torch.device) -> MaskedImages:
    """The images and masks of ``cfg.data`` at the size of ``cfg.stage``'s images."""
    d = cfg.data
    size = cfg.stage1.image_size if cfg.stage == 1 else cfg.stage2.load_size
    return MaskedImages(
        d.root, size=size, masks=d.masks, max_masks=d.max_masks, max_images=d.max_images,
        superpixels=d.superpixels, sam_weights=d.sam_weights, sam_device=device,
        cache_dir=d.cache_dir, max_image_pixels=d.max_image_pixels,
    )  # fmt: skip


def _packages_needed(cfg: TrainConfig) -> dict[str, str]:
    """The optional packages this run will import, and what for (loftup.errors.require)."""
    needs = {"yaml": "loftup train (its run record)", "PIL": "loftup train (reading images)"}
    if cfg.data.masks == "sa1b":
        needs["pycocotools"] = "data.masks=sa1b (SA-1B's RLE masks)"
    elif cfg.data.masks == "superpixels":
        needs["skimage"] = "data.masks=superpixels"
    if cfg.log.viz_every:
        needs["matplotlib"] = "log.viz_every (its PNG grids; log.viz_every=0 draws none)"
    if cfg.log.tensorboard:
        needs["tensorboard"] = "log.tensorboard (log.tensorboard=false writes none)"
    return needs


def _run(cfg: TrainConfig, info: DistInfo, resume: bool, sigterm: _StopOnSigterm) -> TrainResult:
    started = time.perf_counter()
    device, main = info.device, info.is_main
    out_dir = Path(cfg.log.out_dir).expanduser()
    ckpt_path = out_dir / CHECKPOINT_NAME
    ckpt = None
    if ckpt_path.exists() and not resume:
        raise LoftUpError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it, or choose "
            "another --out (log.out_dir)"
        )
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_resumable(ckpt, cfg, ckpt_path)
    elif resume and main:
        log.info("no checkpoint in %s yet: starting from step 0", out_dir)

    require(_packages_needed(cfg))  # and so is a missing package, not at the first PNG grid

    # -- the data (listed before any model loads: too few images for a batch is said first) --
    d = cfg.data
    dataset = training_data(cfg, device)
    total = (
        cfg.max_steps
        if cfg.max_steps is not None
        else cfg.epochs * (len(dataset) // cfg.batch_size)
    )
    step0 = ckpt["step"] if ckpt is not None else 0
    sampler = StepSampler(
        len(dataset), global_batch=cfg.batch_size, steps=total, seed=cfg.seed,
        start_step=step0, rank=info.rank, world=info.world,
    )  # fmt: skip

    # -- the models ------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    featurizer = build_featurizer(cfg, device)
    upsampler, cfg, extras = build_upsampler(cfg, featurizer.dim, featurizer.input_norm_key(), ckpt)
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
        for change in apply_optim_config(optimizer, cfg):
            log.info("resuming with this run's %s", change)
        set_rng_state(ckpt["rng"])

    # -- the loader ------------------------------------------------------------------------
    if d.masks == "sam":
        precompute_masks(dataset, info)
    workers = _workers(d.num_workers, main)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", worker_init_fn=worker_ignores_sigterm,
    )  # fmt: skip
    sizes = cfg.stage2.global_sizes or default_global_sizes(featurizer.patch_size)

    monitor, viz = None, None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
        write_run_record(out_dir, cfg.to_dict(), info.world)
        monitor = Monitor(out_dir, start_step=step0, tensorboard=cfg.log.tensorboard)
        viz = validation_images(dataset, cfg, sizes, device)
        # TensorBoard drops the events from step0 on (those a crashed run wrote past its
        # checkpoint), the checkpoint step's picture with them: draw it again
        redraw = step0 and cfg.log.tensorboard and monitor.picture_path(step0).exists()
        if redraw and viz is not None:
            pictures(monitor, trainee.upsampler, featurizer, viz, step0)
        log.info(
            "stage %d: %d images (%d without annotations), %d steps of %d, %d process(es) on %s",
            cfg.stage, len(dataset), dataset.orphans, total, cfg.batch_size, info.world, device,
        )  # fmt: skip

    # -- the loop --------------------------------------------------------------------------
    weights = {"rec": cfg.recon.weight}
    if cfg.stage == 1:
        weights.update(tv=cfg.stage1.tv_weight, target=cfg.stage1.target_weight)
    else:
        weights.update(tv=cfg.stage2.tv_weight, affinity=cfg.stage2.affinity_weight)
    local = cfg.batch_size // info.world
    rows = (info.rank * local, (info.rank + 1) * local)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else nullcontext()
    )
    bar = tqdm(
        total=total,
        initial=step0,
        desc=f"stage {cfg.stage}",
        disable=not (main and cfg.log.progress),
    )

    saved = [step0 if ckpt is not None else None]  # the step the checkpoint on disk holds

    def save(done: int) -> None:
        # CSV first: a kill between the two leaves rows beyond the checkpoint (dropped on
        # resume), never a checkpoint beyond the CSV (rows lost for good)
        saved[0] = done
        monitor.flush()
        save_checkpoint(
            ckpt_path, checkpoint_payload(cfg, trainee, optimizer, teacher, done, history, skipped)
        )

    sigterm.in_steps = True
    tick = time.perf_counter()
    for step, batch in zip(range(step0, total), from_workers(loader, "data.num_workers")):
        t_data = time.perf_counter() - tick
        draws = draw_step(cfg, step, featurizer.dim, featurizer.patch_size, sizes).rows(*rows)
        images01 = batch["image"].to(device, non_blocking=True).float() / 255.0
        with autocast:
            if cfg.stage == 1:
                inputs = stage1_inputs(
                    featurizer, featurizer.normalize(images01), batch, draws, cfg
                )
            else:
                inputs = stage2_inputs(featurizer, teacher.model, images01, batch, draws, cfg)
            losses = model(inputs, weights)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        clip = cfg.optim.clip_grad_norm if step < cfg.optim.clip_steps else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(trainee.parameters(), clip)
        if not torch.isfinite(grad_norm):  # the same on every rank: DDP summed the gradients
            bar.close()
            if main:  # the rows since the checkpoint: how the run got there
                monitor.flush()
            raise LoftUpError(_not_finite(step, losses, ckpt_path, saved[0]))
        optimizer.step()
        if teacher is not None:
            teacher.update(trainee.upsampler, step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

        scalars = {k: float(v.detach()) for k, v in losses.items()}
        scalars["skipped"] = float(len(batch["skipped"]))
        scalars["stop"] = float(sigterm.requested)  # any rank's SIGTERM stops them all here
        scalars = mean_over_ranks(scalars, info)
        stopping = scalars.pop("stop") > 0
        scalars["skipped"] *= info.world
        skipped += int(round(scalars["skipped"]))
        scalars.update(
            grad_norm=float(grad_norm), lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - tick, data_seconds=t_data,
            target_seconds=inputs.get("target_seconds", 0.0),
        )  # fmt: skip
        history.append({"step": step, **scalars})
        done = step + 1
        if main:
            monitor.scalars(step, scalars, tensorboard=step % cfg.log.log_every == 0)
            bar.set_postfix(loss=f"{scalars['loss']:.4g}")
            bar.update(1)
            if (
                cfg.log.viz_every
                and (done % cfg.log.viz_every == 0 or done == total)
                and viz is not None
            ):
                pictures(monitor, trainee.upsampler, featurizer, viz, done)
            if done % cfg.log.ckpt_every == 0 or done == total or stopping:
                save(done)
        if stopping:
            bar.close()
            barrier(info)  # rank 0's checkpoint is whole before any process leaves
            if main:
                log.warning(
                    "SIGTERM: stopped after step %d of %d; %s holds it: run the same command "
                    "with --resume to go on", done, total, ckpt_path,
                )  # fmt: skip
            terminate()
        tick = time.perf_counter()
    sigterm.in_steps = False
    bar.close()

    # -- the end ---------------------------------------------------------------------------
    steps = max(step0, len(history) and history[-1]["step"] + 1)
    final = out_dir / "final"
    if main:
        if steps == step0 and not ckpt_path.exists():  # zero steps asked for: still leave a result
            payload = checkpoint_payload(cfg, trainee, optimizer, teacher, steps, history, skipped)
            save_checkpoint(ckpt_path, payload)
        meta = {"stage": cfg.stage, "steps": steps, "train_config": cfg.to_dict()}
        kw = {"backbone": cfg.backbone, "backbone_norm": cfg.backbone_norm, "metadata": meta}
        save_pretrained(trainee.upsampler, final, **kw)
        if teacher is not None:
            save_pretrained(teacher.model, out_dir / "final_teacher", **kw)
        monitor.close()
        monitor.summary(
            history, steps=steps, skipped=skipped, seconds=time.perf_counter() - started
        )
        if skipped:
            log.warning("%d unreadable files were skipped (see the warnings above)", skipped)
    barrier(info)
    return TrainResult(
        out_dir, ckpt_path, final, steps, history, skipped, time.perf_counter() - started
    )


def _not_finite(step: int, losses: dict, ckpt_path: Path, saved: int | None) -> str:
    """What a step whose gradient is NaN or infinite says: which loss terms were not finite,
    that the weights were not updated, and how to go on from the checkpoint left on disk."""
    bad = [k for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
    terms = f"loss terms not finite: {', '.join(bad)}" if bad else "the loss itself is finite"
    if saved is None:
        where = "No checkpoint was written yet: run again without --resume"
    else:
        where = f"{ckpt_path} (step {saved}) is untouched: run the same command with --resume"
    return (
        f"step {step}: the gradient is not finite ({terms}); the run stops before its weights "
        f"take it. {where}, after lowering optim.lr or, with precision=bf16, in fp32"
    )


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


def validation_images(dataset: MaskedImages, cfg: TrainConfig, sizes, device):
    """The first ``log.num_viz`` readable images, in [0, 1] at the size the pictures use."""
    from ..data.images import READ_ERRORS

    pics = []
    for i in range(min(len(dataset), 4 * cfg.log.num_viz)):
        if len(pics) == cfg.log.num_viz:
            break
        try:
            pics.append(dataset.load(i)[0])
        except READ_ERRORS:
            continue
    if not pics:
        return None
    images01 = torch.stack(pics).float().to(device) / 255.0
    if cfg.stage == 2:
        s = sizes[0]
        images01 = torch.nn.functional.interpolate(
            images01, size=(s, s), mode="bilinear", antialias=True
        )
    return images01


@torch.no_grad()
def pictures(monitor: Monitor, upsampler, featurizer, images01, step: int) -> None:
    image = featurizer.normalize(images01)
    lr = featurizer(image).float()
    was_training = upsampler.training
    upsampler.eval()
    hr = upsampler(lr, image)
    upsampler.train(was_training)
    monitor.pictures(step, images01, lr, hr)
