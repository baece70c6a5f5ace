"""Helpers of the ``loftup upsample`` tests (tests/test_upsample_*.py): an output folder's
files, a small picture of noise, and the command run small."""

from __future__ import annotations

import numpy as np
from PIL import Image

from loftup.cli import main
from loftup.extract import OPTIONS_NAME


def outputs(folder) -> list[str]:
    """The names of the files in an output folder but its upsample.json."""
    return sorted(p.name for p in folder.iterdir() if p.name != OPTIONS_NAME)


def noise_picture(path) -> None:
    """A small image of noise (48x40) at ``path``."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def upsample_small(inputs, upsampler, out, *extra) -> int:
    """``loftup upsample`` of ``inputs`` into ``out``, small (backbone at 28, outputs at 32)."""
    args = ["-m", str(upsampler), "-o", str(out), "--backbone-size", "28", "--size", "32"]
    return main(["upsample", *map(str, inputs), *args, *extra])
