"""Training checkpoints: one file, written atomically, readable with ``torch.load(weights_only=True)``.

Layout (every value a tensor, number, string, list, dict or None)::

    model          the upsampler's state dict (this package's key names)
    model_config   LoftUpConfig.to_dict()
    backbone       the featurizer's name
    stage, step    the stage and the number of optimiser steps taken
    images         how many images the run's data holds (its order depends on it)
    config         the full TrainConfig as a dict
    downsampler, uncertainty, optimizer, teacher (stage 2)
    rng            torch's generator states (CPU and CUDA)
    history        per-step scalars so far: {"keys": [...], "values": (steps, keys) float64},
                   see :func:`unpack_history` (a list of dicts would pickle 30 MB per 125k steps)

``loftup.load_upsampler(path)`` reads the first two (``hub.to_native``); ``--resume`` reads all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from ..atomic import atomic_write, leftovers
from ..errors import CheckpointError

FORMAT = "loftup-train"
CHECKPOINT_NAME = "checkpoint.pt"
#: the folders a run writes files into, beside its checkpoint
RUN_SUBFOLDERS = ("viz", "final", "final_teacher")
_MKSTEMP = "[a-z0-9_]" * 8  # the 8 characters of a tempfile.mkstemp name


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` through a synced temporary file renamed onto ``path`` (as
    :func:`~loftup.atomic.atomic_write` writes every file)."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp))
    return path


class CheckpointClock:
    """When a run's checkpoint is due by wall time (``log.ckpt_minutes``): ``minutes`` after the
    last one was written (or the steps began), on rank 0's clock (``main``), so that a kill -9
    loses that much work at most, however long ``log.ckpt_every`` steps take. Its vote rides
    the step's all-reduce (:meth:`votes`, :meth:`agreed`, as the stop signals' do), so every
    rank takes the same decision at the same step. ``minutes`` 0: never by time; ``clock``:
    seconds from any fixed point."""

    def __init__(self, minutes: float, main: bool, clock=time.monotonic) -> None:
        self.seconds = 60.0 * minutes
        self.main = main
        self.clock = clock
        self.since = clock()

    def votes(self) -> dict[str, float]:
        """This process's part of the step's all-reduce: rank 0's "due", the others' 0."""
        due = self.main and self.seconds > 0 and self.clock() - self.since >= self.seconds
        return {"ckpt_due": float(due)}

    def agreed(self, means: dict[str, float]) -> bool:
        """Whether the checkpoint is due, from ``means`` (:meth:`votes` averaged over the ranks,
        which is taken out of it)."""
        return means.pop("ckpt_due") > 0

    def saved(self) -> None:
        """A checkpoint was just written: the next is due ``minutes`` from now (the time its
        writing took is not counted, so a slow disk never makes every step write one)."""
        self.since = self.clock()


def load_checkpoint(
    path: str | os.PathLike, another: str = "--out (log.out_dir)", *, mapped: bool = False
) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (no code is unpickled). ``another``: the
    option that chose its folder, as the command reading it takes it, offered in the fix of
    one that cannot be loaded, or that this user may not read ("or choose another --out").
    ``mapped``: its tensors memory-mapped, not held in memory (read once for their checksums;
    a look at its config, step and history, with every check and refusal of the load:
    :func:`~loftup.hub.torch_load`'s ``mmap``)."""
    from ..hub import torch_load

    fix = (
        "loftup train writes its checkpoints with tensors, numbers and strings only: move this "
        f"file away (training starts afresh) or choose another {another}"
    )
    if os.path.isdir(path):  # the open said only "[Errno 21] Is a directory"
        raise CheckpointError(
            f"training checkpoint {path} is a folder, not the file loftup train writes there: "
            f"move it away (training starts afresh) or choose another {another}"
        )
    data = torch_load(path, fix=fix, what="training checkpoint ", another=another, mmap=mapped)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f'{path} is not a loftup training checkpoint (no "format": "{FORMAT}"); {fix}'
        )
    return data


def has_checkpoint(path: str | os.PathLike, another: str = "--out (log.out_dir)") -> bool:
    """Whether a run's checkpoint is at ``path``: anything in its place (a folder is refused
    where it is loaded); nothing, or a folder this user may not search, is no checkpoint. A
    link to a file that is not there (a scratch disk not mounted on this node) is a
    :class:`CheckpointError` with its fix and ``another`` (the option that chose the folder):
    taken for no checkpoint, the run trained afresh over it, its metrics.csv lost."""
    if not os.path.lexists(path):
        return False
    try:
        os.stat(path)
    except FileNotFoundError:
        why = "which does not exist (a disk not mounted?)"
    except OSError as e:  # a loop of links, a folder on its way this user may not search
        why = f"which cannot be reached ({e.strerror or e})"
    else:
        return True
    if not os.path.islink(path):  # (gone since the look above: no checkpoint)
        return False
    raise CheckpointError(
        f"{path} is a link to {os.readlink(path)}, {why}; mount it, or remove the link to "
        f"start afresh, or choose another {another}"
    )


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporaries a killed run left behind in its folder: ``.checkpoint.pt.*.tmp``,
    and those of every other file it writes atomically (``.metrics.csv.*.tmp``, in ``viz/``
    and ``final/`` too; :func:`~loftup.atomic.leftovers`), which nothing else would remove.
    Returns how many."""
    folder = Path(folder)
    stale = {*folder.glob(f".{CHECKPOINT_NAME}.*.tmp"), *folder.glob(f".*.{_MKSTEMP}.tmp")}
    for sub in RUN_SUBFOLDERS:  # not all of the folder: a big one (--out .) would take long
        stale.update(leftovers(folder / sub))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def rng_state() -> dict:
    """torch's global generator states (the loop draws its own randomness per step; these cover
    anything else that draws from the global generators)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # the GPUs both machines have (set_rng_state_all failed on a resume with fewer GPUs
        # than the run was saved with; any more keep their own)
        for index, gpu_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, index)


def pack_history(rows: list[dict]) -> dict:
    """Per-step scalar dicts -> {"keys": names, "values": (steps, keys) float64 tensor}."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    values = torch.tensor(
        [[float(row.get(k, float("nan"))) for k in keys] for row in rows], dtype=torch.float64
    )
    return {"keys": keys, "values": values.reshape(len(rows), len(keys))}


def unpack_history(packed: dict) -> list[dict]:
    """The inverse of :func:`pack_history` (``step`` comes back as an int)."""
    keys = packed["keys"]
    return [
        {k: (int(v) if k == "step" else v) for k, v in zip(keys, row)}
        for row in packed["values"].tolist()
    ]
