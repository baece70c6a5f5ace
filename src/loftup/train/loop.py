"""The training loop, top to bottom: LoftUp's stage 1 or stage 2, on one process or many.

One process (CPU or one GPU)::

    loftup train --stage 1 --config stage1_sa1b data.root=/data/sa1b log.out_dir=runs/s1

Several (DDP, switched on by torchrun's environment; nccl on GPUs, gloo on CPUs)::

    torchrun --nproc_per_node 8 -m loftup train --stage 1 --config stage1_sa1b data.root=...

In Python: ``loftup.train.train(load_config("stage1_cpu", ["data.root=..."]))`` returns a
:class:`TrainResult` with the loss history. Only rank 0 logs and writes files; every rank sees
its own slice of each global batch (see :class:`loftup.data.sampler.StepSampler`).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, nullcontext, suppress
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..bars import bar_settings
from ..errors import LoftUpError, require
from .batches import draw_step, stage1_inputs, stage2_inputs
from .build import Init, checkpoint_payload
from .checkpoint import CheckpointClock, save_checkpoint
from .config import TrainConfig, load_config
from .distributed import (
    DistInfo,
    barrier,
    collective_failure,
    mean_over_ranks,
    setup,
    teardown,
)
from .earlier import OUT_OPTION
from .ending import end_run
from .gradients import clip_limit, not_finite
from .loader import batches
from .objectives import loss_weights
from .pictures import pictures
from .preflight import (  # noqa: F401  (check_*: importable from here, as before preflight.py)
    check_backbone_weights,
    check_init,
    check_out_dir,
    check_out_dir_writable,
    packages_needed,
    preflight,
)
from .result import TrainResult
from .run_folder import check_run_subfolders, finish_run
from .run_lock import lock_run_folder
from .start import checkpoint_to_resume, earlier_of, start_run
from .stop_lines import GO_ON, say_stop, stop_line
from .stop_signals import HungUp, signal_of
from .stopping import StopOnSignals


def train(
    config: TrainConfig | str | os.PathLike | dict,
    *,
    resume: bool = False,
    go_on: str = GO_ON,
    out_option: str = OUT_OPTION,
    out_inside: str | os.PathLike | None = None,
    whole_command: bool = False,
) -> TrainResult:
    """Train stage ``config.stage``; ``resume`` continues from ``log.out_dir/checkpoint.pt``;
    ``go_on``: how a run stopped by a signal goes on (its stop line and ``stopped.txt``);
    ``out_option``: the option that chose ``log.out_dir`` as the command running this takes
    it (``loftup demo`` and ``loftup experiment``: "--out"), offered where this user may not
    read a file of the folder ("; or choose another --out") and in every other refusal of it
    (its lock held by another run, a checkpoint there without ``resume``...); ``out_inside``:
    the folder given as that option where ``log.out_dir`` is a run folder the command makes in
    it (a demo's ``OUT/runs/stage1``), which a refusal of the folder names as given;
    ``whole_command``: the run is all the command does (``loftup train``'s, said by it):
    under torchrun, once its ranks voted no stop at its end, the rest is clean-up, and a
    SIGTERM or SIGHUP is ignored to the process's end (a wrapping command's later work, a
    Python caller's, is still to do: a signal there still stops it); on one process, once the
    run is complete, a SIGHUP stops the command as a SIGTERM does, saying that the run is
    complete (SIGHUP's default action, put back with the run's handlers, killed it unsaid).

    Signals (main thread): the caller's SIGTERM, SIGHUP (where it has its default action) and
    SIGINT (unless ignored) handlers are replaced while the run runs and put back as it ends,
    however it ends (the command line's own keeps SIGTERM and SIGHUP ignored after a stop, and
    ``whole_command`` under torchrun once the run is complete; ``whole_command`` on one process
    keeps SIGHUP's handler once the run is complete, to the command's end).
    A signal during the steps stops the run after the current step, with a checkpoint; what
    the stop raises: SIGTERM :class:`loftup.errors.Terminated` (a ``KeyboardInterrupt``),
    Ctrl-C ``KeyboardInterrupt``, SIGHUP :class:`loftup.train.HungUp` (a ``SystemExit(129)``);
    its line is logged: how to go on (also kept in ``log.out_dir/stopped.txt``), or that the
    run is complete, for a stop that came once ``final/`` and ``summary.json`` were written."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    # every value and path the user gave, before any loading
    init = preflight(cfg, resume, out_option, out_inside)
    info = setup(cfg.device)
    signals = StopOnSignals(
        info.is_main,
        go_on,
        ignore_at_end=whole_command and info.world > 1,
        hang_up_at_end=whole_command and info.world == 1,
    )
    try:
        # under torchrun: now the ranks can agree
        check_out_dir_writable(cfg.log.out_dir, info, out_option, out_inside)
        with signals, ExitStack() as held:
            out_dir = Path(cfg.log.out_dir).expanduser()
            lock_run_folder(out_dir, info, held, out_option)  # before any look
            result = _run(cfg, info, resume, signals, init, out_option, out_inside)
    except BaseException as e:
        # a stop raised as signals' __exit__ put the handlers back (its scope closing, the
        # run's handler still on) or just after it says here that the run is complete, where
        # it is; one that came through the with (as the run's folder was let go too) was said
        # by that __exit__, and this says nothing (said once)
        if isinstance(e, (KeyboardInterrupt, HungUp)):
            signals.say_complete(signal_of(e))
        teardown(info, e)  # its frames hold the DDP wrapper: released before the group
        failure = collective_failure(e, info)  # another process hangs, or has ended
        if failure is not None:
            raise failure from None
        raise
    try:  # (a torchrun job's whole command, complete: SIGTERM and SIGHUP ignored meanwhile)
        teardown(info)
    except (KeyboardInterrupt, HungUp) as e:  # a stop as the process group is let go: the
        signals.say_complete(signal_of(e))  # run is complete all the same (said once)
        teardown(info, e)  # one that came before the group was destroyed: destroyed now
        raise
    return result


def _run(
    cfg: TrainConfig,
    info: DistInfo,
    resume: bool,
    signals: StopOnSignals,
    init: Init | None,
    out_option: str,
    out_inside=None,
) -> TrainResult:
    started = time.perf_counter()
    device, main = info.device, info.is_main
    out_dir = Path(cfg.log.out_dir).expanduser()
    ckpt_path, ckpt = checkpoint_to_resume(cfg, out_dir, resume, main, out_option)
    earlier = earlier_of(out_dir, ckpt, info, out_option)  # before anything there changes
    check_run_subfolders(cfg, out_dir, info, out_option, out_inside)  # tb/, viz/: writable

    require(packages_needed(cfg))  # and so is a missing package, not at the first PNG grid

    # -- the data, the models, the loader and the run's folder (start.py) -----------------
    s = start_run(cfg, info, out_dir, ckpt_path, ckpt, init, earlier)
    dataset, total, step0 = s.dataset, s.total, s.step0
    sizes, viz, monitor = s.sizes, s.viz, s.monitor
    m = s.models
    cfg, featurizer, trainee, teacher = m.cfg, m.featurizer, m.trainee, m.teacher
    model, optimizer, history, skipped = m.model, m.optimizer, m.history, m.skipped

    # -- the loop --------------------------------------------------------------------------
    weights = loss_weights(cfg)
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
        **bar_settings(shown=main and cfg.log.progress),
    )

    saved = [step0 if ckpt is not None else None]  # the step the checkpoint on disk holds

    def save(done: int) -> None:
        # CSV first: a kill between the two leaves rows beyond the checkpoint (dropped on
        # resume), never a checkpoint beyond the CSV (rows lost for good)
        monitor.flush()
        save_checkpoint(
            ckpt_path,
            checkpoint_payload(
                cfg, trainee, optimizer, teacher, done, history, skipped, len(dataset)
            ),
        )
        clock.saved()

    clock = CheckpointClock(cfg.log.ckpt_minutes, main)  # log.ckpt_minutes, on rank 0's clock
    tick = time.perf_counter()
    # a dead worker is named wherever it is heard of; a signal stops after the step
    with signals.steps(), batches(s.loader, cfg.data.root) as feed:
        for step, batch in zip(range(step0, total), feed):
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
            grad_norm = torch.nn.utils.clip_grad_norm_(trainee.parameters(), clip_limit(cfg, step))
            if not torch.isfinite(grad_norm):  # the same on every rank: DDP summed the gradients
                with suppress(OSError):  # the terminal gone (see below): the error is said
                    bar.close()
                if main:  # the rows since the checkpoint: how the run got there
                    monitor.flush()
                raise LoftUpError(not_finite(step, losses, ckpt_path, saved[0]))
            optimizer.step()
            if teacher is not None:
                teacher.update(trainee.upsampler, step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

            scalars = {k: float(v.detach()) for k, v in losses.items()}
            scalars["skipped"] = float(len(batch["skipped"]))
            # any rank's SIGTERM, SIGHUP or Ctrl-C stops them all here (SIGTERM named first),
            # and rank 0's clock says whether log.ckpt_minutes have passed: the same on all
            scalars = mean_over_ranks({**scalars, **signals.votes(), **clock.votes()}, info)
            stop_on = signals.agreed(scalars)
            stopping = stop_on is not None
            timed = clock.agreed(scalars)
            scalars["skipped"] *= info.world
            skipped += int(round(scalars["skipped"]))
            scalars.update(
                grad_norm=float(grad_norm), lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - tick, data_seconds=t_data,
                target_seconds=inputs["target_seconds"],
            )  # fmt: skip
            history.append({"step": step, **scalars})
            done = step + 1
            if done % cfg.log.ckpt_every == 0 or done == total or stopping or timed:
                saved[0] = done  # on every rank: a later step's error names it
            if main:
                monitor.scalars(step, scalars, tensorboard=step % cfg.log.log_every == 0)
                if (
                    cfg.log.viz_every
                    and (done % cfg.log.viz_every == 0 or done == total)
                    and viz is not None
                ):
                    pictures(monitor, trainee.upsampler, featurizer, viz, done)
                if saved[0] == done:
                    save(done)
            if stopping and done < total:  # at the last step: the run ends, then stops
                # the terminal may have gone with the signal (the `| tee` that Ctrl-C or the
                # scheduler ended too): a write to its broken pipe must not stop the stop
                with suppress(OSError):
                    bar.close()
                barrier(info)  # rank 0's checkpoint is whole before any process leaves
                if main:  # in the run's folder too: the terminal may be gone (SIGHUP)
                    say_stop(out_dir, stop_line(stop_on, done, total, ckpt_path, signals.go_on))
                signals.stop(stop_on)
            # after the checkpoint: see above; and a signal that came after this step's votes
            # (with the terminal it ended) is acted on at the next step, which this must reach
            with suppress(OSError):
                bar.set_postfix(loss=f"{scalars['loss']:.4g}", refresh=False)
                bar.update(1)
            tick = time.perf_counter()
    with suppress(OSError):  # the terminal gone (see above): final/ is still exported
        bar.close()
    # a stop asked for with the last step, or after its votes: the steps are all taken and
    # saved, so the run ends as a whole run does (final/ exported), then stops with the
    # signal's exit status, on every rank (a later SIGTERM or SIGHUP is ignored meanwhile)
    if signals.agreed(mean_over_ranks(signals.votes(), info)) is not None:
        signals.finish_first()

    # -- the end: final/ exported, then a stop any rank caught since stops every rank -------
    steps = max(step0, len(history) and history[-1]["step"] + 1)
    final = out_dir / "final"

    def export(done) -> None:
        if steps == step0 and not ckpt_path.exists():  # zero steps asked for: still leave a result
            save(steps)
        finish_run(
            cfg, out_dir, monitor, trainee, teacher, steps=steps, history=history,
            skipped=skipped, started=started, done=done, backbone_dim=featurizer.dim,
        )  # fmt: skip

    end_run(signals, info, export, steps, total, ckpt_path)
    return TrainResult(
        out_dir, ckpt_path, final, steps, history, skipped, time.perf_counter() - started
    )
