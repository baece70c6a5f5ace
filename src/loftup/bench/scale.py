"""Scale: time per megapixel and working memory as the output grows, streaming an output larger
than memory to disk, batches and video frames, and what ``torch.compile`` buys."""

from __future__ import annotations

import os
import tempfile
import time

import torch

from ..errors import UsageError, is_int
from .core import flops_per_pixel, sync, time_alternating, time_call
from .memory import PeakMemory
from .progress import expect, tick


def _inputs(model, size: int, grid: int, device, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lr = torch.randn(batch, model.config.dim, grid, grid, generator=g).to(device)
    return lr, torch.randn(batch, 3, size, size, generator=g).to(device)


def bench_megapixels(model, sizes=(224, 1024), *, grid=16, device="cpu", repeats=1) -> list:
    """Seconds per megapixel and working memory (peak minus the output) at each size."""
    rows = []
    for size in sizes:
        lr, image = _inputs(model, size, grid, device)
        with torch.inference_mode():
            with PeakMemory(device) as mem:
                out = model(lr, image)
            out_bytes = out.numel() * out.element_size()
            del out
            t = time_call(
                lambda lr=lr, image=image: model(lr, image),
                device=device,
                warmup=0,
                repeats=repeats,
            )
        mp = size * size / 1e6
        rows.append(
            {
                "size": size,
                "best_s": t["best_s"],
                "s_per_megapixel": t["best_s"] / mp,
                "gflops_per_s": flops_per_pixel(model.config, grid * grid)
                * size
                * size
                / t["best_s"]
                / 1e9,
                "output_bytes": out_bytes,
                "peak_memory_bytes": mem.peak_bytes,
                "working_memory_bytes": mem.peak_bytes - out_bytes,
            }
        )
    return rows


def check_stream_size(size) -> None:
    """A :class:`loftup.errors.UsageError` unless ``size`` is an output side >= 1 to stream."""
    if not is_int(size) or size < 1:
        raise UsageError(
            f"stream size (--stream) is the side of the N x N output streamed to disk and must be an "
            f"integer >= 1 (e.g. 4096), got {size}"
        )


def bench_stream(
    model,
    size: int = 4096,
    *,
    grid=16,
    device="cpu",
    path=None,
    layout="nhwc",
    keep=False,
    progress: bool | None = None,
) -> dict:
    """Stream one size x size output into a memory-mapped .npy: time, file size, and the peak
    of the process's own (anonymous) memory, which leaves the file's pages out. The model's
    inference settings (``tile_size``, ``chunk_size``, ``conv``) are those it streams with.
    ``progress``: a bar over the tiles on stderr (None: where a bench bar is open, as in
    a suite's section run with its bars; ``--no-progress`` opens none)."""
    from ..tiling import upsample_to_npy
    from .progress import active

    check_stream_size(size)
    if progress is None:
        progress = active()

    lr, image = _inputs(model, size, grid, device)
    tmpdir = None
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="loftup-stream-")
        path = os.path.join(tmpdir, "features.npy")
    try:
        # the process's own host memory on any device (on a GPU, PeakMemory(device) reads the
        # GPU's allocations, which this figure's name and line called host memory), and on a
        # GPU its peak allocation besides
        cuda = torch.device(device).type == "cuda"
        gpu = PeakMemory(device) if cuda else _null()
        with PeakMemory("cpu", anon=True) as mem, gpu:
            t0 = time.perf_counter()
            upsample_to_npy(
                model, lr, image, path, layout=layout, tile_size=model.tile_size,
                chunk_size=model.chunk_size, conv=model.conv, progress=progress,
            )  # fmt: skip
            sync(device)
            seconds = time.perf_counter() - t0
        return {
            "size": size,
            "layout": layout,
            "seconds": seconds,
            "s_per_megapixel": seconds / (size * size / 1e6),
            "file_bytes": os.path.getsize(path),
            "peak_anon_memory_bytes": mem.peak_bytes,
            "peak_device_bytes": gpu.peak_bytes if cuda else None,
            "path": str(path) if keep else None,
        }
    finally:
        if not keep and os.path.exists(path):
            os.remove(path)
        if tmpdir and not keep:
            os.rmdir(tmpdir)


def bench_stream_random(
    size: int,
    *,
    dim: int = 384,
    grid: int = 16,
    device="cpu",
    tile_size: int | None = None,
    chunk_size: int | None = None,
    conv: str = "auto",
    progress: bool = True,
) -> dict:
    """:func:`bench_stream` of a random LoftUp with ``dim`` channels (random weights time as the
    released ones do), with the inference settings ``tile_size``, ``chunk_size`` and ``conv``
    (see :func:`loftup.tiling.upsample`): what ``loftup bench --stream N`` adds to its table
    (``progress``: its bar over the tiles, on stderr)."""
    from ..model import LoftUp

    model = LoftUp(dim=dim).eval().to(device)
    model.tile_size, model.chunk_size, model.conv = tile_size, chunk_size, conv
    return bench_stream(model, size, grid=grid, device=device, progress=progress)


def bench_batches(model, size=224, batches=(1, 8, 32), *, grid=16, device="cpu", repeats=3) -> list:
    """Images per second for batches of one size."""
    rows = []
    for b in batches:
        lr, image = _inputs(model, size, grid, device, batch=b)
        with torch.inference_mode():
            t = time_call(
                lambda lr=lr, image=image: model(lr, image),
                device=device,
                warmup=1,
                repeats=repeats,
            )
        rows.append(
            {"size": size, "batch": b, "best_s": t["best_s"], "images_per_s": b / t["best_s"]}
        )
    return rows


def bench_video(model, size=224, frames=16, batch=4, *, grid=16, device="cpu") -> dict:
    """Frames per second for a sequence of frames of one size (each with its own features)."""
    from ..compiled import upsample_frames

    lr, image = _inputs(model, size, grid, device, batch=frames)
    pairs = list(zip(lr.unbind(0), image.unbind(0)))
    with torch.inference_mode():
        for _ in upsample_frames(model, pairs[:batch], batch_size=batch):  # warm-up
            pass
        sync(device)
        t0 = time.perf_counter()
        n = 0
        expect(len(pairs))
        for _ in upsample_frames(model, pairs, batch_size=batch):
            n += 1
            tick("frame")  # microseconds, against milliseconds a frame
        sync(device)
        seconds = time.perf_counter() - t0
    return {
        "size": size,
        "frames": n,
        "batch": batch,
        "seconds": seconds,
        "frames_per_s": n / seconds,
    }


def bench_compile(
    model, size=224, *, grid=16, device="cpu", dtype=None, mode=None, repeats=3
) -> dict:
    """Eager against ``torch.compile`` (CUDA graphs on a GPU) at one size, alternating."""
    from ..compiled import compile_upsampler

    lr, image = _inputs(model, size, grid, device)
    fn = compile_upsampler(model, device=device, dtype=dtype, mode=mode)
    t0 = time.perf_counter()
    compiled_out = fn(lr, image).clone()
    sync(device)
    compile_s = time.perf_counter() - t0
    ctx = torch.autocast(torch.device(device).type, dtype=dtype) if dtype else _null()
    with torch.inference_mode(), ctx:
        eager_out = model(lr, image)
        t = time_alternating(
            {"eager": lambda: model(lr, image), "compiled": lambda: fn(lr, image)},
            device=device,
            warmup=2,
            repeats=repeats,
        )
    return {
        "size": size,
        "dtype": str(eager_out.dtype).replace("torch.", ""),
        "compile_s": compile_s,
        "eager_best_s": t["eager"]["best_s"],
        "compiled_best_s": t["compiled"]["best_s"],
        "speedup": t["eager"]["best_s"] / t["compiled"]["best_s"],
        "max_abs_dev": (compiled_out.float() - eager_out.float()).abs().max().item(),
    }


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
