"""What ``loftup upsample --resume`` finds of a rank's batches before it computes any
(:func:`resumed_batches`): those whose outputs are all there, kept, and the images changed
since their outputs were written, computed again with their batch and said."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import torch

from .inputs import Job
from .output_files import outputs_of


def resumed_batches(
    batches: list[list[Job]],
    out_dir: Path,
    fmt: str,
    viz: bool,
    rank: int,
    world_size: int,
    said_as: dict | None = None,
) -> tuple[list[list[Job]], int]:
    """This rank's ``batches`` that a resumed run computes (one whose outputs are all there,
    none changed since, is kept whole: :func:`_resumed`), and how many images it keeps; the
    images changed since are said (:func:`_say_changed`)."""
    looks = [[_resumed(j, out_dir, fmt, viz) for j in b] for b in batches]
    done = [all(look == "kept" for look in b) for b in looks]
    _say_changed(looks, done, rank, world_size, said_as)
    kept = sum(len(b) for b, d in zip(batches, done) if d)
    return [b for b, d in zip(batches, done) if not d], kept


def _resumed(job: Job, out_dir: Path, fmt: str, viz: bool) -> str:
    """What ``--resume`` finds of ``job``'s outputs: "kept" (all there), "missing", or
    "changed": all there, one older than its input (edited, or replaced, since the interrupted
    run), whose features a resumed run kept; one look (stat) at each file."""
    try:
        times = [p.stat() for p in outputs_of(out_dir, job, fmt, viz)]
    except OSError:
        return "missing"
    if not all(stat.S_ISREG(t.st_mode) for t in times):
        return "missing"
    try:
        changed = os.stat(job.path).st_mtime_ns > min(t.st_mtime_ns for t in times)
    except OSError:  # gone, or unreadable: its read fails, saying so, where it is computed
        return "kept"
    return "changed" if changed else "kept"


def _say_changed(looks, done, rank: int, world_size: int, said_as) -> None:
    """Says (rank 0, the count over every rank of the process group) how many images a resumed run computes again
    because they changed since their outputs were written; with the others of their batch
    (which is computed whole) whose outputs are there, where a batch holds more."""
    from ..words import said
    from .torchrun import summed

    changed = sum(look == "changed" for b in looks for look in b)
    others = sum(  # kept but for the change (one missing is computed anyway)
        look == "kept" for b, d in zip(looks, done) if not d and "changed" in b for look in b
    )
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        changed, others = summed([changed, others], world_size)
    elif world_size > 1:  # ranks run by a caller with no process group: each says its own
        rank = 0
    if changed and rank == 0:
        also = f", with {others} other image(s) of their batches" if others else ""
        print(
            f"{said('resume', said_as)}: {changed} image(s) changed since their outputs were "
            f"written: computed again{also}",
            file=sys.stderr,
        )
