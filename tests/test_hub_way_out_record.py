"""The way out's line keeps what the file records beside the weights: the backbone a LoftUp
was trained on and its input normalisation (a module's attributes, ``loftup train``'s keys),
which a reloaded file lost (the pipeline then fed CLIP's images ImageNet-normalised, silently)."""

from __future__ import annotations

import argparse

import pytest
import torch

from loftup import LoftUp, load_upsampler
from test_hub_way_out import same_upsampler, told


def _whole(m: LoftUp) -> LoftUp:
    m.backbone, m.backbone_norm = "clip_vitb16", "own"
    return m


def _train_layout(m: LoftUp) -> dict:
    return {
        "model": m.state_dict(),
        "model_config": m.config.to_dict(),
        "backbone": "clip_vitb16",
        "backbone_norm": "own",
        "history": {"loss": [argparse.Namespace(value=0.5)]},  # the one pickled object
    }


@pytest.mark.parametrize("saved", [_whole, _train_layout], ids=["module", "train-layout"])
def test_the_line_told_keeps_the_backbone_record(tmp_path, saved):
    """torch.save(model) was told its state dict and config alone; loftup train's layout its
    "model" and "model_config": the file written loaded with no backbone recorded, and the
    pipeline fell back to ImageNet normalisation. Both are kept, where loftup's loaders read them."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2, attention_window=3).eval()
    torch.save(saved(upsampler), tmp_path / "up.pt")
    _, line, out = told(tmp_path / "up.pt")
    exec(line, {"torch": torch})
    loaded = load_upsampler(out)
    assert (loaded.backbone, loaded.backbone_norm) == ("clip_vitb16", "own")
    same_upsampler(loaded, upsampler)
