"""What a GPU run measures beyond the forward table: parity with the CPU and what each kernel
choice buys; outputs larger than the GPU's memory (:mod:`.large`), backbones end to end
(:mod:`.backbones`) and ``loftup upsample``'s loop (:mod:`.extraction`) have modules of their
own, their names importable from here too.

Written for CUDA; every function also runs on the CPU (tiny sizes) so that ``benchmarks/gpu.sh``
is known to work before a GPU is lent.
"""

from __future__ import annotations

import copy
from functools import partial

import torch

from .backbones import (
    BACKBONES,
    GPU_ARCHS,
    _end_to_end_row,
    _overlapped,
    _preflight,
    backbone_end_to_end,
    dinov2_config,
)
from .core import tf32, time_alternating
from .extraction import extraction
from .large import _big_output_row, _upsample_into, big_output, capped_stream
from .precision import DTYPES, deviation
from .progress import expect, tick
from .scale import _inputs

__all__ = [
    "BACKBONES",
    "DTYPES",
    "GPU_ARCHS",
    "_big_output_row",
    "_end_to_end_row",
    "_overlapped",
    "_preflight",
    "_upsample_into",
    "backbone_end_to_end",
    "big_output",
    "capped_stream",
    "dinov2_config",
    "extraction",
    "kernel_ablation",
    "parity_with_cpu",
]


def parity_with_cpu(
    model, size=224, *, grid=16, device="cuda", dtypes=("float32", "bfloat16", "float16")
) -> dict:
    """Deviation of the device's output in each precision (float32 with TF32 off) from the
    CPU's float32 output."""
    lr, image = _inputs(model, size, grid, "cpu")
    cpu = copy.deepcopy(model).to("cpu", torch.float32)
    with torch.inference_mode():
        ref = cpu(lr, image)
    out = {"size": size}
    expect(len(dtypes))
    for name in dtypes:
        m = copy.deepcopy(model).to(device, DTYPES[name])
        with torch.inference_mode(), tf32(False):
            got = m(lr.to(device), image.to(device)).float().cpu()
        d = (got - ref).abs()
        out[name] = {"max_abs_dev": d.max().item(), "mean_abs_dev": d.mean().item()}
        tick(name)
    return out


def kernel_ablation(
    model,
    sizes=(224, 448),
    *,
    dtype=torch.float16,
    grid=16,
    device="cuda",
    repeats=10,
    compile_sizes=(224,),
    on_rows=None,
) -> list:
    """What each step buys, at each size in one precision, alternating: the default (fused
    attention, channels-last convolutions, rows mean-padded to multiples of 8 on a GPU, the
    Triton kernels of :mod:`loftup.kernels`), plain-math attention, NCHW convolutions, unpadded
    rows, PyTorch's kernels instead of the Triton ones, a CUDA graph of the eager forward (GPU),
    and, after every size's eager rows, torch.compile (CUDA graphs on a GPU) at
    ``compile_sizes`` against the default. Each row keeps ``max_abs_dev``, its output's largest
    deviation from the default's. A variant that raises (a compilation, say) gets a row with
    its ``error`` instead of times; the others are timed. ``on_rows(rows)``: called with the
    rows so far after each size and after each compiled one (a run stopped by a time limit
    keeps them; a compilation takes 20 s on a fresh machine)."""
    from .. import kernels
    from ..compiled import compile_upsampler
    from ..graphs import graph_upsampler

    m = copy.deepcopy(model).to(device, dtype)
    m.conv, m.align = "auto", None
    # One model per setting: a model keeps one folded copy of its weights, so switching one
    # model's conv or align between calls would refold them in every timed call of a variant.
    variants = {("auto", None): m}

    def variant(conv, align):
        if (conv, align) not in variants:
            v = variants[(conv, align)] = copy.deepcopy(m)
            v.conv, v.align = conv, align
        return variants[(conv, align)]

    rows = []
    done = on_rows or (lambda rows: None)
    for size in sizes:
        lr, image = _inputs(m, size, grid, device)
        run = partial(_ablation_run, variant, lr, image)

        def plain(run=run):
            with kernels.enabled(False):
                return run()

        cases = {
            "default": run,
            "math attention": partial(run, math=True),
            "NCHW convolutions": partial(run, conv="direct_nchw"),
            "unpadded rows": partial(run, align=1),
            "no Triton kernels": plain,
        }
        if torch.device(device).type == "cpu":
            cases["direct convolutions"] = partial(run, conv="direct")
        else:
            try:
                graphed = graph_upsampler(m, lr, image)
                cases["CUDA graph"] = lambda g=graphed, lr=lr, image=image: g(lr, image)
            except Exception as e:  # noqa: BLE001 - measured where it works, reported where not
                rows.append({"size": size, "variant": "CUDA graph", "error": repr(e)[:300]})
        rows += _timed_variants(cases, size, dtype, device, repeats)
        done(rows)
    for size in compile_sizes:
        lr, image = _inputs(m, size, grid, device)
        try:  # compiles on its first call; on a model of its own, its folded weights
            # and their memo not shared with the eager variants and the graph (the H200
            # runs' "unspecified launch failure" came once in this variant's recording,
            # once in a later eager call of the ablation: its cause is not known)
            fn = compile_upsampler(copy.deepcopy(m), device=device)
            fn(lr, image)
        except Exception as e:  # noqa: BLE001 - measured where it works, reported where not
            rows.append({"size": size, "variant": "compiled", "error": repr(e)[:300]})
        else:
            cases = {"default": partial(_ablation_run, variant, lr, image)}
            cases["compiled"] = lambda fn=fn, lr=lr, image=image: fn(lr, image)
            timed = _timed_variants(cases, size, dtype, device, repeats)
            rows += [r for r in timed if r["variant"] == "compiled"]
        done(rows)
    return rows


def _ablation_run(variant, lr, image, conv="auto", math=False, align=None):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    v = variant(conv, align)
    if math:
        with sdpa_kernel([SDPBackend.MATH]):
            return v(lr, image)
    return v(lr, image)


def _timed_variants(cases: dict, size, dtype, device, repeats) -> list:
    """The ablation's rows at one size: each case's deviation from ``default`` (one call each,
    read before the next: a graph's output is overwritten by its next replay) and its times,
    alternating. A case that raises gets a row with its error."""
    rows = []
    # a variant that fails here (a path not run before on this machine) costs its own row
    for name, error in _preflight(cases, keep=("default",)).items():
        rows.append({"size": size, "variant": name, "error": error[:300]})
    devs = {}
    with torch.inference_mode():
        base = cases["default"]().clone()
        for name, fn in cases.items():
            devs[name] = deviation(fn(), base)["max_abs_dev_vs_float32"]
        del base
        t = time_alternating(cases, device=device, warmup=2, repeats=repeats)
    for name, timing in t.items():
        rows.append(
            {
                "size": size,
                "dtype": str(dtype).replace("torch.", ""),
                "variant": name,
                "best_s": timing["best_s"],
                "median_s": timing["median_s"],
                "relative_to_default": timing["best_s"] / t["default"]["best_s"],
                "max_abs_dev": devs[name],
            }
        )
    return rows
