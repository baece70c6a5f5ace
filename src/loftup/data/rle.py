"""COCO run-length encoded masks (SA-1B's ``segmentation``), decoded with pycocotools after a
check that their runs cover the mask exactly.

pycocotools fills a mask whose runs fall short of its ``size`` with whatever its memory held
(a damaged or mis-sized annotation read as a different random mask each time, never an
error), so the run lengths are read here first: from the list of an uncompressed RLE, and from
the string of a compressed one (COCO's form: each run a little-endian number in 5-bit groups,
the characters ``0`` to ``o``, bit 0x20 set where another group follows, bit 0x10 of the last
the sign, and from the fourth run on the difference from the run two before).
"""

from __future__ import annotations

import numpy as np

#: The largest run pycocotools stores (a 32-bit unsigned count).
MAX_RUN = 2**32 - 1

#: The most 5-bit groups a number of a compressed string may have: 7 hold 35 bits, any run up
#: to :data:`MAX_RUN`. A negative one of 7 is refused too: pycocotools reads the groups into a
#: 32-bit int and shifts the sign by 35 (a shift by 3 on x86), so it reads another number
#: (a positive one of 7, a run or difference of 2**29 pixels or more, it reads right: masks
#: of an image that large, read where max_image_pixels allows it).
MAX_GROUPS = 7


def compressed_runs(counts: bytes) -> np.ndarray:
    """The run lengths (int64) that the compressed COCO RLE string ``counts`` stands for, as
    pycocotools reads them; a ValueError says what is wrong with a string it would misread
    (a character outside the alphabet, a string cut inside a number, a number of more than
    :data:`MAX_GROUPS` groups or a negative one of that many, a negative or too long run)."""
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        bad = counts[int(np.flatnonzero((c < 0) | (c > 63))[0])]
        raise ValueError(f"its counts hold {chr(bad)!r}, not a character of COCO's RLE strings")
    ends = np.flatnonzero((c & 0x20) == 0)  # the last group of each number
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise ValueError("its counts end inside a number (cut short)")
    starts = np.concatenate([[0], ends[:-1] + 1])
    groups = ends - starts + 1
    if groups.max() > MAX_GROUPS:
        raise ValueError(
            f"its counts hold a number of {groups.max()} groups, too large a run (at most "
            f"{MAX_GROUPS}: a damaged string)"
        )
    negative = (c[ends] & 0x10) != 0
    if (negative & (groups == MAX_GROUPS)).any():
        raise ValueError(
            f"its counts hold a negative number of {MAX_GROUPS} groups, which pycocotools "
            "misreads (a damaged string)"
        )
    place = np.arange(c.size) - np.repeat(starts, groups)
    x = np.add.reduceat((c & 0x1F) << (5 * place), starts)
    x[negative] |= np.int64(-1) << (5 * groups[negative])
    runs = x.copy()  # from the fourth on, each is the difference from the run two before
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    return runs


def decode_rle(rle: dict) -> np.ndarray:
    """The bool (H, W) mask of the COCO RLE ``rle`` (``{"size": [H, W], "counts": ...}``, its
    counts a compressed string or an uncompressed list of runs), or a ValueError (a TypeError
    where a part is of the wrong type) saying why it is not one: runs that are not whole
    numbers >= 0, or that do not add up to H x W pixels."""
    from pycocotools import mask as mask_utils

    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE (COCO's other form)
        if not all(type(v) is int for v in counts):  # type(): a bool is an int
            raise TypeError("its counts are not a list of whole numbers")
        runs = np.array(counts, dtype=object)
    elif isinstance(counts, (str, bytes)):
        counts = counts.encode("ascii") if isinstance(counts, str) else counts
        runs = compressed_runs(counts)
    else:
        raise TypeError(f"its counts are {type(counts).__name__}, not a string or a list of runs")
    if len(runs) and not (0 <= runs.min() and runs.max() <= MAX_RUN):
        raise ValueError("its counts hold a negative or too long run")
    total = int(runs.sum()) if len(runs) else 0
    if total != height * width:
        raise ValueError(
            f"its runs cover {total} pixels, not the {height}x{width} = {height * width} of its "
            "size"
        )
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, height, width)
    else:
        rle = {"size": [height, width], "counts": counts}
    return mask_utils.decode(rle).astype(bool)
