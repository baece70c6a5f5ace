"""One forward at several output sizes: LoftUp per precision next to bilinear/bicubic (and,
when given, a stand-in of the paper's implementation), timed alternating in one run.

Each row: time (median/best), peak memory of the first call, GFLOP/s achieved against the
matrix-product peak measured in the same run, and each precision's deviation from float32.
"""

from __future__ import annotations

import copy
import math
import sys

import torch
import torch.nn.functional as F

from ..errors import UsageError, is_int
from .core import (
    PeakMemory,
    attempt,
    flops_per_pixel,
    machine_info,
    matmul_peak,
    tf32,
    time_alternating,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def precision_models(model, dtypes) -> dict:
    """``{name: model}``: the float32 model and a cast copy for each other dtype."""
    out = {}
    for name in dtypes:
        if name not in DTYPES:
            raise UsageError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
        out[name] = (
            model if DTYPES[name] == torch.float32 else copy.deepcopy(model).to(DTYPES[name])
        )
    return out


def deviation(out: torch.Tensor, ref: torch.Tensor, chunk: int = 1 << 25) -> dict:
    """Largest and mean |out - ref|, computed ``chunk`` elements at a time: at 4096 x 4096 x
    384 whole float32 copies of both and their difference took about 100 GB (more than an
    80 GB card holds); a NaN anywhere is the answer, as it would be in one pass."""
    if out.shape != ref.shape:
        raise ValueError(f"out {tuple(out.shape)} and ref {tuple(ref.shape)} differ in shape")
    a, b = out.reshape(-1), ref.reshape(-1)
    big = torch.zeros((), device=a.device)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.numel(), chunk):
        d = (a[i : i + chunk].float() - b[i : i + chunk].to(a.device).float()).abs_()
        big = torch.maximum(big, d.max())  # NaN propagates
        total += d.sum(dtype=torch.float64)
    mean = total.item() / a.numel() if a.numel() else float("nan")
    return {"max_abs_dev_vs_float32": big.item(), "mean_abs_dev_vs_float32": mean}


def bench_forward(
    sizes=(224, 448, 896),
    *,
    dim: int = 384,
    grid: int = 16,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    dtypes=("float32",),
    repeats: int = 2,
    warmup: int = 1,
    batch: int = 1,
    seed: int = 0,
    reference=None,
    reference_max_size: int = 448,
    model=None,
    tile_size: int | None = None,
    chunk_size: int | None = None,
    conv: str = "auto",
    peak: bool = True,
    progress: bool = True,
    graph_max_size: int = 0,
    budget_s: float | None = None,
    tf32_rows: bool = False,
) -> dict:
    """Time and peak memory of LoftUp (per precision), bilinear and bicubic at each size.

    Arguments:
      sizes: square output sizes.
      dim, grid: channels C and low-res grid side of the random features (and of the random
        model when ``model`` is None).
      dtype: a single precision (kept for older callers); ``dtypes`` names several.
      reference: a class like ``benchmarks/reference_impl.py``'s ``ReferenceLoftUp`` (the paper's
        implementation); it gets the model's weights and runs at sizes up to
        ``reference_max_size``, alternating with ours, in float32 and under autocast in each
        other precision of ``dtypes`` (its deviation is from our float32 output).
      tile_size, chunk_size, conv: inference settings (see :func:`loftup.tiling.upsample`).
      peak: also measure the matrix-product peak of each precision.
      graph_max_size: on a GPU, also time LoftUp replayed from a CUDA graph
        (:func:`loftup.graph_upsampler`, method "loftup_graph") in each half precision at
        sizes up to this one.
      tf32_rows: with "float32" in ``dtypes``, also time ours and the reference in
        float32 with TF32 matrix products and convolutions (precision "tf32", what
        ``torch.set_float32_matmul_precision("high")`` gives; the "float32" rows keep
        PyTorch's defaults: TF32 convolutions, full float32 matrix products). A GPU setting:
        on the CPU these rows compute exactly the float32 ones.
      repeats, budget_s: timed rounds per size: ``repeats``, or fewer (at least 3) once a
        size has taken ``budget_s`` seconds (see :func:`loftup.bench.core.time_alternating`).
    """
    from tqdm.auto import tqdm

    from ..model import LoftUp

    if dtype is not None:
        dtypes = (dtype_name(dtype),)
    check_settings(
        sizes, dim=dim if model is None else None, grid=grid, batch=batch, repeats=repeats,
        warmup=warmup, tile_size=tile_size, chunk_size=chunk_size, dtypes=dtypes,
        budget_s=budget_s,
    )  # fmt: skip
    torch.manual_seed(seed)
    if model is None:
        model = LoftUp(dim=dim)
    model = model.eval().to(device)
    model.tile_size, model.chunk_size, model.conv = tile_size, chunk_size, conv
    dim = model.config.dim
    models = precision_models(model, dtypes)
    ref = _reference(reference, model, device) if reference is not None else None
    peaks = {n: matmul_peak(device, DTYPES[n]) for n in dtypes} if peak else {}
    tf32_rows = tf32_rows and "float32" in dtypes
    if tf32_rows and peak:
        with tf32(True):
            peaks["tf32"] = matmul_peak(device, torch.float32)
    fpp = flops_per_pixel(model.config, grid * grid)
    lr = torch.randn(batch, dim, grid, grid, device=device)
    rows, failed = [], []
    with torch.inference_mode():
        for size in tqdm(list(sizes), desc="bench", disable=not progress):
            r = ref if size <= reference_max_size else None
            graphs = size <= graph_max_size and torch.device(device).type == "cuda"
            rows += _bench_size(
                size, lr, models, r, peaks, fpp, device, warmup, repeats, graphs, budget_s,
                tf32_rows, failed,
            )  # fmt: skip
    return {
        "machine": machine_info(device),
        "settings": {
            "dim": dim,
            "grid": grid,
            "batch": batch,
            "dtypes": list(dtypes),
            "dtype": dtypes[0],
            "repeats": repeats,
            "budget_s": budget_s,
            "tf32_rows": tf32_rows,
            "warmup": warmup,
            "tile_size": tile_size,
            "chunk_size": chunk_size,
            "conv": conv,
            "flops_per_pixel": fpp,
        },
        "peak_gflops_per_s": peaks,
        "results": rows,
        "failed": failed,  # cases that raised at a size (out of memory, say): no row there
    }


def check_settings(
    sizes=(224,),
    *,
    dim: int | None = 384,
    grid: int = 16,
    batch: int = 1,
    repeats: int = 1,
    warmup: int = 0,
    tile_size: int | None = None,
    chunk_size: int | None = None,
    dtypes=("float32",),
    budget_s: float | None = None,
) -> None:
    """A :class:`loftup.errors.UsageError` naming the first setting of :func:`bench_forward`
    that it cannot run with (before any model is built or anything is timed). ``dim`` None:
    the model is given, its own width is used."""
    from ..model import LoftUpConfig

    sizes = list(sizes)
    if not sizes or not all(is_int(n) and n >= 1 for n in sizes):
        raise UsageError(
            f"sizes are output sides in pixels and must be integers >= 1, got "
            f"{' '.join(map(str, sizes)) or 'none'}"
        )
    if dim is not None:
        cfg = LoftUpConfig(dim=max(dim, 1) if is_int(dim) else 1)
        extra, heads = cfg.width - cfg.dim, cfg.num_heads
        if not is_int(dim) or dim < 1 or (dim + extra) % heads:
            raise UsageError(
                f"dim (feature channels) must be a positive multiple of {heads}: the attention "
                f"width dim + {extra} is split over {heads} heads; got {dim} (e.g. 384)"
            )
    for name, value, least in (("grid", grid, 1), ("batch", batch, 1), ("repeats", repeats, 1),
                               ("warmup", warmup, 0)):  # fmt: skip
        if not is_int(value) or value < least:
            what = {
                "grid": "the low-res grid side",
                "batch": "images per call",
                "repeats": "timed calls per case",
                "warmup": "untimed calls first",
            }[name]
            raise UsageError(f"{name} ({what}) must be an integer >= {least}, got {value}")
    for name, value in (("tile_size", tile_size), ("chunk_size", chunk_size)):
        if value is not None and (not is_int(value) or value < 1):
            raise UsageError(
                f"{name} must be >= 1 pixels, or left unset for the device's default; got {value}"
            )
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise UsageError(
            f"unknown dtype {unknown[0] if unknown else 'none'!r}; choose from {', '.join(DTYPES)}"
        )
    if budget_s is not None and not budget_s > 0:
        raise UsageError(f"budget_s must be > 0 seconds or None, got {budget_s}")


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
        from ..compiled import graph_upsampler

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
    exact_name = "loftup/float32" if "float32" in dtypes else f"loftup/{dtypes[0]}"
    exact, devs, mems = None, {}, {}
    # On CUDA the memory is read on a second call: the first one also pays one-time costs, such
    # as cuDNN's algorithm search in benchmark mode, which tries algorithms with large trial
    # workspaces (the H200 runs of 2026-11-26 read 87-89 GB for the first 224 float32 call,
    # ours and the reference's alike, and 0.7-3.4 GB for every other float32 row).
    cuda = str(device).startswith("cuda")

    def first_calls(fn):
        if cuda:
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
        if got is None:  # listed in failed; the other cases at this size still count
            del cases[name]
            continue
        out, peak = got
        del got
        mems[name] = max(peak, held.get(name, 0))
        if name == exact_name:
            exact = out
        # deviations are from the exact case's output (none where it failed)
        devs[name] = deviation(out, exact) if exact is not None else {}
        del out
    del exact
    timing = time_alternating(
        cases, device=device, warmup=max(warmup - 1 - cuda, 0), repeats=repeats, budget_s=budget_s
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


def _reference(cls, model, device):
    """The paper's implementation (``cls``) holding ``model``'s weights."""
    from ..hub import native_to_reference

    state = native_to_reference({k: v.float() for k, v in model.state_dict().items()})
    return cls.from_state_dict(state).to(device).eval()


def load_reference_class(path):
    """``ReferenceLoftUp`` from a Python file such as ``benchmarks/reference_impl.py``; a
    :class:`loftup.errors.UsageError` saying what is wrong with the file when it cannot be had
    (missing, a folder, not Python, an error while importing it, no such class)."""
    import importlib.util
    import os

    fix = "give a Python file that defines ReferenceLoftUp, e.g. benchmarks/reference_impl.py"
    where = f"reference implementation {path}"
    if os.path.isdir(path):
        raise UsageError(f"{where} is a folder; {fix}")
    if not os.path.isfile(path):
        raise UsageError(f"{where}: no such file; {fix}")
    spec = importlib.util.spec_from_file_location("loftup_reference_standin", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{where} is not a Python (.py) file; {fix}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(
            f"{where} has a Python syntax error at line {e.lineno}: {e.msg}; fix the file or {fix}"
        ) from None
    except Exception as e:  # the user's own file failed to run: say how, without a traceback
        raise UsageError(
            f"{where} failed while being imported: {type(e).__name__}: {e}; fix the file or {fix}"
        ) from None
    cls = getattr(module, "ReferenceLoftUp", None)
    if cls is None:
        raise UsageError(f"{where} defines no ReferenceLoftUp class; {fix}")
    return cls


def format_table(report: dict) -> str:
    """The report as a fixed-width table."""
    lines = [
        f"{'method':<10} {'dtype':<9} {'size':>5} {'median':>10} {'best':>10} {'GFLOP/s':>8} "
        f"{'%peak':>6} {'peak mem':>9} {'max dev':>8}"
    ]
    for r in report["results"]:
        gf = f"{r['gflops_per_s']:.0f}" if "gflops_per_s" in r else ""
        frac = f"{100 * r['fraction_of_peak']:.0f}%" if "fraction_of_peak" in r else ""
        dev = fmt_dev(r["max_abs_dev_vs_float32"]) if "max_abs_dev_vs_float32" in r else ""
        lines.append(
            f"{r['method']:<10} {r.get('dtype', ''):<9} {r['size']:>5} {fmt_s(r['median_s']):>10} "
            f"{fmt_s(r['best_s']):>10} {gf:>8} {frac:>6} {r['peak_memory_bytes'] / 2**20:>7.0f}MB "
            f"{dev:>8}"
        )
    for f in report.get("failed", []):
        lines.append(f"# failed: {f['method']} {f['dtype']} {f['size']}: {f['error']}")
    m = report["machine"]
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in report.get("peak_gflops_per_s", {}).items())
    lines.append(
        f"# {m.get('gpu') or m['processor']}, {m['torch_threads']} threads, torch {m['torch']}, "
        f"{m['date']}" + (f"; matmul peak GFLOP/s: {peaks}" if peaks else "")
    )
    return "\n".join(lines)


def fmt_dev(d: float | None) -> str:
    """A deviation as text; ``None`` is how a stored report holds a NaN or an infinity (its
    JSON is strict), which is what a broken output gives."""
    return "not finite" if d is None or not math.isfinite(d) else f"{d:.1e}"


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"
