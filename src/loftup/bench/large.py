"""Outputs larger than the GPU's memory allows: one held on the device and computed tile by
tile (time and peak memory beyond the output, per tile size), and one streamed tile by tile to
host memory while the device is capped below the output's size.

Written for CUDA; runs on the CPU too (tiny sizes), as :mod:`loftup.bench.gpu` does.
"""

from __future__ import annotations

import copy
import time

import torch

from .core import attempt, sync, time_call
from .memory import PeakMemory
from .scale import _inputs


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
