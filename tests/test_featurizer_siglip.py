"""SigLIP and SigLIP 2 (fixed resolution and NaFlex) loaded from save_pretrained folders equal
transformers' own output, and a folder of one of the three checkpoints is refused under another's
name, naming the one that reads it.
"""

from __future__ import annotations

import json

import pytest
import torch

from loftup import get_featurizer
from loftup.errors import CheckpointError
from loftup.featurizers import imagenet_normalize
from model_helpers import also_in_bfloat16
from test_featurizers import TEXT, VISION, _backbone_input, _grid, _images, _save

pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.mark.parametrize("name, norm", [("siglip_vitb16", "imagenet"), ("siglip2_vitb16", "own")])
def test_siglip_fixed_resolution(tmp_path, name, norm):
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    cfg = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=64),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(SiglipModel(cfg), tmp_path / "m")  # google/siglip(2)-base-patch16-224 layout
    feat = get_featurizer(name, weights=folder, input_norm=norm)
    images = _images(48, 80)
    with torch.no_grad():
        got = feat(imagenet_normalize(images))
        model = SiglipModel.from_pretrained(folder).eval().vision_model
        native = _backbone_input(images, norm, (0.5,) * 3, (0.5,) * 3)
        want = model(pixel_values=native, interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(got, _grid(want, 3, 5), atol=1e-5, rtol=1e-5)
    also_in_bfloat16(feat, imagenet_normalize(images), got)


def test_a_siglip_folder_of_the_other_generation_is_refused(tmp_path):
    """google/siglip-base-patch16-224 and google/siglip2-base-patch16-224 are both stored as
    SiglipModel (model_type "siglip", the same vision architecture and mean = std = 0.5): one
    loaded as the other gave features its upsampler was not trained on, without a word. The
    text tower's vocabulary tells them apart (SigLIP 32000 tokens, SigLIP 2 Gemma's 256000),
    or the tokenizer's class; a folder that records neither is taken as named."""
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=32),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(SiglipModel(cfg), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    images = imagenet_normalize(_images(32, 32, n=1))
    with torch.no_grad():
        want = get_featurizer("siglip_vitb16", weights=folder)(images)
    for vocab, right, wrong, said in (
        (32000, "siglip_vitb16", "siglip2_vitb16", "holds SigLIP weights"),
        (256000, "siglip2_vitb16", "siglip_vitb16", "holds SigLIP 2 weights"),
    ):
        config["text_config"]["vocab_size"] = vocab  # as the hub's config.json says
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError) as e:
            get_featurizer(wrong, weights=folder)
        msg = str(e.value)
        assert f"{said} (its text tower's vocabulary has {vocab} tokens)" in msg
        assert f"pass it as backbone {right}" in msg and "\n" not in msg
        with torch.no_grad():  # the right name loads the same vision tower
            assert torch.equal(get_featurizer(right, weights=folder)(images), want)
    del config["text_config"]["vocab_size"]  # left out: transformers' default, SigLIP's 32000
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="holds SigLIP weights"):
        get_featurizer("siglip2_vitb16", weights=folder)
    del config["text_config"]  # no text tower recorded: the tokenizer's class says
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer"}))
    with pytest.raises(CheckpointError, match="tokenizer_config.json names GemmaTokenizer"):
        get_featurizer("siglip_vitb16", weights=folder)
    (folder / "tokenizer_config.json").unlink()  # nothing says: taken as named
    assert get_featurizer("siglip2_vitb16", weights=folder).dim == 32


def test_siglip2_naflex(tmp_path):
    from transformers import Siglip2Config, Siglip2Model, Siglip2VisionModel

    try:  # the processor's own patch layout (numpy): transformers 5, then 4
        from transformers.models.siglip2.image_processing_pil_siglip2 import (
            convert_image_to_patches,
        )
    except ImportError:
        from transformers.models.siglip2.image_processing_siglip2 import (
            convert_image_to_patches as patches_of_hwc,
        )

        def convert_image_to_patches(image, patch_size):  # transformers 4's takes (H, W, C)
            return patches_of_hwc(image.transpose(1, 2, 0), patch_size)

    torch.manual_seed(0)
    cfg = Siglip2Config(
        vision_config=dict(**VISION, patch_size=16, num_patches=16),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(Siglip2Model(cfg), tmp_path / "m")
    feat = get_featurizer("siglip2_vitb16_naflex", weights=folder)  # the paper's input
    images = _images(48, 80)
    native = imagenet_normalize(images)
    patches = torch.stack(
        [torch.from_numpy(convert_image_to_patches(im.numpy(), 16)) for im in native]
    )
    with torch.no_grad():
        got = feat(imagenet_normalize(images))
        tower = Siglip2VisionModel.from_pretrained(folder).eval()  # of the saved Siglip2Model
        want = tower(
            pixel_values=patches,
            pixel_attention_mask=torch.ones(2, 15, dtype=torch.long),
            spatial_shapes=torch.tensor([[3, 5], [3, 5]]),
        )
    torch.testing.assert_close(got, _grid(want.last_hidden_state, 3, 5), atol=1e-5, rtol=1e-5)
    also_in_bfloat16(feat, imagenet_normalize(images), got)


def test_a_naflex_folder_is_not_taken_for_the_fixed_resolution_siglip2(tmp_path):
    """google/siglip2-base-patch16-naflex (model_type siglip2) was accepted as siglip2_vitb16,
    whose official weights, the features loftup_siglip2 was trained on, are the fixed-resolution
    google/siglip2-base-patch16-224: another checkpoint, other features, without a word. Each is
    refused under the other's name, which the message gives with the hub id that fits."""
    from transformers import (
        Siglip2Config,
        Siglip2Model,
        Siglip2VisionConfig,
        Siglip2VisionModel,
        SiglipConfig,
        SiglipModel,
    )

    naflex = dict(**VISION, patch_size=16, num_patches=16)
    folders = {
        "full": _save(
            Siglip2Model(Siglip2Config(vision_config=naflex, text_config=TEXT)), tmp_path / "full"
        ),
        "tower": _save(Siglip2VisionModel(Siglip2VisionConfig(**naflex)), tmp_path / "tower"),
    }
    for name in ("siglip2_vitb16", "siglip_vitb16"):
        for folder in folders.values():
            with pytest.raises(CheckpointError) as e:
                get_featurizer(name, weights=folder)
            msg = str(e.value)
            assert msg.startswith(f"{folder} holds a SigLIP 2 NaFlex model (model_type 'siglip2")
            assert f"backbone {name} is the fixed-resolution google/siglip" in msg
            assert "as backbone siglip2_vitb16_naflex" in msg and "\n" not in msg
            if name == "siglip2_vitb16":  # the checkpoint its upsampler was trained on
                assert "google/siglip2-base-patch16-224, the features loftup_siglip2 was " in msg
    for folder in folders.values():  # the NaFlex name takes them
        assert get_featurizer("siglip2_vitb16_naflex", weights=folder).dim == 32
    fixed = SiglipConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=32),
        text_config=dict(**TEXT, vocab_size=99),
    )
    folder = _save(SiglipModel(fixed), tmp_path / "fixed")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["vocab_size"] = 256000  # SigLIP 2's, as the hub's config.json says
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("siglip2_vitb16_naflex", weights=folder)
    assert str(e.value) == (
        f"{folder} holds a fixed-resolution SigLIP model (model_type 'siglip'), but backbone "
        "siglip2_vitb16_naflex is SigLIP 2 NaFlex (google/siglip2-base-patch16-naflex): pass it "
        "as backbone siglip2_vitb16, or the folder of google/siglip2-base-patch16-naflex as "
        "siglip2_vitb16_naflex"
    )
