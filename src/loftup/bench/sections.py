"""The sections of the named suites (:mod:`.suite`), in the order they run: what each one
measures, at which sizes, in which precisions. ``section(key, fn)`` is the suite's runner: it
times ``fn``, keeps its result under ``key`` (or its error) and skips sections not asked for."""

from __future__ import annotations

import copy

import torch

from . import gpu, scale
from .forward import bench_forward


def cpu_sections(section, model, fwd: dict, *, grid: int, device, stream_size=None) -> None:
    """Suite ``cpu``: the forward table (float32 and bf16, the paper's implementation alongside
    up to 448), megapixel scaling, batches, video, torch.compile, optionally a streamed
    ``stream_size`` x ``stream_size`` output."""
    section(
        "forward",
        lambda: bench_forward(
            (224, 448, 896),
            dtypes=("float32", "bfloat16"),
            reference_max_size=448,
            repeats=2,
            **fwd,
        ),
    )
    section(
        "megapixels",
        lambda: scale.bench_megapixels(model, (224, 1024), grid=grid, device=device),
    )
    section(
        "batches",
        lambda: scale.bench_batches(model, 224, (1, 4), grid=grid, device=device, repeats=2),
    )
    section(
        "video",
        lambda: scale.bench_video(model, 224, frames=16, batch=4, grid=grid, device=device),
    )
    section("compile", lambda: scale.bench_compile(model, 224, grid=grid, device=device))
    if stream_size:
        section("stream", lambda: scale.bench_stream(model, stream_size, grid=grid, device=device))


def gpu_sections(section, model, fwd: dict, *, grid: int, device, smoke: bool, cuda: bool) -> None:
    """Suites ``gpu`` and ``smoke`` (the same sections at toy sizes, on the CPU where there is
    no GPU): parity, the forward table, 4096 x 4096 on the device and streamed under a cap,
    throughput, video, backbones end to end, the ablation, the extraction loop."""
    s = (lambda big, small: small) if smoke else (lambda big, small: big)
    half = torch.float16 if cuda else torch.bfloat16
    sizes = s((224, 448, 896, 1344, 2048), (32, 64))
    section("parity", lambda: gpu.parity_with_cpu(model, s(224, 32), grid=grid, device=device))
    dtypes = ("float32", "bfloat16", "float16")
    section(
        "forward",
        lambda: bench_forward(
            sizes,
            dtypes=dtypes,
            reference_max_size=s(2048, 64),
            repeats=s(10, 1),
            # 1344 and 2048 in 3 rounds (of 1.7 and 2.7 s on the last H200 run), 896 in 5,
            # not 5 and 10: one case's calls there were within 4% of its best
            budget_s=s(3.0, None),
            graph_max_size=s(448, 0),
            peak=s(True, False),  # a CPU's float16 matrix product takes minutes
            tf32_rows=cuda,
            **fwd,
        ),
    )
    section(
        "forward_4096",
        lambda: bench_forward(
            (s(4096, 96),), dtypes=dtypes, repeats=2, peak=False, **{**fwd, "reference": None}
        ),
    )

    def listed(fn, save=None):
        """A section of rows whose cases may fail one by one (out of memory at one size on an
        80 GB card, say): ``{"results": rows, "failed": cases}``, as the forward table's;
        ``save``: the suite's, given the rows so far as ``fn(failed, on_rows)`` finishes each."""
        failed = []
        on_rows = save and (lambda rows: save({"results": list(rows), "failed": failed}))
        return {"results": fn(failed, on_rows), "failed": failed}

    section(
        "big_output",
        lambda: listed(
            lambda failed, on_rows: [
                r
                for dt in (torch.float16, torch.bfloat16)
                for r in gpu.big_output(
                    model,
                    s(4096, 96),
                    dtype=dt,
                    # 2048 took as long as 1024 (0.46 s) with 15 GB beyond the output
                    tile_sizes=s((512, 1024), (32, 64)),
                    grid=grid,
                    device=device,
                    failed=failed,
                )
            ]
        ),
    )
    # 2896 x 2896 x 384 float32, 12.9 GB under a 6.4 GB cap: the 25.8 GB of 4096 took 24 s of
    # host copies on the last H200 run and showed nothing more
    section(
        "capped_stream", lambda: gpu.capped_stream(model, s(2896, 64), grid=grid, device=device)
    )
    section(
        "batches",
        lambda: [
            r
            for size in s((224, 448), (32,))
            for r in scale.bench_batches(
                _cast(model, half),
                size,
                s((1, 8, 32), (1, 2)),
                grid=grid,
                device=device,
                repeats=s(5, 1),
            )
        ],
    )
    section(
        "video",
        lambda: scale.bench_video(
            _cast(model, half), s(448, 32), frames=s(64, 4), batch=s(8, 2), grid=grid, device=device
        ),
    )
    # 5 rounds, not 10 (52.7 s on the last H200 run: the longest section of the second
    # process); its rows and the ablation's are saved as they come
    section(
        "backbones",
        lambda save: listed(
            lambda failed, on_rows: gpu.backbone_end_to_end(
                s((224, 448), (28, 56)),
                archs=s(gpu.GPU_ARCHS, ("tiny",)),
                device=device,
                repeats=s(5, 1),
                failed=failed,
                on_rows=on_rows,
            ),
            save,
        ),
        saves=True,
    )
    section(
        "ablation",
        lambda save: gpu.kernel_ablation(
            model,
            s((224, 448), (32,)),
            dtype=half,
            grid=grid,
            device=device,
            repeats=s(10, 1),
            compile_sizes=s((224,), ()),
            on_rows=lambda rows: save(list(rows)),
        ),
        saves=True,
    )
    section(
        "extraction",
        lambda: gpu.extraction(
            s(448, 28),
            count=s(6, 2),  # 154 MB files: the disk bounds it (2.4-4.7 images/s on the H200)
            arch=s("vits14", "tiny"),
            writers=s((2, 4), (1, 2)),
            dtype=s("float16", "float32"),
            device=device,
        ),  # fmt: skip
    )


def _cast(model, dtype):
    return copy.deepcopy(model).to(dtype)
