"""``loftup upsample`` under torchrun: batches to ranks, the process group (the ranks meet in
:mod:`.meeting`), and the collectives at the end (a sum of the counts, barriers) that say in
one line when another rank has ended."""

from __future__ import annotations

import contextlib
import math
import os
import re

import torch

from ..errors import LoftUpError, UsageError, first_line, one_line
from .inputs import Job

#: The environment variable that sets how long (seconds) a process of a torchrun job waits for
#: the others at a collective (``loftup train``'s and ``loftup upsample``'s alike).
TIMEOUT_ENV = "LOFTUP_DIST_TIMEOUT"

#: ``loftup upsample``'s wait without it: a day (:func:`init_distributed`).
UPSAMPLE_TIMEOUT = 86400.0

#: The environment variable that sets how long (seconds) a process waits for all the others to
#: come when the group is joined (:func:`.meeting.meet_the_others`): shorter than the collectives' wait,
#: so that a process whose peers were never started does not wait a day to say so.
MEET_ENV = "LOFTUP_DIST_MEET_TIMEOUT"

#: its default: 10 minutes (what torchrun waits for the nodes of a job to join)
MEET_TIMEOUT = 600.0

#: what gloo (and nccl's watchdog) say when a collective waited out the group's time-out
TIMED_OUT = re.compile(r"Timed out waiting \d+ ?ms|Application timeout caused pair closure|"
                       r"collective operation timeout")  # fmt: skip


def shard(jobs: list[Job], batch_size: int, rank: int, world_size: int) -> list[list[Job]]:
    """The batches of ``jobs`` (cut as one process cuts them) that belong to ``rank``."""
    batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    return batches[rank::world_size]


#: torch modules whose functions take the default process group as a default argument, read
#: when the module is imported: one imported after the group is joined keeps the group, and
#: gloo's threads, alive after ``destroy_process_group`` until the interpreter is torn down,
#: where a gloo thread that needs the GIL (to let go of a collective's tensor) is stopped in a
#: destructor and aborts the process ("terminate called without an active exception": rank 0
#: of one run of a full test suite). transformers' import brings this one in, through
#: torch._dynamo, once the backbone loads: after the group is joined.
_HOLDING_THE_GROUP = ("torch.distributed.nn.functional",)


def join_process_group(backend: str, **kwargs) -> None:
    """``torch.distributed.init_process_group(backend, **kwargs)``, with the modules that would
    keep the group past ``destroy_process_group`` (:data:`_HOLDING_THE_GROUP`) imported first,
    while there is no group to keep: leaving the group then ends gloo's threads."""
    import importlib

    import torch.distributed as dist

    for name in _HOLDING_THE_GROUP:
        importlib.import_module(name)
    dist.init_process_group(backend, **kwargs)


def timeout_from_env(default: float, name: str = TIMEOUT_ENV) -> float:
    """How long (seconds) a process of a torchrun job waits for the others: the variable
    ``name`` (:data:`TIMEOUT_ENV`, at a collective; :data:`MEET_ENV`, to meet) where it is set,
    else ``default``; a value that is not a number of seconds > 0 is a UsageError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        what = " to come" if name == MEET_ENV else ""
        raise UsageError(
            f"{name}={raw} is not a number of seconds > 0; set it to how long a process of a "
            f"torchrun job may wait for the others{what} (default {default:g}), or unset it"
        )
    return value


def init_distributed(device: torch.device) -> None:
    """Join torchrun's process group: nccl on GPUs (one per rank), gloo on the CPU.

    The ranks meet only at the end (the counts, then a barrier), so one whose share of images
    finished early may wait long for the others (large photos at full size): the group's
    time-out is a day (:data:`UPSAMPLE_TIMEOUT`), not torch's 30 (gloo) or 10 (nccl) minutes,
    after which the waiting rank failed and torchrun stopped the ones still working;
    :data:`TIMEOUT_ENV` sets another (:func:`timeout_from_env`)."""

    import torch.distributed as dist

    from .meeting import meet_the_others

    if not dist.is_initialized():
        seconds = timeout_from_env(UPSAMPLE_TIMEOUT)  # a bad value said before the group is met
        meet_the_others("nccl" if device.type == "cuda" else "gloo", seconds)


@contextlib.contextmanager
def process_group(device: torch.device, world_size: int):
    """torchrun's process group joined for the block (:func:`init_distributed`; nothing for
    one process), and left however the block ends: after an error as after success. A group
    the caller had joined already (a script of its own under torchrun) is used, and left to
    the caller: it was destroyed under the script, whose next collective then failed."""
    if world_size == 1:
        yield
        return
    import torch.distributed as dist

    ours = not dist.is_initialized()
    init_distributed(device)
    try:
        yield
    finally:
        if ours and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _with_the_others():
    """A collective of the ranks (a barrier, a sum) that fails because another process of the
    run has ended (gloo: "Connection closed by peer"), told in one line: the other's own error,
    which says why, is above; a traceback of this one would only hide it. One that waited out
    the group's time-out (:data:`TIMEOUT_ENV`) says that instead."""
    try:
        yield
    except RuntimeError as e:  # torch's DistBackendError is one
        if TIMED_OUT.search(str(e)):  # no other has ended: one hangs, or lags behind
            raise LoftUpError(
                f"no word from another process of this run for "
                f"{timeout_from_env(UPSAMPLE_TIMEOUT):g} s ({TIMEOUT_ENV}): one of them hangs or "
                f"is still working on its share; where that is expected, set {TIMEOUT_ENV}=SECONDS"
            ) from None
        raise LoftUpError(
            f"another process of this run has ended ({_why_ended(e)}), so this one cannot "
            "finish; its error says why"
        ) from None


def _why_ended(e: BaseException) -> str:
    """The first sentence of a collective's error (``e``), without gloo's ``[file:line]``
    prefix and cut to 200 characters; the name of its type where nothing is left (a prefix
    alone, an empty message: it raised an IndexError instead)."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip()).split(". ")[0]
    return first_line(text) or type(e).__name__


def barrier(world_size: int) -> None:
    """Wait until every rank is here (nothing for one process)."""
    if world_size > 1:
        import torch.distributed as dist

        with _with_the_others():
            dist.barrier()


def summed(counts: list[int], world_size: int) -> list[int]:
    """Counts summed over all ranks (failures: every rank gets the same exit status)."""
    if world_size == 1:
        return list(counts)
    import torch.distributed as dist

    t = torch.tensor(counts, dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    with _with_the_others():
        dist.all_reduce(t)
    return t.tolist()


def from_rank_0(text: str | None, world_size: int) -> str | None:
    """Rank 0's ``text`` on every rank (a verdict only rank 0 can give: whether a run its
    record lists is still writing, which each rank judged for itself, and rank 1 took rank
    0's own process for another run). None stays None; nothing for one process."""
    if world_size == 1:
        return text
    import torch.distributed as dist

    # (a path of bytes that are no UTF-8 is os.fsdecode's surrogates: kept, not a failed encode)
    data = torch.tensor(list((text or "").encode(errors="surrogatepass")), dtype=torch.uint8)
    size = torch.tensor([-1 if text is None else len(data)], dtype=torch.long)
    where = "cuda" if dist.get_backend() == "nccl" else "cpu"
    with _with_the_others():
        size = size.to(where)
        dist.broadcast(size, 0)
        n = int(size.item())
        if n <= 0:
            return None if n < 0 else ""
        data = (
            data.to(where)
            if dist.get_rank() == 0
            else torch.empty(n, dtype=torch.uint8, device=where)
        )
        dist.broadcast(data, 0)
    return bytes(data.cpu().tolist()).decode(errors="surrogatepass")


def judged_by_rank_0(look, rank: int, world_size: int):
    """``look()`` on rank 0 alone, what it returns there (None on the other ranks), and what
    it raises (a refusal, an OSError, a bug) raised on every rank (:func:`_raise_from_rank_0`):
    each rank waits for rank 0's look, as at a barrier. One process runs ``look()`` as it
    is: what it raises (a bug whose message cannot even be read) goes up untouched."""
    if world_size == 1:
        return look()
    error = result = None
    if rank == 0:
        try:
            result = look()
        except Exception as e:  # (no refusal too: the others wait for its word)
            error = e
    try:
        _raise_from_rank_0(error, world_size)
    finally:
        error = None  # (the error's traceback holds this frame: no cycle keeps the caller's)
    return result


def _raise_from_rank_0(error: Exception | None, world_size: int) -> None:
    """Raise on every rank (``world_size`` > 1) what rank 0 met (``error``; None on the other ranks, and where it
    met nothing): rank 0 its own error, each other rank a :class:`LoftUpError` of its words
    (:func:`from_rank_0`), or where it is no refusal (an OSError, a bug) one saying that rank
    0 failed, and how (:func:`_rank_0_failed`): the ranks end together rather than split, and
    those waiting for rank 0 learn why (they learnt only that their peer had gone, from gloo;
    nccl's waited until torchrun ended them). Rank 0 raises its own where the others could
    not be told (one has ended: its refusal was "another process of this run has ended")."""
    said = None if error is None else _said_of(error)
    try:
        text = from_rank_0(said, world_size)
    except LoftUpError:
        if error is None:
            raise
        text = None
    if error is not None:
        try:
            raise error
        finally:
            error = None  # (no cycle through this frame)
    if text is not None:
        raise LoftUpError(text)


def _said_of(error: Exception) -> str:
    """What the other ranks say of rank 0's ``error``: a refusal's own words, else
    :func:`_rank_0_failed`'s; its type alone where its message cannot be read (a ``__str__``
    that fails: rank 0 raised that failure instead, before the broadcast the others wait in)."""
    try:
        return str(error) if isinstance(error, LoftUpError) else _rank_0_failed(error)
    except Exception:
        return _rank_0_failed(error, type(error).__name__)


def _rank_0_failed(error: Exception, why: str | None = None) -> str:
    """What the other ranks say of rank 0's ``error`` that is no refusal: ``why``, else its
    type and its message on one line (:func:`~loftup.errors.one_line`)."""
    why = why or one_line(error, typed=True)
    return (
        f"process RANK=0 of this run failed ({why}), so this one cannot go on; its error says why"
    )
