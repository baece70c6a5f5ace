"""What a GPU run measures beyond the forward table: parity with the CPU, what each kernel
choice buys, outputs larger than the GPU's memory, and backbones end to end.

Written for CUDA; every function also runs on the CPU (tiny sizes) so that ``benchmarks/gpu.sh``
is known to work before a GPU is lent.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from .core import PeakMemory, attempt, sync, tf32, time_alternating, time_call
from .forward import DTYPES
from .scale import _inputs


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
    for name in dtypes:
        m = copy.deepcopy(model).to(device, DTYPES[name])
        with torch.inference_mode(), tf32(False):
            got = m(lr.to(device), image.to(device)).float().cpu()
        d = (got - ref).abs()
        out[name] = {"max_abs_dev": d.max().item(), "mean_abs_dev": d.mean().item()}
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
) -> list:
    """What each step buys, at each size in one precision, alternating: the default (fused
    attention, channels-last convolutions, rows mean-padded to multiples of 8 on a GPU, the
    Triton kernels of :mod:`loftup.kernels`), plain-math attention, NCHW convolutions, unpadded
    rows, PyTorch's kernels instead of the Triton ones, a CUDA graph of the eager forward (GPU),
    and torch.compile (CUDA graphs on a GPU) at ``compile_sizes``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .. import kernels
    from ..compiled import compile_upsampler, graph_upsampler

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
    for size in sizes:
        lr, image = _inputs(m, size, grid, device)

        def run(conv="auto", math=False, align=None, lr=lr, image=image):
            v = variant(conv, align)
            if math:
                with sdpa_kernel([SDPBackend.MATH]):
                    return v(lr, image)
            return v(lr, image)

        def plain(run=run):
            with kernels.enabled(False):
                return run()

        cases = {
            "default": run,
            "math attention": lambda: run(math=True),
            "NCHW convolutions": lambda: run(conv="direct_nchw"),
            "unpadded rows": lambda: run(align=1),
            "no Triton kernels": plain,
        }
        if torch.device(device).type == "cpu":
            cases["direct convolutions"] = lambda: run(conv="direct")
        else:
            try:
                graphed = graph_upsampler(m, lr, image)
                cases["CUDA graph"] = lambda g=graphed, lr=lr, image=image: g(lr, image)
            except Exception as e:  # noqa: BLE001 - measured where it works, reported where not
                rows.append({"size": size, "variant": "CUDA graph", "error": repr(e)[:300]})
        if size in compile_sizes:
            fn = compile_upsampler(m, device=device)
            fn(lr, image)
            cases["compiled"] = lambda fn=fn, lr=lr, image=image: fn(lr, image)
        with torch.inference_mode():
            t = time_alternating(cases, device=device, warmup=2, repeats=repeats)
        base = t["default"]["best_s"]
        for name, timing in t.items():
            rows.append(
                {
                    "size": size,
                    "dtype": str(dtype).replace("torch.", ""),
                    "variant": name,
                    "best_s": timing["best_s"],
                    "median_s": timing["median_s"],
                    "relative_to_default": timing["best_s"] / base,
                }
            )
    return rows


def big_output(
    model,
    size=4096,
    *,
    dtype=torch.float16,
    tile_sizes=(1024, 2048),
    grid=16,
    device="cuda",
    repeats=2,
    failed: list | None = None,
) -> list:
    """One size x size output held on the device, per tile size: time and peak memory beyond
    the output itself. ``failed``: a list that a tile size which raises (out of memory, say)
    is appended to (``method``, ``dtype``, ``size``, ``tile_size``, ``error``), with no row,
    while the other tile sizes are still timed; None: the error propagates."""
    name = str(dtype).replace("torch.", "")
    held = {}

    def setup():  # once, retried at the next tile size where it failed
        if not held:
            m = copy.deepcopy(model).to(device, dtype)
            lr, image = _inputs(m, size, grid, device)
            out = torch.empty(1, size, size, m.config.dim, device=device, dtype=dtype)
            held.update(m=m, lr=lr, image=image, out=out.permute(0, 3, 1, 2))
        return held

    rows = []
    for tile in tile_sizes:
        row = attempt(
            lambda tile=tile: _big_output_row(setup(), size, name, tile, device, repeats),
            failed, device, method="loftup", dtype=name, size=size, tile_size=tile,
        )  # fmt: skip
        if row is not None:
            rows.append(row)
    return rows


def _big_output_row(held, size, name, tile, device, repeats) -> dict:
    m, lr, image, out = held["m"], held["lr"], held["image"], held["out"]
    m.tile_size = tile
    with torch.inference_mode():
        # The first call of a tile size is the warm-up, its memory not read: it also pays
        # one-time costs, such as cuDNN's algorithm search in benchmark mode with its large
        # trial workspaces (see forward._bench_size). The peak is that of the timed calls.
        m_out = _upsample_into(m, lr, image, out)
        with PeakMemory(device) as mem:
            t = time_call(
                lambda: _upsample_into(m, lr, image, out),
                device=device,
                warmup=0,
                repeats=repeats,
            )
    step = max(1, size // 64)
    return {
        "size": size,
        "dtype": name,
        "tile_size": tile,
        "best_s": t["best_s"],
        "output_bytes": out.numel() * out.element_size(),
        "peak_beyond_output_bytes": mem.peak_bytes,
        "finite": bool(torch.isfinite(m_out[:, :, ::step, ::step]).all()),
    }


def _upsample_into(model, lr, image, out):
    from ..tiling import upsample

    return upsample(model, lr, image, tile_size=model.tile_size, out=out)


def capped_stream(
    model, size=4096, *, dtype=torch.float32, grid=16, device="cuda", cap_fraction_of_output=0.5
) -> dict:
    """An output larger than the device memory it may use, streamed tile by tile to host
    memory: the device is capped (``torch.cuda.set_per_process_memory_fraction``) at a
    fraction of the output's size."""
    m = copy.deepcopy(model).to(device, dtype)
    lr, image = _inputs(m, size, grid, device)
    out = torch.empty(1, size, size, m.config.dim, dtype=dtype).permute(0, 3, 1, 2)  # host
    out_bytes = out.numel() * out.element_size()
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    cap = None
    if cuda:
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        cap = min(total, int(out_bytes * cap_fraction_of_output))
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap / total, index)
    try:
        with torch.inference_mode(), PeakMemory(device) as mem:
            t0 = time.perf_counter()
            _upsample_into(m, lr, image, out)
            sync(device)
            seconds = time.perf_counter() - t0
    finally:
        if cuda:
            torch.cuda.set_per_process_memory_fraction(1.0, index)
    return {
        "size": size,
        "dtype": str(dtype).replace("torch.", ""),
        "output_bytes": out_bytes,
        "device_cap_bytes": cap,
        "peak_device_bytes": mem.peak_bytes if cuda else None,
        "seconds": seconds,
    }


#: transformers DINOv2 shapes: hidden width, layers, heads (random weights: no download).
BACKBONES = {"vits14": (384, 12, 6), "vitb14": (768, 12, 12), "tiny": (32, 2, 2)}


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
    archs=("vits14", "vitb14"),
    dtypes=("float32", "float16"),
    device="cuda",
    repeats=10,
    graphs: bool = True,
    failed: list | None = None,
) -> list:
    """Backbone alone, + bilinear, + LoftUp (random weights, features of the backbone's width),
    + LoftUp with its image half started before the backbone (``_overlap``,
    :func:`loftup.start_upsample`) and, on a GPU, started on a second CUDA stream (``_stream``:
    beside the backbone's kernels rather than before them); on a GPU also the same three
    replayed from CUDA graphs (``graphs``). The backbone runs eagerly in every case.
    ``failed``: a list that a backbone, precision and size whose row raises (out of memory,
    say) is appended to (``method``: the backbone, ``dtype``, ``size``, ``error``), with no
    row, while the others are still timed; None: the error propagates."""
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
    return rows


def _end_to_end_row(backbone, up, arch, name, size, device, repeats, graphs) -> dict:
    """One row of :func:`backbone_end_to_end`: every case at one backbone, precision, size."""
    from ..compiled import graph_upsampler
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


def extraction(
    size=448,
    *,
    count=8,
    arch="vits14",
    dtype="float16",
    writers=(1, 2, 4),
    fmt="pt",
    device="cuda",
) -> dict:
    """``loftup upsample``'s own loop (:func:`loftup.extract.run`) over ``count`` JPEG files of
    ``size`` x ``size``, random ViT-S/14 (transformers, loaded from a local folder as real
    weights are) + LoftUp in ``dtype``, features stored in ``dtype``: images per second of the
    pipeline alone (images in memory, nothing written), of reading, computing and writing one
    after the other (the loop before it overlapped them), of the overlapped loop with each
    number of writer threads, and with every output streamed into its file tile by tile (what
    ``--stream-above`` does for large ones)."""
    import shutil
    import tempfile
    from pathlib import Path

    from PIL import Image

    from ..api import load_pipeline
    from ..extract import collect_inputs, run
    from ..featurizers import get_featurizer
    from ..featurizers.hf import from_transformers
    from ..io import load_image_tensor
    from ..model import LoftUp
    from ..outputs import save_features

    (Dinov2Model,) = from_transformers("Dinov2Model")

    dt = DTYPES[dtype]
    with tempfile.TemporaryDirectory(prefix="loftup-extract-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        Dinov2Model(dinov2_config(arch)).save_pretrained(tmp / "backbone")
        featurizer = get_featurizer("dinov2_vits14", weights=tmp / "backbone")
        pipe = load_pipeline(
            LoftUp(dim=featurizer.dim), backbone=featurizer, device=device, dtype=dt
        )
        (tmp / "in").mkdir()
        g = torch.Generator().manual_seed(0)
        for i in range(count):  # smooth colour fields: JPEGs of a photo's size, not of noise
            field = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size))
            pixels = (field[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp / "in" / f"im{i:03d}.jpg", quality=90)
        jobs, _ = collect_inputs([str(tmp / "in")])
        images = [load_image_tensor(j.path)[None] for j in jobs]
        for x in images[:2]:  # warm-up: cuDNN's algorithm search, Triton's compilation
            pipe(x)
        sync(device)

        def timed(fn) -> float:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            return count / (time.perf_counter() - t0)

        def serial(out: Path) -> None:
            out.mkdir()
            for job in jobs:
                _, hr = pipe(load_image_tensor(job.path)[None])
                save_features(out / f"{job.stem}.{fmt}", hr[0], fmt, dt)

        rates = {"compute_only": timed(lambda: [pipe(x) for x in images])}
        rates["serial"] = timed(lambda: serial(tmp / "serial"))
        file_bytes = (tmp / "serial" / f"{jobs[0].stem}.{fmt}").stat().st_size
        shutil.rmtree(tmp / "serial")
        for n in writers:
            out = tmp / f"writers{n}"
            out.mkdir()
            rates[f"writers_{n}"] = timed(
                lambda out=out, n=n: run(jobs, pipe, out, fmt=fmt, save_dtype=dt, writers=n)
            )
            shutil.rmtree(out)
        out = tmp / "streamed"  # every output tile by tile into its memory-mapped file
        out.mkdir()
        rates["streamed_writers_2"] = timed(
            lambda: run(jobs, pipe, out, fmt=fmt, save_dtype=dt, writers=2, stream_above=0)
        )
    return {
        "size": size,
        "count": count,
        "backbone": arch,
        "dtype": dtype,
        "file_mb": file_bytes / 1e6,
        "images_per_s": rates,
    }
