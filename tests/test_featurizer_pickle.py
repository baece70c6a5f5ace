"""Pipelines and backbones pickle: what a DataLoader worker started with spawn, or
torch.multiprocessing, is given of them runs as the original does, bit for bit."""

from __future__ import annotations

import pickle

import pytest
import torch

import loftup
from test_featurizers import TEXT, VISION, _images, _save

pytestmark = pytest.mark.usefixtures("hf_offline")


def _tiny_clip(tmp_path) -> loftup.Featurizer:
    """clip_vitb16's architecture at 24-d (its weights a tiny CLIPModel's folder)."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=64, projection_dim=24),
        text_config=dict(**TEXT, vocab_size=99),
        projection_dim=24,
    )
    return loftup.get_featurizer("clip_vitb16", weights=_save(CLIPModel(cfg), tmp_path / "m"))


@pytest.mark.parametrize("which", ["dinov2_tiny", "clip"])
def test_a_pipeline_unpickled_gives_the_features_of_the_original(tmp_path, which):
    """A pipeline of dinov2_tiny (or of CLIP) pickled, but its copy was not unpickled:
    "'Dinov2Embeddings' object has no attribute 'interpolate'" (the positional embeddings'
    interpolation was a method of a local function, pickled as an attribute lookup that
    nothing answers). The image is of a grid the embeddings are interpolated to, which the
    copy does as the original does (transformers' own interpolation gives other values)."""
    backbone = loftup.get_featurizer("dinov2_tiny") if which != "clip" else _tiny_clip(tmp_path)
    torch.manual_seed(0)
    pipe = loftup.load_pipeline(
        loftup.LoftUp(dim=backbone.dim), backbone=backbone, backbone_size=None, device="cpu"
    )
    images = _images(70, 98, n=1)  # 5x7 patches of 14, 4x6 of 16: not the embeddings' grid
    copy = pickle.loads(pickle.dumps(pipe))
    assert copy.featurizer is not pipe.featurizer
    for got, want in zip(copy(images, 32), pipe(images, 32)):
        assert torch.equal(got, want)
