"""Distributed helpers: DDP is on when torchrun's environment (``RANK``, ``WORLD_SIZE``) is set.

Single process: ``python -m loftup train ...``. Several: ``torchrun --nproc_per_node N -m loftup
train ...`` (nccl on GPUs, gloo on CPUs). Only rank 0 logs and writes files.
"""

from __future__ import annotations

import gc
import re
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..checks import resolve_device
from ..errors import LoftUpError
from ..extract.meeting import meet_the_others
from ..extract.torchrun import TIMED_OUT, TIMEOUT_ENV, timeout_from_env
from ..ranks import dist_env

#: how long (seconds) a process of a training's torchrun job waits for the others at a
#: collective before the run fails, where TIMEOUT_ENV does not say (30 minutes)
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> int:
    """How many processes torchrun's environment says this run has (1 without torchrun), read
    without joining the process group: what :func:`setup` will give as ``world`` (a value
    that is no such number: a UsageError naming it, :func:`~loftup.ranks.dist_env`)."""
    return dist_env()[1]


def dist_timeout() -> float:
    """How long (seconds) a process waits for the others at a collective: ``LOFTUP_DIST_TIMEOUT``,
    else 30 minutes (:data:`DEFAULT_TIMEOUT`), for gloo and nccl alike; a process that hangs
    (rather than dies) then ends the run after that long, not after torch's default."""
    return timeout_from_env(DEFAULT_TIMEOUT)


def setup(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (waiting ``LOFTUP_DIST_MEET_TIMEOUT``
    seconds at most for the others to come, 10 minutes by default, then :func:`dist_timeout`
    seconds at most at each collective); the single-process info otherwise."""
    if env_world() <= 1:
        return DistInfo(device=resolve_device(device_name))
    rank, world, local_rank = dist_env()
    device = resolve_device(device_name, local_rank)  # this process's own GPU
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        meet_the_others("nccl" if device.type == "cuda" else "gloo", dist_timeout())
    return DistInfo(rank, world, local_rank, device)


#: what gloo says when the process at the other end of a collective has ended (TIMED_OUT: when
#: it waited out the group's time-out)
_PEER_GONE = re.compile(r"Connection (?:closed|reset) by peer")


def collective_failure(
    e: BaseException, info: DistInfo, complete: bool = False
) -> LoftUpError | None:
    """For the error of a collective (a step's all-reduce, a barrier) under torchrun, the line
    that says what happened: another process hangs (the collective waited
    :func:`dist_timeout` seconds) or has ended (its own error says why; ``complete``: it ended
    after the run was complete, so nothing is lost); else None. On gloo
    only, in practice: on nccl the watchdog thread aborts a process whose collective timed out
    (``TORCH_NCCL_ASYNC_ERROR_HANDLING``) before its Python code hears of it."""
    if not info.enabled or not isinstance(e, RuntimeError):
        return None
    if TIMED_OUT.search(str(e)):
        return LoftUpError(
            f"no word from another process of this run for {dist_timeout():g} s "
            f"({TIMEOUT_ENV}): one of them hangs (a stalled disk or GPU?) or lags far behind "
            f"(its output may say where); where they legitimately wait that long on each other, "
            f"set {TIMEOUT_ENV}=SECONDS"
        )
    if not _PEER_GONE.search(str(e)):
        return None
    if complete:
        return LoftUpError(
            "another process of this run ended after the run was complete; nothing is lost"
        )
    return LoftUpError(
        "another process of this run has ended, so this one cannot go on; its error says why"
    )


def teardown(info: DistInfo, error: BaseException | None = None) -> None:
    """Leave the process group; ``error``: the exception the run is ending with, if any.

    The group must be destroyed here, by ``destroy_process_group``, and not later by the last
    DistributedDataParallel wrapper that holds it. The wrapper's Reducer drops its reference
    with the GIL held, and gloo's destructor then waits for its worker threads, one of which may
    still be releasing the run's last collective, which needs the GIL: the process hung at exit
    (1 SIGTERMed torchrun run in about 60, until torchrun's SIGKILL 30 s later). The group's own
    Python object releases the GIL first. So the wrapper goes before the group: the frames an
    error passed through (which hold it) are cleared, and the wrapper, which sits in a
    reference cycle, is collected."""
    if not (info.enabled and dist.is_initialized()):
        return
    errors, seen = [error], set()
    while errors:  # the error, and those it was raised from or while handling
        e = errors.pop()
        if e is not None and id(e) not in seen:
            seen.add(id(e))
            traceback.clear_frames(e.__traceback__)
            errors += [e.__cause__, e.__context__]
    gc.collect()
    dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar logs over processes (each rank's are means over its share of the batch)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t.tolist())}


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce`` (sum) that gradients flow through: every rank's output is the sum of all
    inputs, so each input's gradient is the sum of all outputs' gradients. (What
    ``torch.distributed.nn.functional.all_reduce`` does, which torch now deprecates.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch (every process's share).

    torch's ``SyncBatchNorm`` runs on GPUs only; this one works on any backend through a
    differentiable ``all_reduce``, so gloo on CPU matches one process
    with the whole batch. Same parameters and buffers as ``BatchNorm2d`` (checkpoints load in
    either); outside training, or in a single process, it is plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        # statistics in float32 whatever x is (a bf16 conv output under autocast), as plain
        # BatchNorm2d keeps them: a bf16 sum, or pixel count (336 x 336 -> 112640), is off
        dtype, x = x.dtype, x.float()
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], device=x.device, dtype=x.dtype)
        total = all_reduce(torch.cat([x.sum((0, 2, 3)), count]))  # two passes, as exact as
        n = total[-1]  # one process's BatchNorm
        mean = total[:c] / n
        var = all_reduce((x - mean.view(1, c, 1, 1)).square().sum((0, 2, 3))) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = (
                self.momentum
                if self.momentum is not None
                else 1.0 / float(self.num_batches_tracked)
            )
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape)).to(dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in ``module`` for :class:`SyncBatchNorm2d`, in place (same state)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats, device=child.weight.device, dtype=child.weight.dtype,
            )  # fmt: skip
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync)
        else:
            convert_batchnorm(child)
    return module


__all__ = [
    "DistInfo",
    "barrier",
    "broadcast_object",
    "collective_failure",
    "convert_batchnorm",
    "dist_timeout",
    "mean_over_ranks",
    "setup",
    "teardown",
]
