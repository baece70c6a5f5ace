"""How loftup's Triton kernels are compiled, tuned and launched (imported only where Triton is
installed): the kernels themselves are in :mod:`._triton_kernels` and :mod:`._triton_encode`.

Launch option ``enable_fp_fusion=False`` (:data:`NO_FMA`) keeps every multiply and add
separately rounded, as in PyTorch's eager kernels. The kernel modules call :func:`launch`
through this module's attribute, so that ``tests/triton_aot.py`` can record the launches of a
forward in its place.
"""

from __future__ import annotations

import inspect
import os

import torch
import triton

NO_FMA = {"enable_fp_fusion": False}
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def autotune(configs, key, restore_value=None):
    """``triton.autotune``, keeping its choices in Triton's on-disk cache where that option
    exists (the first call in a process otherwise spends seconds compiling and timing)."""
    extra = {}
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        extra["cache_results"] = True
    return triton.autotune(configs, key=key, restore_value=restore_value, **extra)


def configs(name: str, values, warps):
    """Autotuning candidates (one under the interpreter, where timing means nothing).

    The candidates below compile for sm_70 to sm_120 with at most two words of register spills
    (ptxas's counts for Triton 3.0 to 3.9, ``tests/triton_aot.py``; since the row widths are
    compile-time constants and rows move in 16-byte accesses, 16 LayerNorm rows or 32 bias+ReLU
    rows take at most 166 registers a thread, 226 for bfloat16 before Ampere, which converts
    it in software), and every candidate costs about a second of compiling for each
    shape and precision the first time it is tuned."""
    if INTERPRETED:
        return [triton.Config({name: values[len(values) // 2]}, num_warps=4)]
    return [triton.Config({name: v}, num_warps=w) for v in values for w in warps]


#: "on": launch autotuned kernels with their middle candidate instead of tuning (the self-test
#: in loftup.kernels: one compilation per kernel, not one per candidate).
FIXED = {"on": False}


def launch(kernel, grid, *args, **kwargs):
    # Triton launches on the current CUDA device's current stream, whatever device the
    # tensors are on: for tensors on another GPU (a model on cuda:1, the current device 0) the
    # kernel would run on GPU 0, unordered with cuda:1's stream, reading another GPU's memory
    dev = args[0].device
    if dev.type == "cuda" and dev.index != torch.cuda.current_device():
        with torch.cuda.device(dev):
            return launch(kernel, grid, *args, **kwargs)
    if FIXED["on"] and hasattr(kernel, "configs"):
        config = kernel.configs[len(kernel.configs) // 2]
        kwargs = {**kwargs, **config.kwargs, "num_warps": config.num_warps}
        kernel = kernel.fn
    try:
        return kernel[grid](*args, **kwargs, **NO_FMA)
    except TypeError:  # a Triton (or its interpreter) without the option: its default
        return kernel[grid](*args, **kwargs)
