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


def test_backbone_weights_written_again_are_read_anew(tmp_path):
    """upsample(model=PATH, backbone_weights=FOLDER) kept its pipeline for the next call with
    the same arguments whatever FOLDER held then: a backbone fine-tuned again into it (its
    save_pretrained) ran with the weights of the first call, silently. Its files are told
    apart as the upsampler's are, and the next call reads them anew."""
    from transformers import Dinov2Config, Dinov2Model

    def backbone_weights(seed: int) -> None:
        torch.manual_seed(seed)
        config = Dinov2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=28
        )
        Dinov2Model(config).save_pretrained(tmp_path / "tuned")

    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    image = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = {"model": tmp_path / "up", "backbone_weights": tmp_path / "tuned", "backbone_size": 28}
    backbone_weights(0)
    first = loftup.upsample(image, **kw)
    backbone_weights(1)
    again = loftup.upsample(image, **kw)
    loftup.clear_cache()
    assert not torch.equal(again, first) and torch.equal(again, loftup.upsample(image, **kw))
