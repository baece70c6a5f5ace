"""Measurements: ``loftup bench`` and ``benchmarks/gpu.sh`` are thin wrappers around these.

- :mod:`.core`: machine description, timing (alternating), peak memory, FLOP count, matmul peak;
- :mod:`.forward`: one forward per size and precision next to bilinear/bicubic (and the paper's
  implementation when a stand-in is given), with :mod:`.forward_size` (one size measured),
  :mod:`.precision` (the precisions and the deviation from float32), :mod:`.settings` (its
  arguments checked), :mod:`.reference` (the paper's stand-in loaded) and :mod:`.table` (the
  table as text);
- :mod:`.scale`: tiles and megapixels, streaming to disk, batches and video, torch.compile;
- :mod:`.gpu`: what only a GPU run measures (parity with the CPU, kernel choices), with
  :mod:`.large` (outputs larger than the GPU's memory), :mod:`.backbones` (backbones end to
  end) and :mod:`.extraction` (``loftup upsample``'s loop);
- :mod:`.suite`: the named suites (``cpu``, ``gpu``, ``smoke``) that write one JSON report, with
  :mod:`.parts` (a run in parts joined), :mod:`.summary` (its text) and :mod:`.targets` (the
  GPU issue's targets judged).
"""

from __future__ import annotations

from .core import flops_per_pixel, machine_info, matmul_peak, time_alternating, time_call
from .forward import bench_forward
from .memory import PeakMemory, rss_bytes
from .reference import load_reference_class
from .table import format_table

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
