"""What a forward's inputs are told when they are wrong (src/loftup/input_checks.py): the error
names the input at fault and the fix for that input."""

from __future__ import annotations

import pytest
import torch

from loftup import LoftUp
from loftup.input_checks import ForwardInputError


@pytest.fixture(scope="module")
def model():
    return LoftUp(dim=32, depth=1, num_heads=4).eval()


def test_a_nan_pixel_is_blamed_on_the_image_not_on_the_backbone(model):
    """One NaN pixel makes every backbone feature of the image NaN; both inputs were checked,
    features first, so the error blamed the backbone and told the user to change its
    precision, never naming the image."""
    image = torch.randn(1, 3, 28, 28)
    image[0, 0, 3, 3] = float("nan")
    lr = torch.full((1, 32, 2, 2), float("nan"))  # what dinov2_tiny gives for that image
    with pytest.raises(ForwardInputError) as told:
        model(lr, image)
    assert str(told.value).startswith("image contains NaN or Inf values; check how it was read")
    with pytest.raises(ForwardInputError, match="^lr_feats contains NaN or Inf values; check"):
        model(lr, image.nan_to_num())  # a finite image: the features are at fault
