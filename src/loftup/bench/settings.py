"""The settings of :func:`loftup.bench.forward.bench_forward` checked before anything is built or
timed, each refused with what it must be."""

from __future__ import annotations

from ..errors import UsageError, is_int
from .precision import DTYPES


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
    reference: bool = False,
    reference_max_size: int = 448,
    graph_max_size: int = 0,
    tf32_rows: bool = False,
) -> None:
    """A :class:`loftup.errors.UsageError` naming the first setting of
    :func:`.forward.bench_forward` that it cannot run with (before any model is built or
    anything is timed). ``dim`` None: the model is given, its own width is used. ``reference``:
    whether the paper's implementation is timed too (up to ``reference_max_size``).
    ``tf32_rows``: TF32 rows asked for, which sit beside the float32 ones (none without)."""
    from ..model import LoftUpConfig

    sizes = list(sizes)
    if not sizes or not all(is_int(n) and n >= 1 for n in sizes):
        raise UsageError(
            f"sizes (--sizes) are output sides in pixels and must be integers >= 1, got "
            f"{' '.join(map(str, sizes)) or 'none'}"
        )
    if dim is not None:
        cfg = LoftUpConfig(dim=max(dim, 1) if is_int(dim) else 1)
        extra, heads = cfg.width - cfg.dim, cfg.num_heads
        if not is_int(dim) or dim < 1 or (dim + extra) % heads:
            raise UsageError(
                f"dim (--dim, feature channels) must be a positive multiple of {heads}: the attention "
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
            raise UsageError(
                f"{name} (--{name}, {what}) must be an integer >= {least}, got {value}"
            )
    for name, value in (("tile_size", tile_size), ("chunk_size", chunk_size)):
        if value is not None and (not is_int(value) or value < 1):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{name} ({flag}) must be >= 1 pixels, or left unset for the device's default; "
                f"got {value}"
            )
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise UsageError(
            f"unknown dtype {unknown[0] if unknown else 'none'!r}; choose from {', '.join(DTYPES)}"
        )
    if tf32_rows and "float32" not in dtypes:  # its rows would be left out unsaid
        raise UsageError(
            "tf32_rows (--tf32) times float32 with TF32 products beside the float32 rows, and "
            f"dtypes (--dtypes) {' '.join(dtypes)} has no float32: add float32 to dtypes "
            "(--dtypes), or leave out tf32_rows (--tf32)"
        )
    if budget_s is not None and not budget_s > 0:
        raise UsageError(f"budget_s must be > 0 seconds or None, got {budget_s}")
    if not is_int(graph_max_size) or graph_max_size < 0:
        raise UsageError(
            f"graph_max_size (--graph-max-size) is the largest side timed from a CUDA graph and "
            f"must be an integer >= 0 (0: none), got {graph_max_size}"
        )
    if reference and (not is_int(reference_max_size) or reference_max_size < min(sizes)):
        raise UsageError(
            f"reference_max_size (--reference-max-size) {reference_max_size} is below every size "
            f"asked for ({' '.join(map(str, sizes))}): the paper's code given as reference would "
            f"never run; raise it to at least {min(sizes)}, or leave the reference out"
        )
