"""A run's folder (``log.out_dir``, rank 0 only) at the start of its steps and at their end (the
folder made and locked before, :mod:`.run_lock`): what a killed run left removed, the run
record written and the :class:`Monitor` opened; at the end the upsampler exported as
``final/`` (stage 2's EMA teacher as ``final_teacher/``), the monitor closed and
``summary.json`` written. The checkpoints in between are the loop's (:mod:`.loop`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..hub.saving import write_pretrained
from .checkpoint import remove_stale_temporaries
from .config import TrainConfig
from .earlier import Earlier
from .monitor import RECORD_NAME, SUMMARY_NAME, Monitor, write_run_record
from .stop_lines import clear_stop_note

log = logging.getLogger("loftup.train")


def check_run_subfolders(cfg: TrainConfig, out_dir: Path, info, another: str, inside=None) -> None:
    """A :class:`~loftup.errors.UsageError`, said by every rank, where a folder the run's
    :class:`Monitor` writes in (``tb/``, ``viz/``) takes no new files (this user may not
    write it, or it is a file): checked before the run changes its folder, which
    :func:`open_run_folder` did (summary.json deleted, config.yaml and run.json written)
    before TensorBoard's writer failed in its thread. ``another``: the option that chose
    the folder; ``inside``: the folder given as it, where ``out_dir`` is one the command
    makes in it (a demo's ``OUT/runs/stage1``), by default ``out_dir``."""
    from ..errors import UsageError
    from .distributed import broadcast_object

    problem = subfolder_problem(cfg, out_dir, another, inside) if info.is_main else None
    said = broadcast_object(problem, info)
    if said is not None:
        raise UsageError(said)


def subfolder_problem(cfg: TrainConfig, out_dir: Path, another: str, inside=None) -> str | None:
    """What :func:`check_run_subfolders` refuses of ``out_dir`` (None: nothing), told by this
    process alone and writing nothing: the up-front check of ``loftup demo --resume`` makes
    it for each stage's folder before the first trains."""
    from ..errors import UsageError
    from ..paths import check_folder_output

    for name, used in (("tb", cfg.log.tensorboard), ("viz", cfg.log.viz_every)):
        if used:
            folder = out_dir / name
            try:
                check_folder_output(folder, another, _chmod(folder), inside=inside or out_dir)
            except UsageError as e:
                return str(e)
    return None


def _chmod(folder: Path) -> str:
    """The alternative " (or CHMOD)" where ``folder``'s mode refuses this user new files in it:
    the chmod for this user's class of users for it (``u+w`` of its own, ``g+w`` by its owner
    for a member of its group, ``o+w`` for another; of another's with an ACL, the setfacl
    naming this user); where its mode lets this user yet it refuses, what else refuses (an
    ACL, an immutable flag, a security module, a read-only disk: no chmod would help); ""
    where it is not there or takes new files."""
    from ..read_refusal import advised_path, chmod_advice, may

    try:
        advice = chmod_advice(folder, folder.stat(), "wx")
    except OSError:
        return ""
    if advice:
        return f" (or {advice})"
    if may(folder, os.W_OK | os.X_OK):
        return ""
    quoted = advised_path(folder)
    return (
        f" (something else refuses: an ACL, getfacl {quoted}; an immutable flag, lsattr -d "
        f"{quoted}; a security module; or a read-only disk; no chmod would help)"
    )


def open_run_folder(
    cfg: TrainConfig,
    out_dir: Path,
    world: int,
    step0: int,
    resumed: dict | None = None,
    init_commit: str | None = None,
    earlier: Earlier | None = None,
) -> Monitor:
    """In ``out_dir``, locked since the run began (:func:`.run_lock.lock_run_folder`): remove the
    temporaries of a run killed there, an earlier stop's note (this run says its
    own) and an earlier end's ``summary.json``, write ``config.yaml`` and ``run.json`` (a
    resumed run's, ``resumed`` its checkpoint's config, adds this start to the earlier record:
    :func:`~.monitor.write_run_record`, with ``init_commit``, the hub commit stage 2's init
    was loaded from) and open the run's :class:`Monitor` from step
    ``step0`` (the resumed checkpoint's). ``earlier``: what a resumed run keeps of the folder
    (its record and metrics rows), read before the run changed anything there
    (:func:`~.earlier.read_earlier`: one this user may not read was refused with nothing
    changed; it was read here, after summary.json was deleted). The summary,
    written last, marks a run that ended: one resumed to train on (a higher max_steps) and
    killed after its last checkpoint but before its export would have looked ended, with the
    earlier run's summary beside the earlier ``final/``."""
    remove_stale_temporaries(out_dir)
    clear_stop_note(out_dir)
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
    earlier = earlier or Earlier()
    if earlier.broken:  # damaged (said as it was read): kept aside, not written over
        os.replace(out_dir / RECORD_NAME, out_dir / earlier.broken)
    write_run_record(
        out_dir, cfg.to_dict(), world, resumed=resumed, step=step0, init_commit=init_commit,
        earlier=earlier.record,
    )  # fmt: skip
    return Monitor(out_dir, start_step=step0, rows=earlier.rows, tensorboard=cfg.log.tensorboard)


def finish_run(
    cfg: TrainConfig, out_dir: Path, monitor: Monitor, trainee, teacher, *, steps: int,
    history: list[dict], skipped: int, started: float, done: Callable[[], None] | None = None,
    backbone_dim: int | None = None,
) -> Path:  # fmt: skip
    """Export the run of ``steps`` steps: ``final/`` (the trainee's upsampler), stage 2's
    ``final_teacher/``, both recording the backbone and the config; close ``monitor`` and write
    ``summary.json`` (``started``: the run's ``time.perf_counter()`` at its start), then call
    ``done()``: the run is complete. ``backbone_dim``: the width of the features the run's
    featurizer gave, which the export trusts over the backbone's registered width (a backbone
    of one's own may declare another than its builder gives: the run was complete, and its
    export refused). Returns ``final/``'s path."""
    final = out_dir / "final"
    meta = {"stage": cfg.stage, "steps": steps, "train_config": cfg.to_dict()}
    # backbone_weights: of another width than the name's, say (recorded so)
    record = (cfg.backbone, cfg.backbone_norm, meta, cfg.backbone_weights, backbone_dim)
    write_pretrained(trainee.upsampler, final, *record)
    if teacher is not None:
        write_pretrained(teacher.model, out_dir / "final_teacher", *record)
    monitor.close()
    monitor.summary(history, steps=steps, skipped=skipped, seconds=time.perf_counter() - started)
    if done is not None:
        done()
    if skipped:
        log.warning("%d unreadable files were skipped (see the warnings above)", skipped)
    return final
