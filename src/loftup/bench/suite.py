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
from ..escaping import quoted
from . import scale
from .core import kernel_state, load_average, machine_info, timing_mode
from .parts import merge_reports, pytest_outcome
from .progress import bar as progress_bar
from .sections import cpu_sections, gpu_sections
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
#: targets (:mod:`loftup.bench.targets`) come first and the two that decide none (the ablation,
#: then the extraction loop's rates) last: a run cut short by a time limit
#: (``benchmarks/gpu.sh``'s budget) loses the least.
_GPU_SECTIONS = (
    "parity",
    "forward",
    "forward_4096",
    "big_output",
    "capped_stream",
    "batches",
    "video",
    "backbones",
    "ablation",
    "extraction",
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
            f"suite {quoted(name)} has no section {unknown[0]!r}; its sections: "
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
        raise UsageError(f"unknown suite {quoted(name)}; choose from {SUITES}")
    if only is not None:
        only = set(only)
        check_sections(name, only)
    if stream_size is not None:
        scale.check_stream_size(stream_size)  # before anything is timed
        if name != "cpu":  # not silently left out
            raise UsageError(
                f"stream_size (--stream N) is a section of suite 'cpu' only; suite {quoted(name)} "
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

    def section(key, fn, saves=False):
        """``saves``: ``fn(save)`` calls ``save(results)`` with its rows so far, which are kept
        (``{"results": ..., "incomplete": ...}``, and saved by ``on_section``) until it ends:
        a long section stopped by a time limit keeps the rows it finished."""
        if only is not None and key not in only:
            return
        log(f"[{name}] {key} ...")
        t0 = time.perf_counter()

        def save(results):
            kept = results if isinstance(results, dict) else {"results": results}
            report["sections"][key] = {**kept, "incomplete": "stopped before its end"}
            if on_section is not None:
                on_section(report)

        try:
            with progress_bar(f"[{name}] {key}", enabled=progress):
                report["sections"][key] = fn(save) if saves else fn()
        except Exception as e:  # noqa: BLE001 - one failed measurement must not lose the rest
            before = report["sections"].get(key, {})
            report["sections"][key] = {
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
                **({"results_before_the_error": before["results"]} if before else {}),
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
        cpu_sections(section, model, fwd, grid=grid, device=device, stream_size=stream_size)
        return report
    gpu_sections(section, model, fwd, grid=grid, device=device, smoke=smoke, cuda=cuda)
    report["targets"] = targets(report)
    return report
