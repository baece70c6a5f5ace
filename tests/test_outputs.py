"""loftup.outputs: what ``loftup upsample`` writes besides the features (the ``--viz`` picture)."""

from __future__ import annotations

import io
import tracemalloc

import torch
from PIL import Image


def test_the_picture_of_a_large_photo_draws_its_input_from_every_kth_pixel():
    """The input panel was drawn whole: a 36-megapixel photo took 18 s and 3 GB (seven times
    its own size) to draw into a panel about 400 pixels wide; it is drawn from every k-th row
    and column, as the features are, in the memory of the panel."""
    from loftup.outputs import comparison_png

    image = torch.rand(3, 3600, 2400)  # 104 MB
    lr, hr = torch.randn(8, 4, 3), torch.randn(8, 30, 20)
    comparison_png(image[:, :30, :20], lr, hr)  # matplotlib imported: not measured
    tracemalloc.start()
    try:
        png = comparison_png(image, lr, hr)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # drawn whole, matplotlib's copies took six times the image; now less than it
    assert peak < image.numel() * image.element_size(), f"{peak / 1e6:.0f} MB"
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.width == 1200  # the panels as they were
