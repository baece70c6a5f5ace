"""Measuring honestly: what ran where, wall time, arithmetic and the machine's peak (peak memory:
:mod:`.memory`).

Every figure comes with the machine, the thread count, the torch version and the date, so that a
number is compared only with numbers from the same machine. Timings that are compared with each
other are taken alternating in one run (:func:`time_alternating`): on a shared machine the load
changes from minute to minute.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager

import torch

from ..errors import printable
from ..stops import check as check_stop


def machine_info(device: str = "cpu", load_start: list[float] | None = None) -> dict:
    """What the numbers were measured on (and, in a checkout, at which commit), with the load
    average (1, 5, 15 minutes) at the run's start (``load_start``, as :func:`load_average`
    read it then; default: now) and now, its end: timings on a busy machine are otherwise
    unexplained. A run that goes on after this call updates ``load_average_end``."""
    from ..eval.report import git_commit  # here: keeps loftup.eval out of `loftup bench`'s imports

    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "git_commit": git_commit(),  # "<sha>-dirty" where the tree differs, "-unchecked": unknown
        "load_average_start": load_start or load_average(),
        "load_average_end": load_average(),
    }
    info["triton"] = _version("triton")  # read without importing it (a second or so)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["gpu_count"] = torch.cuda.device_count()  # torchrun's sharding needs two or more
        info["cuda"] = torch.version.cuda
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(
            torch.device(device)
        ).total_memory
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32  # as the "float32" rows ran
        info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        info["triton_kernels"] = kernel_state(device)
    return info


def check_script_args(parser, *, json_out: str | None = None, threads=None) -> None:
    """For the scripts in ``benchmarks/``: ``parser.error`` (their usage, then a one-line
    error; exit status 2) where ``--json`` cannot be written (a folder, under a file, in a
    folder that takes no files: said before the minutes of work, not in a traceback after
    them) or ``--threads`` is below 1."""
    from ..errors import LoftUpError, check_threads
    from ..paths import check_file_output

    try:
        check_threads(threads)
        if json_out is not None:
            check_file_output(json_out, "--json", example="out.json")
    except LoftUpError as e:
        parser.error(str(e))


def load_average() -> list[float] | None:
    """The system's load average over 1, 5 and 15 minutes (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def kernel_state(device) -> dict | str:
    """Whether loftup's Triton kernels ran on ``device`` in each half precision so far (see
    :func:`loftup.kernels.status`): where they failed their self-test, PyTorch's kernels ran
    instead, slower, after a warning that a report would not otherwise keep."""
    from .. import kernels

    return kernels.status(device)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timing_mode(device) -> None:
    """The backend settings every bench run times with: on CUDA, cuDNN's benchmark mode (it
    picks the fastest convolution algorithm per shape, as the README's tables ran), set by
    ``loftup bench`` and by its suites alike so that their figures compare."""
    if str(device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True


def attempt(fn, failed: list | None, device, **case):
    """``fn()``'s value (never None), or None where it raised and ``failed`` is a list: then
    ``{**case, "error": ...}`` is appended to it, said on stderr, and on CUDA the cache is
    emptied (what the failed case held, for the cases after it). ``failed`` None: the error
    propagates. One case out of memory at one size costs its own row, not the section's."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the other cases still count
        if failed is None:
            raise
        error = f"{type(e).__name__}: {e}"[:300]
    # out of the except block: the traceback, and the tensors its frames held, are freed
    failed.append({**case, "error": error})
    what = " ".join(f"{k}={v}" for k, v in case.items())
    print(printable(f"bench: {what} failed: {error}"), file=sys.stderr)  # a path's escape
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
    return None


def sync(device) -> None:
    """Wait for the work queued on ``device`` ("cuda:1": that GPU, not the current one)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_call(fn, *, device: str = "cpu", warmup: int = 1, repeats: int = 3) -> dict:
    """Median and best wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return time_alternating({"_": fn}, device=device, warmup=warmup, repeats=repeats)["_"]


@contextmanager
def tf32(enabled: bool):
    """TF32 for matrix products and convolutions on or off inside the block (CUDA)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def time_alternating(
    fns: dict,
    *,
    device="cpu",
    warmup: int = 1,
    repeats: int = 3,
    budget_s: float | None = None,
    min_repeats: int = 3,
) -> dict:
    """Like :func:`time_call` for several functions, called in turn in every round, so that a
    change of load on a shared machine hits them all alike. Returns ``{name: timing}``.

    ``cpu_best_s`` is the least CPU time of this process over the calls (all threads): with one
    thread it leaves out the time the process waited for a busy machine. ``budget_s``: stop
    after the round that passes this many seconds, once ``min_repeats`` rounds are done (large
    outputs, whose times vary least, then take fewer rounds)."""
    from .progress import tick

    for name, fn in fns.items():
        for _ in range(warmup):
            check_stop()  # one a finaliser swallowed: loftup.stops
            fn()
            tick(None if name == "_" else name)  # time_call's one case: no name
    sync(device)
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    start = time.perf_counter()
    for i in range(repeats):
        if budget_s is not None and i >= min_repeats and time.perf_counter() - start > budget_s:
            break
        for name, fn in fns.items():
            check_stop()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            tick(None if name == "_" else name)
    return {
        name: {
            "median_s": statistics.median(t),
            "best_s": min(t),
            "times_s": t,
            "cpu_best_s": min(cpu[name]),
        }
        for name, t in times.items()
    }


def flops_per_pixel(config, tokens: int) -> float:
    """Multiply-adds x 2 per output pixel of a LoftUp forward with ``tokens`` key/value tokens
    (stem convolutions, per-pixel linear layers, attention; the key/value projections, which
    do not grow with the output, are left out). 8.1 MFLOP for the released C = 384 at 16x16."""
    d, c, hidden = config.width, config.dim, config.mlp_dim
    e = 2 * config.n_freqs * (5 if config.coords else 3) + 3
    keys = tokens if config.attention_window is None else min(tokens, config.attention_window**2)
    stem = 2 * 9 * (e * d + d * d)
    block = 2 * (2 * d * d + 2 * d * hidden) + 2 * 2 * keys * d
    return float(stem + config.depth * block + 2 * d * c)


def matmul_peak(device="cpu", dtype=torch.float32, *, n: int | None = None, repeats: int = 3):
    """The machine's large square matrix product rate in GFLOP/s (best of ``repeats``).

    ``n`` (default 8192 on a GPU, 2048 on the CPU) is halved while a 256-wide product says
    one product would take over half a second: a precision the CPU only emulates (bfloat16
    without AVX-512 BF16 runs at about 1 GFLOP/s) would otherwise take minutes."""
    device = str(device)
    n = n or (8192 if device.startswith("cuda") else 2048)
    if not device.startswith("cuda") and n > 256:
        small = torch.randn(256, 256, device=device).to(dtype)
        rate = 2 * 256**3 / time_call(lambda: small @ small, device=device, repeats=1)["best_s"]
        while n > 256 and 2 * n**3 / rate > 0.5:
            n //= 2
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    timing = time_call(lambda: a @ b, device=device, warmup=1, repeats=repeats)
    return 2 * n**3 / timing["best_s"] / 1e9
