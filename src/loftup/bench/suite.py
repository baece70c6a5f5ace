"""The named benchmark suites: every figure of the speed and GPU issues in one command.

- ``cpu``: the forward table (float32 and bf16, the paper's implementation alongside up to
  448), megapixel scaling, batches, video, torch.compile, optionally a streamed 4096 x 4096;
- ``gpu``: parity with the CPU, the forward table in three precisions next to the paper's
  implementation up to 2048, what each kernel choice buys, 4096 x 4096 on the device and
  streamed to host under a memory cap, throughput, video, backbones end to end;
- ``smoke``: the ``gpu`` suite at toy sizes, on CUDA if present else on the CPU, to show that
  it runs before a GPU is lent.

A section that fails is recorded with its error and the others still run. Joining a run's
parts (:mod:`.parts`) and the summary's text (:mod:`.summary`) have modules of their own, their
names importable from here too.
"""

from __future__ import annotations

import time
import traceback

import torch

from ..errors import UsageError
from . import gpu, scale
from .core import kernel_state, load_average, machine_info, timing_mode
from .forward import bench_forward
from .parts import merge_reports, pytest_outcome
from .progress import bar as progress_bar
from .summary import _fmt, summary
from .targets import targets

__all__ = [
    "SECTIONS",
    "SUITES",
    "_fmt",
    "check_sections",
    "merge_reports",
    "pytest_outcome",
    "run_suite",
    "summary",
]

SUITES = ("cpu", "gpu", "smoke")

#: Each suite's sections, in the order they run. On a GPU the ones that decide the issue's
#: targets (:mod:`loftup.bench.targets`) come first and the two that decide none (the
#: extraction loop's rates and the ablation) last: a run cut short by a time limit loses the
#: least (``benchmarks/gpu.sh`` gives only the ablation the earlier deadline).
_GPU_SECTIONS = (
    "parity",
    "forward",
    "forward_4096",
    "big_output",
    "capped_stream",
    "batches",
    "video",
    "backbones",
    "extraction",
    "ablation",
)
SECTIONS = {
    "cpu": ("forward", "megapixels", "batches", "video", "compile", "stream"),
    "gpu": _GPU_SECTIONS,
    "smoke": _GPU_SECTIONS,
}


def check_sections(name: str, only) -> None:
    """UsageError naming the first of ``only`` that is not a section of suite ``name``."""
    unknown = sorted(set(only) - set(SECTIONS[name]))
    if unknown:
        raise UsageError(
            f"suite {name!r} has no section {unknown[0]!r}; its sections: "
            + ", ".join(SECTIONS[name])
        )


def run_suite(
    name: str,
    *,
    device: str | None = None,
    reference=None,
    stream_size=None,
    log=print,
    on_section=None,
    only=None,
    progress: bool = True,
) -> dict:
    """Run suite ``name`` and return its report (``sections``: one entry per measurement).
    ``on_section(report)`` is called after each section (to save partial results: a run cut
    short by a time limit keeps what it measured). ``only``: run just these sections (names in
    :data:`SECTIONS`); ``benchmarks/gpu.sh`` runs groups of them in separate processes, so that a
    failure that poisons the CUDA context costs one group, and joins them with
    :func:`.parts.merge_reports`. ``progress``: a bar on stderr per section, counting the calls
    it times (:mod:`.progress`)."""
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r}; choose from {SUITES}")
    if only is not None:
        only = set(only)
        check_sections(name, only)
    if stream_size is not None:
        scale.check_stream_size(stream_size)  # before anything is timed
        if name != "cpu":  # not silently left out
            raise UsageError(
                f"stream_size (--stream N) is a section of suite 'cpu' only; suite {name!r} "
                "streams its own output (capped_stream): leave it out"
            )
    elif only is not None and "stream" in only:  # not an empty report
        raise UsageError(
            "section 'stream' streams an N x N output to disk: give its side, stream_size "
            "(--stream N, e.g. 4096)"
        )
    from ..model import LoftUp

    smoke = name == "smoke"
    if device is None:
        device = "cuda" if name != "cpu" and torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    if name == "gpu" and not cuda:
        raise UsageError(
            "suite 'gpu' times a CUDA GPU at full sizes (up to 4096 x 4096, hours on a CPU) and "
            f"would run on {device}; here use --suite smoke (the same code at toy sizes) or "
            "--suite cpu"
        )
    timing_mode(device)
    dim, grid = (32, 4) if smoke else (384, 16)
    torch.manual_seed(0)
    model = LoftUp(dim=dim).eval().to(device)
    report = {
        "suite": name,
        "machine": machine_info(device),
        "settings": {"dim": dim, "grid": grid},
        "sections": {},
    }

    def section(key, fn):
        if only is not None and key not in only:
            return
        log(f"[{name}] {key} ...")
        t0 = time.perf_counter()
        try:
            with progress_bar(f"[{name}] {key}", enabled=progress):
                report["sections"][key] = fn()
        except Exception as e:  # noqa: BLE001 - one failed measurement must not lose the rest
            report["sections"][key] = {
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
            log(f"[{name}] {key} FAILED: {type(e).__name__}: {e}")
        report["sections"].setdefault("_seconds", {})[key] = round(time.perf_counter() - t0, 1)
        report["machine"]["load_average_end"] = load_average()  # as of the last section
        if cuda:  # the Triton kernels' self-tests run on their first half-precision forward
            report["machine"]["triton_kernels"] = kernel_state(device)
        if on_section is not None:
            on_section(report)

    fwd = dict(dim=dim, grid=grid, device=device, model=model, reference=reference, progress=False)
    if name == "cpu":
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
            section(
                "stream", lambda: scale.bench_stream(model, stream_size, grid=grid, device=device)
            )
        return report

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
            budget_s=s(6.0, None),  # 2048: 3 rounds of ~2.5 s instead of 10
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

    def listed(fn):
        """A section of rows whose cases may fail one by one (out of memory at one size on an
        80 GB card, say): ``{"results": rows, "failed": cases}``, as the forward table's."""
        failed = []
        return {"results": fn(failed), "failed": failed}

    section(
        "big_output",
        lambda: listed(
            lambda failed: [
                r
                for dt in (torch.float16, torch.bfloat16)
                for r in gpu.big_output(
                    model,
                    s(4096, 96),
                    dtype=dt,
                    tile_sizes=s((512, 1024, 2048), (32, 64)),
                    grid=grid,
                    device=device,
                    failed=failed,
                )
            ]
        ),
    )
    section(
        "capped_stream", lambda: gpu.capped_stream(model, s(4096, 64), grid=grid, device=device)
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
    section(
        "backbones",
        lambda: listed(
            lambda failed: gpu.backbone_end_to_end(
                s((224, 448), (28, 56)),
                archs=s(("vits14", "vitb14"), ("tiny",)),
                device=device,
                repeats=s(10, 1),
                failed=failed,
            )
        ),
    )
    section(
        "extraction",
        lambda: gpu.extraction(
            s(448, 28),
            count=s(8, 2),
            arch=s("vits14", "tiny"),
            writers=s((1, 2, 4), (1, 2)),
            dtype=s("float16", "float32"),
            device=device,
        ),  # fmt: skip
    )
    section(
        "ablation",
        lambda: gpu.kernel_ablation(
            model,
            s((224, 448), (32,)),
            dtype=half,
            grid=grid,
            device=device,
            repeats=s(10, 1),
            compile_sizes=s((224,), ()),
        ),
    )
    report["targets"] = targets(report)
    return report


def _cast(model, dtype):
    import copy

    return copy.deepcopy(model).to(dtype)
