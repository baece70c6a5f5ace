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
from ..file_lock import NO_LOCKS, lockf_nowait, open_lock_file
from ..hub import save_pretrained
from .checkpoint import remove_stale_temporaries
from .config import TrainConfig
from .earlier import Earlier
from .monitor import SUMMARY_NAME, Monitor, write_run_record
from .stopping import clear_stop_note

log = logging.getLogger("loftup.train")


#: the file in a run's folder that the run writing there holds a lock on (:func:`folder_lock`)
LOCK_NAME = ".loftup-train.lock"

#: the folders this process's runs hold (a POSIX lock is the process's: a second run of the
#: same process would get it again, and its end would release the first run's)
_HELD: set[str] = set()


@contextmanager
def folder_lock(out_dir: Path):
    """Hold ``out_dir``'s lock while a run writes there. A second run on the same folder (a job
    launched twice, a requeued job while the first still runs) is refused with a
    :class:`LoftUpError` naming the holder, before it writes anything: the two overwrote each
    other's checkpoint, metrics and ``final/``. A POSIX lock (``fcntl.lockf``) of
    :data:`LOCK_NAME`: the system releases it when its process ends however it ends (``kill
    -9`` too), and DataLoader workers do not inherit it; where the file system keeps no locks
    (:data:`..file_lock.NO_LOCKS`), none is held, with a warning; another error of the request
    (an I/O error) is raised. A second run of the same process (threads, a notebook) is
    refused too, and so is a link or folder in the lock file's place."""
    key = os.path.realpath(out_dir)
    if key in _HELD:
        raise _in_use(out_dir, f"process {os.getpid()}, this one")
    fd = open_lock_file(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, "loftup train runs")
    _HELD.add(key)
    try:
        try:
            lockf_nowait(fd)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise _in_use(out_dir, holder) from None
        except OSError as e:
            if e.errno not in NO_LOCKS:
                raise
            log.warning(  # (ENOLCK: NFS without its lock service)
                "%s keeps no file locks (%s): a second loftup train run on it would not be "
                "refused; run one at a time there", out_dir, e.strerror or e,
            )  # fmt: skip
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)  # the lock goes with it


def _in_use(out_dir: Path, holder: str) -> LoftUpError:
    return LoftUpError(
        f"{out_dir} is in use by another loftup train run{f' ({holder})' if holder else ''}; "
        "wait for it to end (then --resume continues it), or choose another --out (log.out_dir)"
    )


def lock_run_folder(out_dir: Path, info, held: ExitStack) -> None:
    """Rank 0 makes ``out_dir`` and takes its lock (:func:`folder_lock`) for as long as
    ``held`` lasts, before the run looks at what the folder holds: a run that ended there while
    this one built its models could otherwise be overwritten on the strength of an earlier
    look (its checkpoint read as absent, or as older). A refusal is said by every rank."""
    from .distributed import broadcast_object

    problem = None
    if info.is_main:
        try:
            made = False
            try:
                out_dir.mkdir(parents=True)
                made = True
            except FileExistsError:
                pass
            held.enter_context(folder_lock(out_dir))
        except LoftUpError as e:
            problem = str(e)
        except OSError as e:  # one line on every rank
            problem = _cannot_lock(out_dir / LOCK_NAME, e)
        else:
            if made:  # removed again if the run writes nothing there: under the lock, which
                # is let go after it (a refused run removes nothing: the folder is another's)
                held.callback(_remove_if_unused, out_dir)
    if info.enabled:
        problem = broadcast_object(problem, info)
    if problem is not None:
        raise LoftUpError(problem)


def _cannot_lock(path: Path, e: OSError) -> str:
    """The refusal where taking the lock of ``path`` failed with ``e``: its file another
    user's, say (who owns it is the question), or an error of its file system (an I/O error:
    its text and the path, no owner to ask)."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot take the lock of {path} ({e.strerror or e}); check who owns it, or choose "
            "another --out (log.out_dir)"
        )
    return (
        f"cannot take the lock of {path}: {e.strerror or e}; run again once that is fixed, or "
        "choose another --out (log.out_dir)"
    )


def _remove_if_unused(out_dir: Path) -> None:
    """Remove ``out_dir``, made by this run, which failed before writing there, where it holds
    nothing but the lock's file (the lock still held: no other run can have taken it)."""
    try:
        if [p.name for p in out_dir.iterdir()] == [LOCK_NAME]:
            (out_dir / LOCK_NAME).unlink()
            out_dir.rmdir()
    except OSError:  # taken over, or not ours to remove: left as it is
        pass


def open_run_folder(
    cfg: TrainConfig,
    out_dir: Path,
    world: int,
    step0: int,
    resumed: dict | None = None,
    init_commit: str | None = None,
    earlier: Earlier | None = None,
) -> Monitor:
    """In ``out_dir``, locked since the run began (:func:`lock_run_folder`): remove the
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
    write_run_record(
        out_dir, cfg.to_dict(), world, resumed=resumed, step=step0, init_commit=init_commit,
        earlier=earlier.record,
    )  # fmt: skip
    return Monitor(out_dir, start_step=step0, rows=earlier.rows, tensorboard=cfg.log.tensorboard)


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
