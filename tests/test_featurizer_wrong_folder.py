"""A folder of another checkpoint than the backbone named (another DINOv3 MLP, another width,
DINOv2 with registers for one without, another training resolution) would give features the
paired upsampler was not trained on: refused in one line, naming the backbone that reads it.
"""

from __future__ import annotations

import pytest
import torch

from loftup import get_featurizer
from loftup.errors import CheckpointError
from loftup.featurizers import imagenet_normalize, resolve
from test_featurizers import TEXT, VISION, _grid, _images, _save

pytestmark = pytest.mark.usefixtures("hf_offline")


#: DINOv3 ViT-S/16 and ViT-S+/16 as their hub config.json describes them (transformers'
#: conversion): the same numbers but the MLP, plain (GELU) or gated (SwiGLU, SiLU)
DINOV3_S = dict(
    hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6
)
DINOV3_S.update(num_register_tokens=4, patch_size=16)
DINOV3_S_PLUS = dict(DINOV3_S, use_gated_mlp=True, hidden_act="silu")


def test_dinov3_vits16plus_is_told_from_vits16_by_its_gated_mlp(tmp_path):
    """A ViT-S+/16 folder was loaded as dinov3_vits16 without a word (as wide, as deep, the
    same intermediate_size): each name now loads its own MLP's folder and refuses the other's,
    naming the backbone that reads it."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    tiny = dict(VISION, patch_size=16, num_register_tokens=4)
    torch.manual_seed(0)
    plus = _save(
        DINOv3ViTModel(DINOv3ViTConfig(**tiny, use_gated_mlp=True, hidden_act="silu")),
        tmp_path / "p",
    )
    plain = _save(DINOv3ViTModel(DINOv3ViTConfig(**tiny)), tmp_path / "s")
    images = imagenet_normalize(_images(32, 48, n=1))
    for folder, name in ((plus, "dinov3_vits16plus"), (plain, "dinov3_vits16")):
        feat = get_featurizer(name, weights=folder)
        assert feat.name == name and feat.dim == 32 and feat.patch_size == 16
        with torch.no_grad():
            got = feat(images)
            model = DINOv3ViTModel.from_pretrained(folder).eval()
            want = model(pixel_values=images).last_hidden_state
        assert torch.equal(got, _grid(want[:, 5:], 2, 3))
    for folder, name, fits in (
        (plus, "dinov3_vits16", "dinov3_vits16plus"),
        (plain, "dinov3_vits16plus", "dinov3_vits16"),
    ):
        with pytest.raises(CheckpointError) as e:
            get_featurizer(name, weights=folder)
        msg = str(e.value)
        assert f"pass it as backbone {fits}, or the folder of {name}" in msg and "\n" not in msg
    # the real configs (no weights needed: told from config.json before any is read)
    for config, name, fits in (
        (DINOV3_S_PLUS, "dinov3_vits16", "dinov3_vits16plus"),
        (DINOV3_S_PLUS, "dinov3_vitb16", "dinov3_vits16plus"),
        (DINOV3_S, "dinov3_vits16plus", "dinov3_vits16"),
        (DINOV3_S, "dinov3_vitb16", "dinov3_vits16"),  # not "dinov3_vits16, dinov3_vits16plus"
        (
            dict(DINOV3_S, hidden_size=768, num_attention_heads=12),
            "dinov3_vits16plus",
            "dinov3_vitb16",
        ),  # fmt: skip
    ):
        DINOv3ViTConfig(**config).save_pretrained(tmp_path / "real")
        with pytest.raises(CheckpointError, match=f"pass it as backbone {fits}, or the folder"):
            get_featurizer(name, weights=tmp_path / "real")
    # released sizes loftup registers no name for loaded as a registered one (ViT-L/16 as
    # dinov3_vits16, H+/16, gated, as dinov3_vits16plus): refused by name
    for width, gated, label in ((1024, False, "ViT-L/16"), (1280, True, "ViT-H+/16")):
        DINOv3ViTConfig(**dict(DINOV3_S, hidden_size=width, use_gated_mlp=gated)).save_pretrained(
            tmp_path / "big"
        )
        for name in ("dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16"):
            with pytest.raises(CheckpointError) as e:
                get_featurizer(name, weights=tmp_path / "big")
            assert f"{width} wide (its config.json's hidden_size: DINOv3 {label})" in str(e.value)
            assert str(e.value).endswith(f"pass the folder of {name}")
    spec = resolve("dinov3_vits16plus")
    assert (spec.dim, spec.patch_size, spec.gated) == (384, 16, True)
    assert spec.default_weights == "facebook/dinov3-vits16plus-pretrain-lvd1689m"


def _of_image_size(kind: str, image_size: int):
    """A full SigLIP (768-d, ViT-B's width) or CLIP (512-d projection) model for images of
    ``image_size`` px: small, with one block of a narrow MLP."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    one = dict(num_hidden_layers=1, num_attention_heads=2, patch_size=16, image_size=image_size)
    if kind == "siglip":
        vision = dict(one, hidden_size=768, intermediate_size=32)
        return SiglipModel(
            SiglipConfig(vision_config=vision, text_config=dict(**TEXT, vocab_size=99))
        )
    vision = dict(one, hidden_size=32, intermediate_size=64)
    text = dict(**TEXT, vocab_size=99)
    return CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=512))


@pytest.mark.parametrize(
    "name, kind, size, repo",
    [
        ("siglip_vitb16", "siglip", 384, "google/siglip-base-patch16-224"),
        ("clip_vitb16", "clip", 336, "openai/clip-vit-base-patch16"),
    ],
)
def test_a_folder_trained_at_another_resolution_is_refused(tmp_path, monkeypatch, name, kind,
                                                           size, repo):  # fmt: skip
    """A folder of google/siglip-base-patch16-384 (config.json's image_size 384) has the width
    and patch of siglip_vitb16, whose official weights are the 224-px model: it loaded as that
    backbone without a word, though it is another checkpoint with other features than the ones
    the paired upsampler was trained on (CLIP likewise). Refused, naming both image sizes and
    the fixes; LOFTUP_BACKBONE_ANY_IMAGE_SIZE=1 runs it all the same. A folder of the official
    resolution (224) loads."""
    folder = _save(_of_image_size(kind, size), tmp_path / "m")
    with pytest.raises(CheckpointError) as e:
        get_featurizer(name, weights=folder)
    trained = {"siglip_vitb16": "loftup_siglip", "clip_vitb16": "loftup_clip"}[name]
    assert str(e.value) == (
        f"{folder} holds a model of image_size {size} (its config.json), but backbone {name} is "
        f"{repo}, of image_size 224, the features {trained} was "
        "trained on: the same architecture, another checkpoint with other features; pass the "
        f"folder of {repo} (or no backbone weights, for the official ones), or set "
        f"LOFTUP_BACKBONE_ANY_IMAGE_SIZE=1 to run this one as {name} all the same"
    )
    monkeypatch.setenv("LOFTUP_BACKBONE_ANY_IMAGE_SIZE", "false")  # read as HF_HUB_OFFLINE is
    with pytest.raises(CheckpointError):
        get_featurizer(name, weights=folder)
    monkeypatch.setenv("LOFTUP_BACKBONE_ANY_IMAGE_SIZE", "1")
    assert get_featurizer(name, weights=folder).dim == resolve(name).dim
    monkeypatch.delenv("LOFTUP_BACKBONE_ANY_IMAGE_SIZE")
    official = _save(_of_image_size(kind, 224), tmp_path / "224")
    feat = get_featurizer(name, weights=official)
    assert feat(imagenet_normalize(_images(32, 32, n=1))).shape == (1, feat.dim, 2, 2)
    # SigLIP 2's fixed-resolution official weights are 224 px too; NaFlex has no image_size
    assert resolve("siglip2_vitb16").image_size == 224
    assert resolve("siglip2_vitb16_naflex").image_size is None


def test_a_folder_of_another_backbone_size_is_refused(tmp_path):
    """A folder of the right family but another registered size (a ViT-S folder given as
    ViT-B) or another patch size would give features of another width or grid than the name
    promises (and than the upsampler paired with it was trained on): refused, naming the
    backbone that fits. A width no backbone has (a small test model) is accepted."""
    from transformers import Dinov2Config, Dinov2Model

    small = dict(num_hidden_layers=1, num_attention_heads=2, mlp_ratio=1, image_size=28)
    vits = _save(Dinov2Model(Dinov2Config(hidden_size=384, **small)), tmp_path / "s")
    with pytest.raises(CheckpointError, match=r"384-d model, but backbone dinov2_vitb14 is "
                       r"768-d; pass .* \(dinov2_vits14, dinov2_vits14_reg\)"):  # fmt: skip
        get_featurizer("dinov2_vitb14", weights=vits)
    assert get_featurizer("dinov2_vits14", weights=vits).dim == 384
    p16 = Dinov2Config(hidden_size=32, patch_size=16, **{**small, "image_size": 32})
    folder = _save(Dinov2Model(p16), tmp_path / "p16")
    with pytest.raises(CheckpointError, match="patch size 16, but backbone dinov2_vits14 has"):
        get_featurizer("dinov2_vits14", weights=folder)


def test_dinov2_with_and_without_registers_mixed_up_names_the_backbone_that_fits(tmp_path):
    """A DINOv2 registers folder given as dinov2_vits14 (or a plain one as dinov2_vits14_reg)
    was refused by model type with "pass the matching folder or backbone name": the line names
    the backbone that reads it, of the folder's size (or of the name's, for a width no
    released size has)."""
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
    )

    small = dict(num_hidden_layers=1, num_attention_heads=2, mlp_ratio=1, image_size=28)
    small["patch_size"] = 14  # Dinov2WithRegistersConfig's default is 16
    reg = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(hidden_size=32, **small))
    plain = Dinov2Model(Dinov2Config(hidden_size=32, **small))
    reg, plain = _save(reg, tmp_path / "reg"), _save(plain, tmp_path / "plain")
    for name, folder, kind, fits in (
        ("dinov2_vits14", reg, "dinov2_with_registers", "dinov2_vits14_reg"),
        ("dinov2_vitl14_reg", plain, "dinov2", "dinov2_vitl14"),
    ):
        with pytest.raises(CheckpointError) as e:
            get_featurizer(name, weights=folder)
        assert str(e.value) == (
            f"{folder} holds a {kind!r} model, but backbone {name} needs one of "
            f"'{'dinov2' if kind != 'dinov2' else 'dinov2_with_registers'}'; pass it as "
            f"backbone {fits}, or the folder of {name}"
        )
    assert get_featurizer("dinov2_vits14_reg", weights=reg).dim == 32
    # by hub id: its copy in the cache is what was asked for, not a damaged download
    from hub_builders import make_hf_cache

    repo = "facebook/dinov2-with-registers-small"
    make_hf_cache(tmp_path / "empty-cache", repo, {p.name: p for p in reg.iterdir()})
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=repo)
    assert str(e.value).endswith("pass it as backbone dinov2_vits14_reg, or the folder of "
                                 "dinov2_vits14")  # fmt: skip
    vitb = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(hidden_size=768, **small))
    vitb = _save(vitb, tmp_path / "vitb")  # a ViT-B registers folder as the ViT-S without
    with pytest.raises(CheckpointError, match="pass it as backbone dinov2_vitb14_reg, or the "):
        get_featurizer("dinov2_vits14", weights=vitb)
