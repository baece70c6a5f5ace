"""What loftup.upsample keeps between calls, and loftup.clear_cache, which releases it."""

from __future__ import annotations

import gc
import weakref

import torch

import loftup
from loftup.model import LoftUp


def test_clear_cache_releases_the_models_upsample_keeps(tmp_path):
    """upsample(model=PATH) keeps its pipeline (the upsampler loaded from PATH, and a backbone
    module passed with it) for the next call, in a module-level cache: deleting the caller's
    objects freed nothing, and no public call released them."""
    folder = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    image = torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(0))
    backbone = loftup.get_featurizer("dinov2_tiny")
    first = loftup.upsample(image, model=folder, backbone=backbone, backbone_size=28)
    kept = weakref.ref(backbone)
    del backbone
    gc.collect()
    assert kept() is not None and _loaded_from(folder) == 1  # kept for the next call
    assert "clear_cache" in loftup.__all__ and loftup.clear_cache is loftup.api.clear_cache
    loftup.clear_cache()
    gc.collect()
    assert kept() is None and _loaded_from(folder) == 0
    again = loftup.upsample(image, model=folder, backbone_size=28)  # loaded anew
    assert torch.equal(again, first)


def _loaded_from(folder) -> int:
    """How many LoftUps loaded from ``folder`` are alive."""
    return sum(
        type(o) is LoftUp and o.source == str(folder)  # type(): no proxy's __class__ asked
        for o in gc.get_objects()
    )
