"""What a backbone (a featurizer) is told about the batch it is called on
(src/loftup/featurizers/sizes.py's checks, run by every featurizer's forward): a NaN image, an
empty batch, integer pixels, images on another device than the backbone."""

from __future__ import annotations

import pytest
import torch

from loftup import get_featurizer
from loftup.errors import UsageError

pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.mark.parametrize("name", ["dinov2_tiny", "scenes_vit_p8"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_image_is_refused_by_the_backbone_naming_which(name, bad):
    """One NaN pixel made every feature of its image NaN, without a word (the upsampler then
    blamed the features, with a fix about the backbone's precision). The image is named by
    its place in the batch, also at a size the backbone resizes (30 x 50)."""
    feat = get_featurizer(name)
    images = feat.normalize(torch.rand(3, 3, 30, 50, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert feat(images).isfinite().all()
    images[1, 2, 29, 0] = bad
    with pytest.raises(UsageError) as told:
        feat(images)
    msg = str(told.value)
    assert msg.startswith("the images given to the backbone contain NaN or Inf values (at batch ")
    assert "at batch index 1 of 3;" in msg and msg.endswith("NaN: fill them)")


@pytest.mark.parametrize("name", ["dinov2_tiny", "scenes_vit_p8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_empty_batch_gives_empty_features_of_the_grid(name, dtype):
    """Batch 0 (the last slice of a loop, say) failed inside transformers' attention
    ("cannot reshape tensor of 0 elements"); it gives (0, dim, h, w), the grid and precision a
    batch of one gives, as the upsampler gives (0, C, H, W)."""
    feat = get_featurizer(name).to(dtype)
    with torch.no_grad():
        one = feat(torch.zeros(1, 3, 30, 50))
        empty = feat(torch.zeros(0, 3, 30, 50))
    assert one.shape[0] == 1 and empty.shape == (0, *one.shape[1:])
    assert empty.dtype == one.dtype == dtype


@pytest.mark.parametrize("name", ["dinov2_tiny", "scenes_vit_p8"])
def test_integer_pixels_are_refused_by_a_backbone_and_its_normalize(name):
    """uint8 pixels (0-255) given to a featurizer were cast to float and ran: features of an
    image 255 times too bright, without a word; normalize made them inf and NaN (its constants
    cast to uint8 are 0). Both now name the fix, and the fixed call runs."""
    from loftup.errors import UsageError

    feat = get_featurizer(name)
    pixels = torch.randint(0, 256, (1, 3, 32, 48), dtype=torch.uint8)
    with pytest.raises(UsageError) as e:
        feat(pixels)
    msg = str(e.value)
    assert msg.startswith("a backbone takes floating-point images, got uint8 (1, 3, 32, 48)")
    assert msg.endswith("(uint8 pixels: images.float() / 255)") and "\n" not in msg
    with pytest.raises(UsageError, match=r"got uint8; convert uint8 pixels with images.float"):
        feat.normalize(pixels)
    with torch.no_grad():
        assert torch.isfinite(feat(feat.normalize(pixels.float() / 255))).all()


@pytest.mark.parametrize("name", ["dinov2_tiny", "scenes_vit_p8"])
def test_images_on_another_device_than_the_backbone_are_told_to_move(name):
    """Images on the CPU given to a backbone on a GPU (or the other way round) failed inside
    its first layer with torch's RuntimeError; the upsampler's forward names the fix, and so
    does the backbone's now. ("meta" stands in for a GPU.)"""
    from loftup.errors import UsageError

    feat = get_featurizer(name).to("meta")
    with pytest.raises(UsageError) as e:
        feat(torch.zeros(1, 3, 32, 48))
    assert str(e.value) == (
        "the images are on cpu, the backbone on meta; move them there with "
        "images.to('meta') (or the backbone with .to('cpu'))"
    )
    assert feat(torch.zeros(1, 3, 32, 48, device="meta")).device.type == "meta"
