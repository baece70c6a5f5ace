"""What a backbone (a featurizer) is told about the batch it is called on
(src/loftup/featurizers/sizes.py's checks, run by every featurizer's forward): a NaN image, an
empty batch."""

from __future__ import annotations

import pytest
import torch

from loftup import get_featurizer
from loftup.errors import UsageError


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
