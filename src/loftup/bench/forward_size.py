"""One output size of :func:`loftup.bench.forward.bench_forward`: each method's case built (ours
per precision, from a CUDA graph, in TF32, the paper's stand-in, bilinear and bicubic), its
first calls measured (peak memory, deviation from our float32 output), then all of them timed
alternating; one row each.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from .core import attempt, tf32, time_alternating
from .memory import PeakMemory
from .precision import DTYPES, deviation
from .progress import tick


def untimed_calls(warmup: int) -> int:
    """How many untimed calls each case makes for ``--warmup`` ``warmup``: at least 2, on the
    CPU and CUDA alike (the second's peak memory is read: :func:`_bench_size`)."""
    return max(warmup, 2)


def _calls(dtypes, ref, graphs, tf32_rows, warmup, repeats) -> int:
    """How many calls :func:`_bench_size` makes at one size (none cut by a budget or failed)."""
    cases = len(dtypes) + 2  # ours in each precision, bilinear, bicubic
    cases += (len([n for n in dtypes if n != "float32"]) if graphs else 0) + bool(tf32_rows)
    cases += (len(dtypes) + bool(tf32_rows)) if ref else 0
    return cases * (untimed_calls(warmup) + repeats)


def _bench_size(
    size, lr, models, ref, peaks, fpp, device, warmup, repeats, graphs=False, budget_s=None,
    tf32_rows=False, failed=None,
) -> list[dict]:  # fmt: skip
    """All methods at one output size, alternating; one row each. A case that raises on its
    first calls (the paper's code out of memory at a large size, say) gets no row: it is
    appended to ``failed`` with its error, and the others are timed without it."""
    batch, dim = lr.shape[:2]
    dtypes = list(models)
    rows = []
    image = torch.randn(batch, 3, size, size, device=device)
    cases = {f"loftup/{n}": (lambda m=m: m(lr, image)) for n, m in models.items()}
    # a graph's memory is taken when it is captured (its private pool keeps the forward's
    # working memory for as long as the graph lives) and a replay allocates nothing: its row's
    # peak is the capture's
    held = {}
    if graphs:
        from ..graphs import graph_upsampler

        for n, m in models.items():
            if n == "float32":
                continue
            try:
                with PeakMemory(device) as capture:
                    g = graph_upsampler(m, lr, image)
            except Exception as e:  # noqa: BLE001 - the other rows still count
                print(f"CUDA graph capture failed at {size} {n}: {e!r}"[:300], file=sys.stderr)
                continue
            cases[f"loftup_graph/{n}"] = lambda g=g: g(lr, image)
            held[f"loftup_graph/{n}"] = capture.peak_bytes
    if tf32_rows:
        cases["loftup/tf32"] = lambda: _tf32(models["float32"], lr, image)
    if ref is not None:  # in float32, and under autocast in each half precision
        cases["reference/float32"] = lambda: ref(lr, image)
        for n in dtypes:
            if n != "float32":
                cases[f"reference/{n}"] = lambda n=n: _autocast(ref, lr, image, DTYPES[n])
        if tf32_rows:
            cases["reference/tf32"] = lambda: _tf32(ref, lr, image)
    cases["bilinear/float32"] = lambda: F.interpolate(lr, size=(size, size), mode="bilinear")
    cases["bicubic/float32"] = lambda: F.interpolate(lr, size=(size, size), mode="bicubic")
    # deviations are from our float32 output: without float32 among the precisions there is
    # none (another precision's own output would read as a deviation of 0, and the reference's
    # as its distance from that precision, both labelled "vs float32")
    exact_name = "loftup/float32" if "float32" in dtypes else None
    exact, devs, mems = None, {}, {}
    # The memory is read on a second call: the first one also pays one-time costs. On CUDA,
    # cuDNN's algorithm search in benchmark mode, which tries algorithms with large trial
    # workspaces (the H200 runs of 2026-11-26 read 87-89 GB for the first 224 float32 call,
    # ours and the reference's alike, and 0.7-3.4 GB for every other float32 row); on the CPU,
    # oneDNN's kernels and caches, the thread pool's stacks (the first case read 37 MB where
    # its second call reads 9 at --sizes 64 --dim 16). Both calls count as warm-up calls: the
    # timed ones follow after the others (``warmup`` 2 or more: no call more).

    def first_calls(fn):
        fn()
        with PeakMemory(device) as mem:
            out = fn()
        return out, mem.peak_bytes

    failed = [] if failed is None else failed
    for name in sorted(cases, key=lambda n: n != exact_name):  # warm-up calls, exact one first
        method, prec = name.split("/")
        got = attempt(
            lambda fn=cases[name]: first_calls(fn),
            failed,
            device,
            method=method,
            dtype=prec,
            size=size,
        )
        tick(name)
        if got is None:  # listed in failed; the other cases at this size still count
            del cases[name]
            continue
        out, peak = got
        del got
        mems[name] = max(peak, held.get(name, 0))
        if name == exact_name:
            exact = out
        # from the exact case's output (none where it failed); bilinear and bicubic keep none
        keeps = method in ("loftup", "loftup_graph", "reference")
        devs[name] = deviation(out, exact) if exact is not None and keeps else {}
        del out
    del exact
    timing = time_alternating(
        cases, device=device, warmup=untimed_calls(warmup) - 2, repeats=repeats, budget_s=budget_s
    )
    for name, t in timing.items():
        method, prec = name.split("/")
        row = {
            "method": method,
            "dtype": prec,
            "size": size,
            "batch": batch,
            "output_bytes": batch * dim * size * size * DTYPES.get(prec, torch.float32).itemsize,
            "peak_memory_bytes": mems[name],
            **t,
        }
        if method in ("loftup", "loftup_graph", "reference"):
            gflop = fpp * batch * size * size / 1e9
            row["gflop"] = gflop
            row["gflops_per_s"] = gflop / t["best_s"]
            if prec in peaks:
                row["fraction_of_peak"] = row["gflops_per_s"] / peaks[prec]
            row.update(devs[name])
        rows.append(row)
    return rows


def _tf32(fn, lr, image):
    with tf32(True):
        return fn(lr, image)


def _autocast(fn, lr, image, dtype):
    with torch.autocast(lr.device.type, dtype=dtype):
        return fn(lr, image)
