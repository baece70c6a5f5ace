"""What a backbone (a featurizer) is told about the batch it is called on
(src/loftup/featurizers/sizes.py's checks, run by every featurizer's forward): a NaN image."""

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
