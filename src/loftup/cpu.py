"""What this CPU computes fast and what it only emulates: oneDNN's fused linear kernels (used
by the fast path's decoder, :func:`loftup.fastpath.decode`), and the precisions without
instructions of their own, which the forward warns about once.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F


def add_linear(x: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x + a @ w.T`` for (N, D) ``x``, in place; on the CPU in float32 one oneDNN call with
    the addition fused (about 20% faster than MKL's in-place ``addmm_`` here)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_ok(x.dtype):
        return torch.ops.mkldnn._linear_pointwise.binary(a, x, w, None, "add")
    return x.addmm_(a, w.t())


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """``F.linear`` (then exact GELU); on the CPU one oneDNN call with the bias (and GELU)
    fused, which saves a pass over the output (not under ``torch.compile``, which fuses
    these itself)."""
    cpu_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
    if cpu_ok and _onednn_ok(x.dtype):
        return torch.ops.mkldnn._linear_pointwise(
            x, w, b, "gelu" if gelu else "none", [], "none" if gelu else ""
        )
    y = F.linear(x, w, b)
    return F.gelu(y) if gelu else y


def _onednn_ok(dtype: torch.dtype) -> bool:
    """oneDNN's fused linear kernels: present, working in ``dtype``, and not under
    ``torch.compile``."""
    return not torch.compiler.is_compiling() and _onednn_works(dtype)


@functools.cache
def _onednn_works(dtype: torch.dtype) -> bool:
    """Whether both fused kernels run and give the right numbers in ``dtype``: bfloat16 needs
    a CPU with bf16 instructions (AVX-512 BF16 or AMX); on others (AVX2 only) oneDNN cannot
    build the kernel and the plain ``F.linear`` runs instead."""
    try:
        x, w = torch.ones(2, 3, dtype=dtype), torch.ones(4, 3, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(x, w, torch.zeros(4, dtype=dtype), "none", [], "")
        z = torch.ops.mkldnn._linear_pointwise.binary(x, y, w, None, "add")
        return bool(torch.equal(z, torch.full((2, 4), 6.0, dtype=dtype)))
    except (AttributeError, RuntimeError):
        return False


#: Precisions whose emulation has been warned about in this process (once each).
_WARNED_EMULATED: set[torch.dtype] = set()


@functools.cache
def cpu_emulates(dtype: torch.dtype) -> bool:
    """Whether this CPU has no instructions for ``dtype``, so that PyTorch emulates it, several
    times slower than float32: bfloat16 needs AVX-512 BF16 or AMX, float16 AVX-512 FP16 or
    AMX-FP16 (an AVX2-only CPU, such as AMD's Zen 2 and 3, has neither). False where unsure."""
    probe = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }
    if dtype not in probe:
        return False
    try:
        return not bool(getattr(torch.ops.mkldnn, probe[dtype])())
    except (AttributeError, RuntimeError):
        return False


def warn_if_emulated(dtype: torch.dtype) -> None:
    """Warn, once per precision and process, when the CPU computes in an emulated ``dtype``."""
    if dtype in _WARNED_EMULATED or not cpu_emulates(dtype):
        return
    import warnings

    _WARNED_EMULATED.add(dtype)
    name = str(dtype).removeprefix("torch.")
    need = "AVX-512 BF16 or AMX" if dtype == torch.bfloat16 else "AVX-512 FP16 or AMX-FP16"
    warnings.warn(
        f"this CPU has no {name} instructions ({need}), so PyTorch emulates {name}: several "
        f"times slower than float32 here; compute in float32 on this machine",
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside loftup and torch, for a warning of the
    function that calls this one: the user's line that asked for the work (``model(lr, x)``,
    ``loftup.upsample``), not the library's own; 2 where every frame is theirs (the CLI)."""
    import sys

    inside = (os.path.dirname(__file__) + os.sep, os.path.dirname(torch.__file__) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return 2 if frame is None else level
