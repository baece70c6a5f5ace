"""What tells that a module's weights changed since they were last read (:func:`weights_key`):
each parameter's and buffer's address, in-place version counter (which the steps of fused
optimizers leave as it was: counted here), dtype and device. Read by the folded weights' cache
(:meth:`loftup.model.LoftUp.fused`, on every forward) and by a compiled upsampler
(:func:`loftup.compiled.compile_upsampler`, on every call): 1 to 2 us a tensor, 0.07 to
0.12 ms for the 56 of ``LoftUp(dim=384)`` on a CPU.

It sees ``load_state_dict``, ``model.to(dtype or device)``, an optimizer's step and every
in-place change (``p.add_(1)`` under ``torch.no_grad()``, ``p.copy_(...)``, ``nn.init``). It
cannot see writes through ``.data`` (``p.data.mul_(2)``: ``.data`` is a tensor with a version
counter of its own, at the same address), nor in-place changes to tensors made under
``torch.inference_mode`` (they have no version counter): reading the values themselves would,
at the cost of a pass over every weight each time (4.3 million numbers for dim 384)."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.graph import increment_version
from torch.optim.optimizer import register_optimizer_step_post_hook


def _count_fused_step(optimizer, args, kwargs) -> None:
    """Optimizer step post-hook: count a step of an optimizer with ``fused=True`` in its
    parameters' version counters, which its kernels write without counting (what
    :func:`weights_key` reads). Its own parameters alone: a count of such steps in the whole
    process changed every model's key on each step of any one (a probe trained with a fused
    AdamW on an upsampler's features had the upsampler fold its weights again on every call)."""
    stepped = [p for group in optimizer.param_groups if group.get("fused") for p in group["params"]]
    if not stepped:
        return
    try:  # one call for all (0.3 ms for 1000 tensors on a CPU, a quarter of one call each)
        increment_version(stepped)
    except (TypeError, RuntimeError):  # torch 2.4 takes one tensor, not an inference tensor
        for p in stepped:
            if not p.is_inference():  # which has no counter
                increment_version(p)


register_optimizer_step_post_hook(_count_fused_step)


def _tensors(module: nn.Module, out: list) -> list:
    """Every parameter and buffer of ``module`` and its submodules, appended to ``out``: what
    ``parameters()`` and ``buffers()`` give, at a sixth of their cost (this runs on every
    forward, where a few hundred microseconds of Python show at small outputs on a GPU)."""
    out.extend(t for t in module._parameters.values() if t is not None)
    out.extend(t for t in module._buffers.values() if t is not None)
    for child in module._modules.values():
        if child is not None:
            _tensors(child, out)
    return out


def _version(t: torch.Tensor) -> int:
    """In-place modification counter (inference-mode tensors have none)."""
    return -1 if t.is_inference() else t._version


def weights_key(module: nn.Module) -> tuple:
    """What changes when any parameter or buffer of ``module`` does (see the module): equal
    keys, the same weights."""
    tensors = _tensors(module, [])
    return tuple((t.data_ptr(), _version(t), t.dtype, t.device) for t in tensors)
