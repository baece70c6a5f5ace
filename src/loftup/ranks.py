"""Which process of a torchrun job this one is, from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), read without joining the process group: one rule for every
part of loftup, the batches a rank computes as the lines and warnings only rank 0 says."""

from __future__ import annotations

import os
import re

from .errors import UsageError


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it. A
    value that is no such number (a job script's ``RANK=$SLURM_PROCID`` with the variable
    unset, a rank beyond the world) is a UsageError naming it: it was int()'s traceback, or a
    meeting that could never be complete."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    world = env_int("WORLD_SIZE", 1)
    if world == 1:  # one process, whatever RANK says (RANK=1 took batches[1::1]: the first
        return 0, 1, 0  # batch was never computed, yet counted as written)
    return env_int("RANK", 0, world, f"WORLD_SIZE={world}"), world, env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """Whether this process says what is said once a run (rank 0 of a torchrun job, or a
    process alone), as :func:`dist_env` reads the environment: ``RANK`` without
    ``WORLD_SIZE``, or ``WORLD_SIZE=1`` (a job script's ``RANK=$SLURM_PROCID`` for one
    process), is a process alone, whatever its rank. Values that are no such numbers count as
    rank 0 here: they are an error where the processes meet, not a reason to say nothing."""
    try:
        return dist_env()[0] == 0
    except UsageError:
        return True


def env_int(name: str, least: int, limit: int | None = None, said: str = "") -> int:
    """The environment variable ``name`` (0 where unset) as an integer >= ``least`` and below
    ``limit`` (``said`` so) where one is given; else a one-line UsageError."""
    raw = os.environ.get(name, "0").strip()
    value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else None
    if value is None or value < least or (limit is not None and value >= limit):
        below = f" and below {said or limit}" if limit is not None else ""
        raise UsageError(
            f"{name}={raw} is not an integer >= {least}{below}; start the processes with "
            "torchrun (which sets it), or unset RANK and WORLD_SIZE to run one process"
        )
    return value
