"""Honest measurements: time and peak memory of one forward, next to bilinear and bicubic.

Every figure comes with the machine, the thread count, the torch version and the date, so that a
number can be compared only with numbers from the same machine (see docs/speed.md).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .model import LoftUp


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory above the starting point while the block runs.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: resident set size sampled every millisecond
    by a background thread (a sample can miss a peak shorter than that).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._peak, _rss_bytes()) - self._base


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn, *, device: str = "cpu", warmup: int = 1, repeats: int = 3) -> dict:
    """Median and best wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "best_s": min(times), "times_s": times}


@contextmanager
def _no_grad():
    with torch.inference_mode():
        yield


def bench_forward(
    sizes=(224, 448, 896),
    *,
    dim: int = 384,
    grid: int = 16,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 2,
    warmup: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Time and peak memory of LoftUp and of bilinear/bicubic at each output size."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = LoftUp(dim=dim).eval().to(device=device, dtype=dtype)
    lr = torch.randn(1, dim, grid, grid, device=device, dtype=dtype)
    rows = []
    for size in tqdm(list(sizes), desc="bench", disable=not progress):
        image = torch.randn(1, 3, size, size, device=device, dtype=dtype)
        cases = {
            "loftup": lambda image=image: model(lr, image),
            "bilinear": lambda size=size: F.interpolate(
                lr, size=(size, size), mode="bilinear", align_corners=False
            ),
            "bicubic": lambda size=size: F.interpolate(
                lr, size=(size, size), mode="bicubic", align_corners=False
            ),
        }
        for method, fn in cases.items():
            with _no_grad():
                with PeakMemory(device) as mem:
                    fn()
                timing = time_call(fn, device=device, warmup=warmup, repeats=repeats)
            rows.append(
                {
                    "method": method,
                    "size": size,
                    "output_bytes": dim * size * size * torch.finfo(dtype).bits // 8,
                    "peak_memory_bytes": mem.peak_bytes,
                    **timing,
                }
            )
    return {
        "machine": machine_info(device),
        "settings": {
            "dim": dim,
            "grid": grid,
            "dtype": str(dtype).replace("torch.", ""),
            "repeats": repeats,
            "warmup": warmup,
        },
        "results": rows,
    }


def format_table(report: dict) -> str:
    """The report as a fixed-width table."""
    lines = [f"{'method':<10} {'size':>6} {'median':>10} {'best':>10} {'peak mem':>10}"]
    for r in report["results"]:
        lines.append(
            f"{r['method']:<10} {r['size']:>6} {_fmt_s(r['median_s']):>10} {_fmt_s(r['best_s']):>10} "
            f"{r['peak_memory_bytes'] / 2**20:>8.0f}MB"
        )
    m = report["machine"]
    lines.append(
        f"# {m['processor']}, {m['torch_threads']} threads, torch {m['torch']}, {m['date']}"
    )
    return "\n".join(lines)


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
