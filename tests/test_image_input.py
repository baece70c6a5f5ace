"""Images in memory that :func:`loftup.image_input.to_tensor` cannot read: a one-line
ImageInputError naming the fix (a LoftUpError, a ValueError and a TypeError)."""

import numpy as np
import pytest
import torch

from loftup.image_input import ImageInputError, to_tensor


@pytest.mark.parametrize(
    "bad, said",
    [
        (np.empty((4, 5, 3), dtype=object), r"got object; pass 0-255 values as uint8"),
        (np.zeros((4, 5, 3), dtype="U1"), r"got <U1; pass 0-255 values as uint8"),
        (torch.zeros(4, 5, 6), r"got shape \(4, 5, 6\); drop the alpha channel \(image\[:3\]\)"),
    ],
)
def test_pixels_no_image_has_are_named_with_the_fix(bad, said):
    """An object array (np.array(..., dtype=object) of images, a pandas column) was
    torch.from_numpy's TypeError ("can't convert np.ndarray of type numpy.object_"), and an
    RGBA tensor, channels first, was told to 'pass RGB or grayscale pixels' without the way."""
    with pytest.raises(ImageInputError, match=said) as e:
        to_tensor(bad)
    assert isinstance(e.value, TypeError) and "\n" not in str(e.value)
