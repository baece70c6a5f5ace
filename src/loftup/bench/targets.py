"""The GPU issue's targets, read off a ``gpu`` suite report: met, not met, or not measured.

One row per target: what it asks, the figure measured, whether that meets it (``None``: the
report has no figure for it, a section failed or was not run, or the report was not taken on a
GPU or is of the smoke suite). The rules are the issue's:

- float32 with TF32 off within 1e-4 of the CPU's float32 output (section ``parity``);
- one 224 x 224 output in half precision in at most 1.5 ms (the best of eager and CUDA graph,
  fp16 or bf16);
- at every size from 224 to 2048, at least 4x the reference in the same precision (ours: the
  best of eager and graph; one row per precision: the smallest speed-up over the sizes);
- 4096 x 4096 x 384 in under 2 s with peak memory beyond the output under 4 GB (the best row of
  ``forward_4096`` and ``big_output`` that meets the memory bound);
- an output larger than the memory the GPU may use, streamed to host memory (``capped_stream``);
- images per second at 224 and 448 for batches 1, 8, 32 and frames per second of a video
  (measured or not; the issue sets no bound);
- backbone + LoftUp within 1.5x of backbone + bilinear at 224 and 2x at 448 (per backbone and
  precision, the best of the ways to run LoftUp: eager, graph, image half started first);
- what each kernel choice buys (section ``ablation``) at 224 and 448 (measured or not; the
  issue sets no bound), with the compiled variant's largest deviation from the default;
- torchrun's sharding over GPUs: never measured by ``gpu.sh``, said so (on one GPU it cannot
  be: its nccl path is untested there);
- the CUDA and kernel tests pass on the GPU (``report["gpu_sh_tests"]``, which ``gpu.sh`` reads
  off their log: a count line without failures or errors and with tests passed; none, a run
  killed (by its timeout?) or, with no test's progress either, pytest never started; every
  test skipped is not measured);
- ``benchmarks/gpu.sh`` runs all of it in one call in under 6 minutes (its own wall seconds,
  ``report["gpu_sh_seconds"]["total"]``, no group cut by its time budget, and every section
  of the suite present, whole and without an error, none in any of its cases or rows; a
  report not written by ``gpu.sh`` does not measure this; :mod:`.gpu_sh`).
"""

from __future__ import annotations

from itertools import product

from ..errors import first_line
from .backbones import GPU_ARCHS, GPU_DTYPES
from .gpu_sh import _ok, _row, script_target, section_rows, tests_target
from .table import fmt_dev

HALF = ("float16", "bfloat16")
SIZES = (224, 448, 896, 1344, 2048)
E2E_BOUND = {224: 1.5, 448: 2.0}


def targets(report: dict) -> list[dict]:
    """The issue's targets as rows ``{"target", "measured", "met"}`` (see the module)."""
    sec = report.get("sections", {})
    rows = [_parity(sec), _small_half(sec), *_speedups(sec), _big(sec), _streamed(sec)]
    rows += [*_throughput(sec), *_end_to_end(sec), _ablation(sec), _torchrun(report)]
    rows += [tests_target(report), script_target(report)]
    # judged on a GPU ("cuda" or "cuda:N"), and not for a smoke run (toy sizes), wherever it ran
    on_gpu = str(report.get("machine", {}).get("device", "")).startswith("cuda")
    if not on_gpu or report.get("suite") == "smoke":
        rows = [{**r, "met": None} for r in rows]
    return rows


def format_targets(rows: list[dict]) -> str:
    mark = {True: "met", False: "NOT MET", None: "not measured"}
    width = max(len(r["target"]) for r in rows)
    return "\n".join(
        f"  {r['target']:<{width}}  {mark[r['met']]:<12}  {r['measured']}" for r in rows
    )


def _forward_rows(sec: dict) -> list[dict]:
    rows = []
    for key in ("forward", "forward_4096"):
        if _ok(sec.get(key)):
            rows += sec[key].get("results", [])
    return rows


def _parity(sec: dict) -> dict:
    target = "float32 (TF32 off) within 1e-4 of the CPU"
    p = sec.get("parity")
    if not _ok(p) or "float32" not in p:
        return _row(target, None, None)
    dev = p["float32"]["max_abs_dev"]  # None: not finite (a NaN or an infinity, stored strictly)
    half = ", ".join(f"{k} {fmt_dev(p[k]['max_abs_dev'])}" for k in HALF if k in p)
    met = dev is not None and dev <= 1e-4
    return _row(target, fmt_dev(dev) + (f" ({half})" if half else ""), met)


def _ours(rows: list[dict], dtype: str, size: int) -> dict | None:
    mine = [
        r
        for r in rows
        if r["method"] in ("loftup", "loftup_graph") and r["dtype"] == dtype and r["size"] == size
    ]
    return min(mine, key=lambda r: r["best_s"]) if mine else None


def _small_half(sec: dict) -> dict:
    target = "224 in half precision <= 1.5 ms"
    rows = _forward_rows(sec)
    best = [r for r in (_ours(rows, d, 224) for d in HALF) if r]
    if not best:
        return _row(target, None, None)
    r = min(best, key=lambda r: r["best_s"])
    ms = r["best_s"] * 1e3
    return _row(target, f"{ms:.2f} ms ({r['dtype']}, {r['method']})", ms <= 1.5)


def _speedups(sec: dict) -> list[dict]:
    rows = _forward_rows(sec)
    out = []
    for dtype in ("float16", "bfloat16", "float32", "tf32"):
        target = f">= 4x the reference, 224-2048, {dtype}"
        ratios = {}
        for size in SIZES:
            ours = _ours(rows, dtype, size)
            ref = [
                r
                for r in rows
                if (r["method"], r["dtype"], r["size"]) == ("reference", dtype, size)
            ]
            if ours and ref:
                ratios[size] = ref[0]["best_s"] / ours["best_s"]
        if not ratios:
            if dtype != "tf32":  # tf32 rows are optional
                out.append(_row(target, None, None))
            continue
        worst = min(ratios, key=ratios.get)
        missing = [s for s in SIZES if s not in ratios]
        measured = ", ".join(f"{s}: {r:.1f}x" for s, r in ratios.items())
        if missing:
            measured += " (no figure at " + ", ".join(map(str, missing)) + ")"
        met = False if ratios[worst] < 4 else (None if missing else True)
        out.append(_row(target, measured, met))
    return out


def _big(sec: dict) -> dict:
    target = "4096 x 4096 x 384 < 2 s, < 4 GB beyond the output"
    cands = []
    for r in _forward_rows(sec):
        if r["size"] == 4096 and r["method"] == "loftup":
            beyond = r["peak_memory_bytes"] - r["output_bytes"]
            cands.append((r["best_s"], beyond, r["dtype"], "whole"))
    for r in section_rows(sec.get("big_output")):
        if r.get("size") == 4096:
            tile = f"tiles of {r['tile_size']}"
            cands.append((r["best_s"], r["peak_beyond_output_bytes"], r["dtype"], tile))
    if not cands:
        return _row(target, None, None)
    fits = [c for c in cands if c[1] < 4e9]
    s, beyond, dtype, how = min(fits or cands)
    return _row(
        target, f"{s:.2f} s, {beyond / 1e9:.1f} GB ({dtype}, {how})", s < 2 and beyond < 4e9
    )


def _streamed(sec: dict) -> dict:
    target = "output larger than the GPU memory allowed, streamed"
    c = sec.get("capped_stream")
    if not _ok(c):
        return _row(target, None, None)
    cap, out = c.get("device_cap_bytes"), c["output_bytes"]
    if cap is None:  # not on a GPU
        return _row(target, f"{c['seconds']:.1f} s, no device cap", None)
    measured = f"{out / 1e9:.1f} GB output, {c['seconds']:.1f} s under a {cap / 1e9:.1f} GB cap"
    return _row(target, measured, cap < out and c["peak_device_bytes"] <= cap)


def _throughput(sec: dict) -> list[dict]:
    b = sec.get("batches")
    rows = []
    if _ok(b) and b:
        m = ", ".join(f"{r['size']}/b{r['batch']}: {r['images_per_s']:.0f}" for r in b)
        done = {(r["size"], r["batch"]) for r in b} >= {
            (s, n) for s in (224, 448) for n in (1, 8, 32)
        }
        rows.append(_row("images/s at 224, 448 for batches 1, 8, 32", m, True if done else None))
    else:
        rows.append(_row("images/s at 224, 448 for batches 1, 8, 32", None, None))
    v = sec.get("video")
    if _ok(v):
        rows.append(_row("frames/s of a video", f"{v['frames_per_s']:.0f} at {v['size']}", True))
    else:
        rows.append(_row("frames/s of a video", None, None))
    return rows


def _end_to_end(sec: dict) -> list[dict]:
    out = []
    for r in section_rows(sec.get("backbones")):
        bound = E2E_BOUND.get(r["size"])
        ratios = {
            k[: -len("_over_bilinear")]: v for k, v in r.items() if k.endswith("_over_bilinear")
        }
        if bound is None or not ratios:
            continue
        how = min(ratios, key=ratios.get)
        target = _e2e_target(r["backbone"], r["dtype"], r["size"])
        out.append(_row(target, f"{ratios[how]:.2f}x ({how})", ratios[how] <= bound))
    b = sec.get("backbones")
    for f in b.get("failed", []) if isinstance(b, dict) else []:  # no row: not measured
        if f["size"] in E2E_BOUND:
            target = _e2e_target(f["method"], f["dtype"], f["size"])
            out.append(_row(target, f"failed: {f['error']}", None))
    if isinstance(b, dict) and b.get("incomplete"):  # stopped: the cases it never reached
        done = {(r["backbone"], r["dtype"], r["size"]) for r in section_rows(b)}
        done |= {(f["method"], f["dtype"], f["size"]) for f in b.get("failed", [])}
        for case in product(GPU_ARCHS, GPU_DTYPES, E2E_BOUND):
            if case not in done:
                out.append(_row(_e2e_target(*case), f"not measured: {b['incomplete']}", None))
    return out or [_row("backbone + LoftUp within 1.5x / 2x of + bilinear (224 / 448)", None, None)]


def _e2e_target(backbone: str, dtype: str, size: int) -> str:
    return f"{backbone} {dtype} {size}: + LoftUp <= {E2E_BOUND[size]}x + bilinear"


def _ablation(sec: dict) -> dict:
    target = "ablation: what each kernel choice buys at 224 and 448"
    a = sec.get("ablation")
    if not _ok(a):
        return _row(target, a and f"failed: {first_line(str(a['error']), None)}", None)
    rows = section_rows(a)
    timed = {r["size"] for r in rows if "best_s" in r}
    measured = ", ".join(
        f"{size}: {len([r for r in rows if r['size'] == size and 'best_s' in r])} variants"
        for size in sorted(timed)
    )
    # stored before the deviation was recorded: none
    devs = [r["max_abs_dev"] for r in rows if r.get("variant") == "compiled" and "max_abs_dev" in r]
    if devs:
        measured += "; compiled vs default: " + ", ".join(map(fmt_dev, devs))
    errors = [f"{r['variant']} at {r['size']}" for r in rows if "error" in r]
    if errors:
        measured += "; failed: " + ", ".join(errors)
    if isinstance(a, dict) and a.get("incomplete"):
        measured += f"; {a['incomplete']}"
    # a variant that raised (a launch failure in the compiled one's recording, say) is a
    # choice whose worth the run did not take
    whole = timed >= {224, 448} and not errors and not (isinstance(a, dict) and a.get("incomplete"))
    return _row(target, measured, True if whole else None)


def _torchrun(report: dict) -> dict:
    target = "torchrun: features sharded over the GPUs (nccl)"
    n = report.get("machine", {}).get("gpu_count")
    if n is not None and n >= 2:
        return _row(target, f"not measured by gpu.sh ({n} GPUs)", None)
    return _row(target, "not measurable on one GPU; nccl path untested", None)
