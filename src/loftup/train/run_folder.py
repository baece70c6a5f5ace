"""A run's folder (``log.out_dir``, rank 0 only) at the start of its steps and at their end: the
folder made, what a killed run left removed, the run record written and the :class:`Monitor`
opened; at the end the upsampler exported as ``final/`` (stage 2's EMA teacher as
``final_teacher/``), the monitor closed and ``summary.json`` written. The checkpoints in between
are the loop's (:mod:`.loop`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..hub import save_pretrained
from .checkpoint import remove_stale_temporaries
from .config import TrainConfig
from .monitor import SUMMARY_NAME, Monitor, write_run_record
from .stopping import clear_stop_note

log = logging.getLogger("loftup.train")


def open_run_folder(cfg: TrainConfig, out_dir: Path, world: int, step0: int) -> Monitor:
    """Make ``out_dir``, remove the temporaries of a run killed there, an earlier stop's note
    (this run says its own) and an earlier end's ``summary.json``, write ``config.yaml`` and
    ``run.json`` and open the run's :class:`Monitor` from step ``step0`` (the resumed
    checkpoint's). The summary, written last, marks a run that ended: one resumed to train on
    (a higher max_steps) and killed after its last checkpoint but before its export would have
    looked ended, with the earlier run's summary beside the earlier ``final/``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    clear_stop_note(out_dir)
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
    write_run_record(out_dir, cfg.to_dict(), world)
    return Monitor(out_dir, start_step=step0, tensorboard=cfg.log.tensorboard)


def finish_run(
    cfg: TrainConfig, out_dir: Path, monitor: Monitor, trainee, teacher, *, steps: int,
    history: list[dict], skipped: int, started: float,
) -> Path:  # fmt: skip
    """Export the run of ``steps`` steps: ``final/`` (the trainee's upsampler), stage 2's
    ``final_teacher/``, both recording the backbone and the config; close ``monitor`` and write
    ``summary.json`` (``started``: the run's ``time.perf_counter()`` at its start). Returns
    ``final/``'s path."""
    final = out_dir / "final"
    meta = {"stage": cfg.stage, "steps": steps, "train_config": cfg.to_dict()}
    kw = {"backbone": cfg.backbone, "backbone_norm": cfg.backbone_norm, "metadata": meta}
    save_pretrained(trainee.upsampler, final, **kw)
    if teacher is not None:
        save_pretrained(teacher.model, out_dir / "final_teacher", **kw)
    monitor.close()
    monitor.summary(history, steps=steps, skipped=skipped, seconds=time.perf_counter() - started)
    if skipped:
        log.warning("%d unreadable files were skipped (see the warnings above)", skipped)
    return final
