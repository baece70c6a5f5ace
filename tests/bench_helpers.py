"""Helpers of the ``loftup bench`` tests (tests/test_bench_*.py): the stand-in of the paper's
code, a tiny bench's arguments, and a PNG file's size."""

from __future__ import annotations

from processes import REPO

#: the stand-in of the paper's code that the benchmarks time as the reference
STANDIN = REPO / "benchmarks" / "reference_impl.py"

#: ``loftup bench`` at its smallest: one size of 16 pixels, one round, no peak memory
TINY_BENCH = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1"]
TINY_BENCH += ["--warmup", "0", "--no-peak"]


def png_size(path) -> tuple[int, int]:
    """(width, height) of a whole PNG file (its signature, IHDR and IEND chunks checked)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"  # written to the end, not cut off
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
