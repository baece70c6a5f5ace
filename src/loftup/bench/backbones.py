"""Backbones end to end: a transformers DINOv2 (random weights, no download) alone, then with
bilinear or LoftUp after it, LoftUp run in each of its ways (eager, image half started first or
on a second stream, replayed from a CUDA graph), timed alternating.

Written for CUDA; runs on the CPU too (tiny sizes), as :mod:`loftup.bench.gpu` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import attempt, time_alternating
from .precision import DTYPES

#: transformers DINOv2 shapes: hidden width, layers, heads (random weights: no download).
BACKBONES = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12), "tiny": (32, 2, 2)}
#: what the GPU suite runs end to end, at each size of the issue's targets
GPU_ARCHS, GPU_DTYPES = ("vits14", "vitb14"), ("float32", "float16")


def dinov2_config(arch: str):
    """transformers' ``Dinov2Config`` of a :data:`BACKBONES` shape (patch 14, 518 pretraining)."""
    from ..featurizers.hf import from_transformers

    (Dinov2Config,) = from_transformers("Dinov2Config")
    width, layers, heads = BACKBONES[arch]
    return Dinov2Config(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        patch_size=14,
        image_size=518,
    )


def backbone_end_to_end(
    sizes=(224, 448),
    *,
    archs=GPU_ARCHS,
    dtypes=GPU_DTYPES,
    device="cuda",
    repeats=10,
    graphs: bool = True,
    failed: list | None = None,
    on_rows=None,
) -> list:
    """Backbone alone, + bilinear, + LoftUp (random weights, features of the backbone's width),
    + LoftUp with its image half started before the backbone (``_overlap``,
    :func:`loftup.start_upsample`) and, on a GPU, started on a second CUDA stream (``_stream``:
    beside the backbone's kernels rather than before them); on a GPU also the same three
    replayed from CUDA graphs (``graphs``). The backbone runs eagerly in every case.
    ``failed``: a list that a backbone, precision and size whose row raises (out of memory,
    say) is appended to (``method``: the backbone, ``dtype``, ``size``, ``error``), with no
    row, while the others are still timed; None: the error propagates. ``on_rows(rows)``:
    called with the rows so far after each."""
    from ..featurizers.hf import from_transformers

    (Dinov2Model,) = from_transformers("Dinov2Model")
    from ..model import LoftUp

    rows = []
    for arch in archs:
        width = BACKBONES[arch][0]
        cfg = dinov2_config(arch)
        for name in dtypes:
            held = {}  # this backbone and precision's models; the last pair's are freed

            def models(arch=arch, name=name, width=width, cfg=cfg, held=held):
                if not held:  # built once, retried at the next size where it failed
                    dt = DTYPES[name]
                    torch.manual_seed(0)
                    held["backbone"] = Dinov2Model(cfg).eval().to(device, dt)
                    held["up"] = LoftUp(dim=width).eval().to(device, dt)
                return held["backbone"], held["up"]

            for size in sizes:
                row = attempt(
                    lambda arch=arch, name=name, size=size, models=models: _end_to_end_row(
                        *models(), arch, name, size, device, repeats, graphs
                    ),
                    failed, device, method=arch, dtype=name, size=size,
                )  # fmt: skip
                if row is not None:
                    rows.append(row)
                if on_rows is not None:
                    on_rows(rows)
    return rows


def _end_to_end_row(backbone, up, arch, name, size, device, repeats, graphs) -> dict:
    """One row of :func:`backbone_end_to_end`: every case at one backbone, precision, size."""
    from ..graphs import graph_upsampler
    from ..tiling import start_upsample

    width, dt = BACKBONES[arch][0], DTYPES[name]
    x = torch.randn(1, 3, size, size, device=device)  # LoftUp's guide: float32
    xb, g = x.to(dt), size // 14  # the backbone's input, in its precision

    def feats():
        tokens = backbone(pixel_values=xb).last_hidden_state[:, 1:]
        return tokens.transpose(1, 2).reshape(1, width, g, g)

    cases = {
        "backbone": feats,
        "backbone+bilinear": lambda: F.interpolate(feats(), size=(size, size), mode="bilinear"),
        "backbone+loftup": lambda: up(feats(), x),
        "backbone+loftup_overlap": lambda: _overlapped(start_upsample(up, x), feats),
    }
    if x.is_cuda:  # the image's half on a second stream, beside the backbone's
        side = torch.cuda.Stream(x.device)
        cases["backbone+loftup_stream"] = lambda: _overlapped(
            start_upsample(up, x, stream=side), feats
        )
    row = {"backbone": arch, "dtype": name, "size": size}
    if graphs and x.is_cuda:  # the backbone eager, LoftUp replayed from a graph
        try:
            with torch.inference_mode():
                graph = graph_upsampler(up, feats(), x)
                graph.start(x)  # captures the two halves
                graph.finish(feats())
        except Exception as e:  # noqa: BLE001 - keep the eager rows
            row["errors"] = {"graph": f"{type(e).__name__}: {e}"}
        else:
            cases["backbone+loftup_graph"] = lambda: graph(feats(), x)
            cases["backbone+loftup_graph_overlap"] = lambda: _overlapped(graph.start(x), feats)
            cases["backbone+loftup_graph_stream"] = lambda: _overlapped(
                graph.start(x, stream=side), feats
            )
    errors = _preflight(cases, keep=("backbone", "backbone+bilinear", "backbone+loftup"))
    if errors:
        row.setdefault("errors", {}).update(errors)
    with torch.inference_mode():
        t = time_alternating(cases, device=device, warmup=2, repeats=repeats)
    row.update({f"{k}_s": v["best_s"] for k, v in t.items()})
    for case in (
        "loftup",
        "loftup_overlap",
        "loftup_stream",
        "loftup_graph",
        "loftup_graph_overlap",
        "loftup_graph_stream",
    ):
        if f"backbone+{case}_s" in row:
            row[f"{case}_over_bilinear"] = row[f"backbone+{case}_s"] / row["backbone+bilinear_s"]
    return row


def _preflight(cases: dict, keep: tuple) -> dict:
    """Run each case of ``cases`` not in ``keep`` once; drop those that raise (from ``cases``,
    in place) and return their errors by name, so that one variant failing on a machine keeps
    the others' figures (the ``keep`` cases run unguarded: without them nothing compares)."""
    errors = {}
    for name in [k for k in cases if k not in keep]:
        try:
            with torch.inference_mode():
                cases[name]()
        except Exception as e:  # noqa: BLE001 - recorded with the row
            errors[name] = f"{type(e).__name__}: {e}"
            del cases[name]
    return errors


def _overlapped(pending, feats):
    """``pending.finish(feats())``: the backbone runs after the upsampler's image half
    (``pending``: a :class:`loftup.tiling.PendingUpsample` or a started graph upsampler)."""
    return pending.finish(feats())
