"""One forward at several output sizes: LoftUp per precision next to bilinear/bicubic (and,
when given, a stand-in of the paper's implementation), timed alternating in one run.

Each row: time (median/best), peak memory of the second call, GFLOP/s achieved against the
matrix-product peak measured in the same run, and each precision's deviation from float32.

The measurement at one size (:mod:`.forward_size`), the precisions (:mod:`.precision`), the
settings' checks (:mod:`.settings`), the paper's stand-in (:mod:`.reference`) and the table's
text (:mod:`.table`) have modules of their own, their names importable from here too.
"""

from __future__ import annotations

import torch

from .core import flops_per_pixel, load_average, machine_info, matmul_peak, tf32
from .forward_size import _bench_size, _calls, untimed_calls
from .precision import DTYPES, deviation, dtype_name, precision_models
from .progress import active as progress_active
from .progress import bar as progress_bar
from .progress import catch_up, done, expect, where
from .reference import _reference, load_reference_class
from .settings import check_settings
from .table import fmt_dev, fmt_s, format_table

__all__ = [
    "DTYPES",
    "_reference",
    "bench_forward",
    "check_settings",
    "deviation",
    "dtype_name",
    "fmt_dev",
    "fmt_s",
    "format_table",
    "load_reference_class",
    "precision_models",
]


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
      tf32_rows: also time ours and the reference in float32 with TF32 matrix products and
        convolutions (precision "tf32", what ``torch.set_float32_matmul_precision("high")``
        gives; the "float32" rows keep PyTorch's defaults: TF32 convolutions, full float32
        matrix products). A GPU setting: on the CPU these rows compute exactly the float32
        ones. They sit beside the float32 rows: refused without "float32" in ``dtypes``.
      progress: a bar on stderr counting the calls timed (:mod:`.progress`); inside a suite's
        section, whose bar is open already, the calls are counted on that bar whatever this says.
      warmup: untimed calls per case before the timed ones; at least 2 are made (the second's
        peak memory is read), recorded as the report's ``settings["untimed_calls"]``.
      repeats, budget_s: timed rounds per size: ``repeats``, or fewer (at least 3) once a
        size has taken ``budget_s`` seconds (see :func:`loftup.bench.core.time_alternating`).
    """
    from ..model import LoftUp

    load_start = load_average()
    if dtype is not None:
        dtypes = (dtype_name(dtype),)
    check_settings(
        sizes, dim=dim if model is None else None, grid=grid, batch=batch, repeats=repeats,
        warmup=warmup, tile_size=tile_size, chunk_size=chunk_size, dtypes=dtypes,
        budget_s=budget_s, reference=reference is not None,
        reference_max_size=reference_max_size, graph_max_size=graph_max_size,
        tf32_rows=tf32_rows,
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
    if tf32_rows and peak:
        with tf32(True):
            peaks["tf32"] = matmul_peak(device, torch.float32)
    fpp = flops_per_pixel(model.config, grid * grid)
    lr = torch.randn(batch, dim, grid, grid, device=device)
    rows, failed = [], []
    cuda = torch.device(device).type == "cuda"
    plan = [  # (size, reference there, CUDA graphs there)
        (size, size <= reference_max_size and ref is not None, size <= graph_max_size and cuda)
        for size in sizes
    ]
    # the bar: this table's own, or the suite section's it runs in
    calls = [_calls(list(models), r, g, tf32_rows, warmup, repeats) for _, r, g in plan]
    own = progress and not progress_active()
    with progress_bar("bench", enabled=own, total=sum(calls)):
        if not own:
            expect(sum(calls))
        count = done()
        with torch.inference_mode():
            for (size, r, graphs), n in zip(plan, calls):
                with where(str(size)):
                    rows += _bench_size(
                        size, lr, models, ref if r else None, peaks, fpp, device, warmup,
                        repeats, graphs, budget_s, tf32_rows, failed,
                    )  # fmt: skip
                count += n
                catch_up(count)  # rounds a budget cut, cases that failed
    return {
        "machine": machine_info(device, load_start),
        "settings": {
            "dim": dim,
            "grid": grid,
            "batch": batch,
            "dtypes": list(dtypes),
            "dtype": dtypes[0],
            "repeats": repeats,
            "budget_s": budget_s,
            "tf32_rows": tf32_rows,
            "warmup": warmup,  # as asked; the calls made: untimed_calls
            "untimed_calls": untimed_calls(warmup),
            "tile_size": tile_size,
            "chunk_size": chunk_size,
            "conv": conv,
            "flops_per_pixel": fpp,
            "seed": seed,
            # why a size has no reference or graph row: not asked for there, not failed
            "reference_max_size": reference_max_size if reference is not None else None,
            "graph_max_size": graph_max_size if torch.device(device).type == "cuda" else 0,
        },
        "peak_gflops_per_s": peaks,
        "results": rows,
        "failed": failed,  # cases that raised at a size (out of memory, say): no row there
    }
