"""A run's folder (``log.out_dir``, rank 0 only) at the start of its steps and at their end: the
folder made, what a killed run left removed, the run record written and the :class:`Monitor`
opened; at the end the upsampler exported as ``final/`` (stage 2's EMA teacher as
``final_teacher/``), the monitor closed and ``summary.json`` written. The checkpoints in between
are the loop's (:mod:`.loop`)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..errors import LoftUpError
from ..hub import save_pretrained
from .checkpoint import remove_stale_temporaries
from .config import TrainConfig
from .monitor import SUMMARY_NAME, Monitor, write_run_record
from .stopping import clear_stop_note

log = logging.getLogger("loftup.train")


#: the file in a run's folder that the run writing there holds a lock on (:func:`folder_lock`)
LOCK_NAME = ".loftup-train.lock"


@contextmanager
def folder_lock(out_dir: Path):
    """Hold ``out_dir``'s lock while a run writes there. A second run on the same folder (a job
    launched twice, a requeued job while the first still runs) is refused with a
    :class:`LoftUpError` naming the holder, before it writes anything: the two overwrote each
    other's checkpoint, metrics and ``final/``. A POSIX lock (``fcntl.lockf``): the system
    releases it when its process ends however it ends (``kill -9`` too), and DataLoader
    workers do not inherit it; where the file system keeps no locks, none is held."""
    try:
        import fcntl
    except ImportError:  # not on a POSIX system: no lock
        yield
        return
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):  # no locks here (ENOLCK, ...)
                log.debug("no lock on %s (%s): a second run there is not refused", out_dir, e)
                yield
                return
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise LoftUpError(
                f"{out_dir} is in use by another loftup train run"
                f"{f' ({holder})' if holder else ''}; wait for it to end (then --resume "
                "continues it), or choose another --out (log.out_dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # the lock goes with it


def open_run_folder(
    cfg: TrainConfig, out_dir: Path, world: int, step0: int, held: ExitStack
) -> Monitor:
    """Make ``out_dir`` and take its lock for as long as ``held`` lasts (:func:`folder_lock`),
    remove the temporaries of a run killed there, an earlier stop's note (this run says its
    own) and an earlier end's ``summary.json``, write ``config.yaml`` and ``run.json`` and open
    the run's :class:`Monitor` from step ``step0`` (the resumed checkpoint's). The summary,
    written last, marks a run that ended: one resumed to train on (a higher max_steps) and
    killed after its last checkpoint but before its export would have looked ended, with the
    earlier run's summary beside the earlier ``final/``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    held.enter_context(folder_lock(out_dir))
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
