"""Helpers of the ``loftup bench`` tests (tests/test_bench_*.py): the stand-in of the paper's
code, a tiny bench's arguments, a PNG file's size, and a PNG another program wrote (or
loftup, by its mark: loftup.figure_mark)."""

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


def marked_png(path, software: str | None) -> None:
    """A 1 x 1 PNG at ``path`` whose Software text chunk is ``software`` (None: none)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if software is not None:
        info.add_text("Software", software)
    Image.new("RGB", (1, 1)).save(path, format="PNG", pnginfo=info)
