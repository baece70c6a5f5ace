"""What a backbone trained with other constants than ImageNet's (CLIP, SigLIP) is given:
the ImageNet-normalised image as it is (the paper's code) or converted to its own
(``input_norm="own"``, in float32), and what an upsampler's folder records of it.
"""

from __future__ import annotations

import json

import pytest
import torch

from loftup import get_featurizer
from loftup.featurizers import imagenet_normalize
from test_featurizers import TEXT, VISION, _images, _native, _save

pytestmark = pytest.mark.usefixtures("hf_offline")


def test_input_norm_changes_only_backbones_trained_with_other_constants(tmp_path):
    """SigLIP given the ImageNet-normalised image as it is (the paper's code) and converted to
    its own 0.5/0.5 give other features, and say so in their cache keys; DINOv2 gives the same
    features either way and needs no key. Anything else is refused, naming the choices."""
    from transformers import SiglipConfig, SiglipModel

    from loftup.errors import UsageError

    cfg = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=64),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(SiglipModel(cfg), tmp_path / "m")
    images = imagenet_normalize(_images(32, 32))
    feats, keys = {}, {}
    for norm in ("imagenet", "own"):
        siglip = get_featurizer("siglip_vitb16", weights=folder, input_norm=norm)
        dino = get_featurizer("dinov2_tiny", input_norm=norm)
        with torch.no_grad():
            feats[norm] = siglip(images), dino(images)
        keys[norm] = siglip.input_norm_key(), dino.input_norm_key()
    assert (feats["imagenet"][0] - feats["own"][0]).abs().max() > 1e-2
    assert torch.equal(feats["imagenet"][1], feats["own"][1])
    assert keys == {"imagenet": ("imagenet", None), "own": ("own", None)}
    with pytest.raises(UsageError, match=r"input_norm must be one of imagenet, own .*'clip'"):
        get_featurizer("dinov2_tiny", input_norm="clip")
    from loftup.featurizers import INPUT_NORMS
    from loftup.train.config import CHOICES

    assert CHOICES["backbone_norm"] == tuple(INPUT_NORMS)  # training offers the same choices


def test_a_half_precision_backbone_converts_its_input_in_float32(tmp_path):
    """With input_norm="own", a bfloat16 backbone converted the ImageNet-normalised input to
    its own constants in bfloat16 (four rounded steps: up to 7 times the error of rounding the
    converted input once, and a third more error in the features). It converts in float32
    and rounds once, whatever the images' precision: the same features as the converted input
    given as it is."""
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=32),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(SiglipModel(cfg), tmp_path / "m")
    own = get_featurizer("siglip_vitb16", weights=folder, input_norm="own").to(torch.bfloat16)
    as_is = get_featurizer("siglip_vitb16", weights=folder).to(torch.bfloat16)
    images01 = _images(32, 32)
    native = _native(images01, (0.5,) * 3, (0.5,) * 3)  # in float32
    for images in (imagenet_normalize(images01), imagenet_normalize(images01).bfloat16()):
        with torch.no_grad():
            got = own(images)
            want = as_is(own.to_native(images.float()).to(images.dtype))
        assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    torch.testing.assert_close(own.to_native(imagenet_normalize(images01)), native)
    assert own.to_native(imagenet_normalize(images01).bfloat16()).dtype == torch.bfloat16


def test_an_upsampler_records_what_its_backbone_is_given(tmp_path):
    """A save_pretrained folder keeps backbone_norm, load_pipeline builds the backbone with it
    unless told otherwise ("imagenet", the paper's, without a record), and a bad record is
    refused by name."""
    from transformers import SiglipConfig, SiglipModel

    from loftup import BackboneMismatchWarning, CheckpointError, LoftUp, load_upsampler
    from loftup.api import load_pipeline

    cfg = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=64),
        text_config=dict(**TEXT, vocab_size=99),
    )
    backbone = _save(SiglipModel(cfg), tmp_path / "siglip")
    up = LoftUp(32)
    kw = {"backbone": "siglip_vitb16", "backbone_weights": backbone}  # a 32-d model of it
    up.save_pretrained(tmp_path / "up", backbone_norm="own", **kw)
    assert load_upsampler(tmp_path / "up").backbone_norm == "own"
    pipeline = load_pipeline(tmp_path / "up", backbone_weights=backbone)
    assert pipeline.featurizer.input_norm == "own"
    # the other one runs, told: the features differ from those it was trained on
    with pytest.warns(BackboneMismatchWarning) as said:
        told = load_pipeline(tmp_path / "up", backbone_weights=backbone, backbone_norm="imagenet")
    assert told.featurizer.input_norm == "imagenet"
    assert len(said) == 1 and str(said[0].message).startswith(
        f"backbone mismatch: the upsampler {tmp_path / 'up'} was trained on siglip_vitb16's "
        "features of images normalised as 'own', not 'imagenet'"
    )
    LoftUp(32).save_pretrained(tmp_path / "plain", **kw)
    assert load_pipeline(tmp_path / "plain", backbone_weights=backbone).featurizer.input_norm == (
        "imagenet"
    )
    record = json.loads((tmp_path / "up" / "config.json").read_text())
    (tmp_path / "up" / "config.json").write_text(json.dumps({**record, "backbone_norm": "clip"}))
    with pytest.raises(CheckpointError, match='"backbone_norm" must be one of imagenet, own or'):
        load_upsampler(tmp_path / "up")
