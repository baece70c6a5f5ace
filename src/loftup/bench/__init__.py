"""Measurements: ``loftup bench`` and ``benchmarks/gpu.sh`` are thin wrappers around these.

- :mod:`.core`: machine description, timing (alternating), peak memory, FLOP count, matmul peak;
- :mod:`.forward`: one forward per size and precision next to bilinear/bicubic (and the paper's
  implementation when a stand-in is given);
- :mod:`.scale`: tiles and megapixels, streaming to disk, batches and video, torch.compile;
- :mod:`.gpu`: what only a GPU run measures (parity with the CPU, kernel choices, memory caps,
  backbones end to end);
- :mod:`.suite`: the named suites (``cpu``, ``gpu``, ``smoke``) that write one JSON report.
"""

from __future__ import annotations

from .core import (
    PeakMemory,
    flops_per_pixel,
    machine_info,
    matmul_peak,
    rss_bytes,
    time_alternating,
    time_call,
)
from .forward import bench_forward, format_table, load_reference_class

__all__ = [
    "PeakMemory",
    "bench_forward",
    "flops_per_pixel",
    "format_table",
    "load_reference_class",
    "machine_info",
    "matmul_peak",
    "rss_bytes",
    "time_alternating",
    "time_call",
]
