"""Backbones: every family loaded from a save_pretrained folder equals transformers' own output.

Each test builds a tiny randomly initialised model of the real architecture, saves it the way a
hub snapshot is laid out, and loads it through the path a user's local weights take, offline.
The expected features are computed from the transformers model itself, loaded from the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import READS_BACKBONE_PICKLES, also_in_bfloat16
from loftup import WeightsNotFoundError, get_featurizer
from loftup.errors import CheckpointError
from loftup.featurizers import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize, resolve
from loftup.featurizers.dinov2 import hub_pos_embed
from loftup.featurizers.hf import download
from loftup.featurizers.sizes import backbone_input_size, resize_images, snap_to_patches
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and an empty Hugging Face cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def _images(h: int, w: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _native(images01, mean, std):
    return (images01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)


def _save(model, path):
    torch.manual_seed(0)
    model.save_pretrained(path)
    return path


# -- one test per family ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(56, 56), (42, 70)])
def test_dinov2_with_registers(tmp_path, size):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    cfg = Dinov2WithRegistersConfig(
        **{k: v for k, v in VISION.items() if k != "intermediate_size"},
        mlp_ratio=2,
        patch_size=14,
        image_size=56,
        num_register_tokens=4,
    )
    folder = _save(Dinov2WithRegistersModel(cfg), tmp_path / "m")
    feat = get_featurizer("dinov2_vits14_reg", weights=folder)
    images = _images(*size)
    ref = Dinov2WithRegistersModel.from_pretrained(folder).eval()
    with torch.no_grad():
        got = feat(imagenet_normalize(images))
        want = ref(pixel_values=imagenet_normalize(images)).last_hidden_state[:, 5:]
    assert got.shape == (2, 32, size[0] // 14, size[1] // 14)
    assert torch.equal(got, _grid(want, size[0] // 14, size[1] // 14))
    also_in_bfloat16(feat, imagenet_normalize(images), got)


def test_dinov2_at_its_own_grid(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        **{k: v for k, v in VISION.items() if k != "intermediate_size"},
        mlp_ratio=2,
        patch_size=14,
        image_size=56,
    )
    folder = _save(Dinov2Model(cfg), tmp_path / "m")
    feat = get_featurizer("dinov2_vits14", weights=folder)
    images = imagenet_normalize(_images(56, 56))
    with torch.no_grad():
        got = feat(images)
        want = Dinov2Model.from_pretrained(folder).eval()(pixel_values=images).last_hidden_state
    assert torch.equal(got, _grid(want[:, 1:], 4, 4))


def test_dinov2_off_its_grid_interpolates_as_the_hub_models(tmp_path):
    """At a grid other than its own (non-square here), dinov2_vits14 is transformers' model
    with the torch-hub rule for the positional embeddings (the +0.1 offset), not
    transformers' own resampling: the features the released upsamplers were trained on."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=56)
    folder = _save(Dinov2Model(cfg), tmp_path / "m")
    images = imagenet_normalize(_images(42, 70, n=1))
    hub, plain = (Dinov2Model.from_pretrained(folder).eval() for _ in range(2))
    emb = hub.embeddings
    emb.interpolate_pos_encoding = lambda x, h, w: hub_pos_embed(emb.position_embeddings, 3, 5)
    with torch.no_grad():
        got = get_featurizer("dinov2_vits14", weights=folder)(images)
        want = _grid(hub(pixel_values=images).last_hidden_state[:, 1:], 3, 5)
        other = _grid(plain(pixel_values=images).last_hidden_state[:, 1:], 3, 5)
    assert torch.equal(got, want)
    assert (got - other).abs().max() > 1e-3


def test_dinov3(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    cfg = DINOv3ViTConfig(**VISION, patch_size=16, num_register_tokens=2)
    folder = _save(DINOv3ViTModel(cfg), tmp_path / "m")
    feat = get_featurizer("dinov3_vits16", weights=folder)
    images = imagenet_normalize(_images(48, 80))
    with torch.no_grad():
        got = feat(images)
        want = DINOv3ViTModel.from_pretrained(folder).eval()(pixel_values=images).last_hidden_state
    assert torch.equal(got, _grid(want[:, 3:], 3, 5))
    also_in_bfloat16(feat, images, got)


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


@pytest.mark.parametrize("torch_version, pin", [("2.13.0", ""), ("2.5.1+cpu", ",<5")])
def test_a_transformers_without_the_backbones_model_says_which_release_to_install(
    torch_version, pin, monkeypatch
):
    """A transformers older than pyproject allows (installed before loftup, without the
    backbones extra) lacks a backbone's model class (DINOv3ViTModel before 4.56): an
    AttributeError traceback from inside the loader; now one line naming the class and the
    release, below 5 under a torch below 2.6 (the newest, 5, does not run its models there).
    (A class no release has stands for it here; the torch release is the one the line reads.)"""
    from loftup.errors import MissingDependencyError
    from loftup.featurizers.hf import TRANSFORMERS_PIN, from_transformers

    monkeypatch.setattr(torch, "__version__", torch_version)
    with pytest.raises(MissingDependencyError) as e:
        from_transformers("Dinov2Model", "NoSuchVisionModel")
    msg = str(e.value)
    assert "has no NoSuchVisionModel, which this backbone is built on" in msg and "\n" not in msg
    assert msg.endswith(f"pip install -U '{TRANSFORMERS_PIN}{pin}'")
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"{TRANSFORMERS_PIN}"' in pyproject  # the extra's pin, said as it is


def _featup_clip_pos_embed(embeddings, height, width):
    """FeatUp's MaskCLIP positional embeddings for an image of height x width: bicubic with
    scale factor (n + 0.1) / N per side, the coordinates taken from that factor."""
    weight = embeddings.position_embedding.weight
    n = int((weight.shape[0] - 1) ** 0.5)
    h, w = height // embeddings.patch_size, width // embeddings.patch_size
    if h == w == n:
        return weight[None]
    grid = weight[1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((h + 0.1) / n, (w + 0.1) / n),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    return torch.cat([weight[None, :1], grid.flatten(2).transpose(1, 2)], dim=1)


def _maskclip_reference(clip, pixel_values, featup_pos_embed=True):
    """MaskCLIP from the model's own hidden states: the last block's value path, by hand; the
    positional embeddings interpolated as FeatUp's MaskCLIP does (else as transformers does)."""
    vision = clip.vision_model
    if featup_pos_embed:
        emb = vision.embeddings
        emb.interpolate_pos_encoding = lambda x, h, w: _featup_clip_pos_embed(emb, h, w)
    out = vision(
        pixel_values=pixel_values, output_hidden_states=True, interpolate_pos_encoding=True
    )
    x = out.hidden_states[-2][:, 1:]  # what enters the last block, patch tokens only
    last = vision.encoder.layers[-1]
    ln1, attn = last.layer_norm1, last.self_attn
    x = F.layer_norm(x, x.shape[-1:], ln1.weight, ln1.bias, ln1.eps)
    x = F.linear(
        F.linear(x, attn.v_proj.weight, attn.v_proj.bias), attn.out_proj.weight, attn.out_proj.bias
    )
    post = vision.post_layernorm
    x = F.layer_norm(x, x.shape[-1:], post.weight, post.bias, post.eps)
    return x @ clip.visual_projection.weight.T


def _backbone_input(images01, norm, mean, std):
    """What a backbone trained with ``mean``/``std`` is given from ``images01`` under
    ``input_norm=norm``: the ImageNet-normalised image itself (the paper's code), or its own."""
    return imagenet_normalize(images01) if norm == "imagenet" else _native(images01, mean, std)


@pytest.mark.parametrize("size, norm", [((64, 64), "imagenet"), ((48, 80), "own")])
def test_clip_maskclip_features(tmp_path, size, norm):
    from transformers import CLIPConfig, CLIPModel

    from loftup.featurizers.clip import CLIP_MEAN, CLIP_STD

    torch.manual_seed(0)
    cfg = CLIPConfig(
        vision_config=dict(**VISION, patch_size=16, image_size=64, projection_dim=24),
        text_config=dict(**TEXT, vocab_size=99),
        projection_dim=24,
    )
    folder = _save(CLIPModel(cfg), tmp_path / "m")  # the layout of openai/clip-vit-base-patch16
    feat = get_featurizer("clip_vitb16", weights=folder, input_norm=norm)
    assert (feat.dim, feat.patch_size, feat.mean, feat.std) == (24, 16, CLIP_MEAN, CLIP_STD)
    images = _images(*size)
    with torch.no_grad():
        got = feat(imagenet_normalize(images))
        clip = CLIPModel.from_pretrained(folder).eval()
        want = _maskclip_reference(clip, _backbone_input(images, norm, CLIP_MEAN, CLIP_STD))
    h, w = size[0] // 16, size[1] // 16
    torch.testing.assert_close(got, _grid(want, h, w), atol=1e-5, rtol=1e-5)
    assert got.abs().mean() > 0.1  # not a degenerate all-zero map
    if size != (64, 64):  # interpolated: FeatUp's rule, which is not transformers' own
        with torch.no_grad():
            clip = CLIPModel.from_pretrained(folder).eval()
            exact = _maskclip_reference(
                clip, _backbone_input(images, norm, CLIP_MEAN, CLIP_STD), featup_pos_embed=False
            )
        assert (_grid(exact, h, w) - got).abs().max() > 1e-3
    also_in_bfloat16(feat, imagenet_normalize(images), got)


def test_clip_config_without_projection_dim_takes_the_default(tmp_path):
    """A CLIPModel config.json may leave projection_dim out (transformers' default, 512, is
    then meant): loaded as transformers loads it, not a KeyError."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(  # 224 px, as the official weights (512-d: another size is refused)
        vision_config=dict(**VISION, patch_size=16, image_size=224),
        text_config=dict(**TEXT, vocab_size=99),
        projection_dim=512,
    )
    folder = _save(CLIPModel(cfg), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["projection_dim"]
    (folder / "config.json").write_text(json.dumps(config))
    feat = get_featurizer("clip_vitb16", weights=folder)
    assert feat(imagenet_normalize(_images(32, 32, n=1))).shape == (1, 512, 2, 2)


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


# -- sizes and positional embeddings ----------------------------------------------------------


def test_size_policy_rounds_to_the_nearest_patch_multiple():
    assert snap_to_patches(224, 224, 14) == (224, 224)
    assert snap_to_patches(20, 21, 14) == (14, 28)  # 1.43 -> 1 patch, 1.5 -> 2 patches
    assert snap_to_patches(3, 500, 16) == (16, 496)  # never below one patch
    assert backbone_input_size(480, 640, 14) == (224, 294)  # shorter side 224, then snapped
    assert backbone_input_size(480, 640, 16, short_side=None) == (480, 640)
    with pytest.raises(ValueError, match="positive"):
        snap_to_patches(0, 10, 14)


def test_featurizer_resizes_odd_sizes_to_the_grid():
    feat = get_featurizer("dinov2_tiny")
    images = imagenet_normalize(_images(30, 50, n=1))
    with torch.no_grad():
        got = feat(images)
        want = feat(resize_images(images, (28, 56)))
    assert got.shape == (1, 32, 2, 4) and torch.equal(got, want)


def test_a_half_precision_backbone_takes_half_precision_images_of_any_size():
    """A featurizer in bfloat16 or float16 called on images of its precision whose size is not
    a multiple of the patch failed on the CPU (NotImplementedError from the antialiased
    resize, which has no half-precision kernel there); they are resized in float32, as
    float32 images are, and give the same features."""
    feat = get_featurizer("dinov2_tiny")
    images = imagenet_normalize(_images(30, 50, n=1))
    for dtype in (torch.bfloat16, torch.float16):
        half = feat.to(dtype)
        with torch.no_grad():
            got = half(images.to(dtype))
            want = half(images.to(dtype).float())  # resized in float32, then cast
        assert got.dtype == dtype and got.shape == (1, 32, 2, 4)
        assert torch.equal(got, want)
        assert resize_images(images.to(dtype), (7, 9)).dtype == dtype


def test_dinov2_hub_interpolation_keeps_the_offset():
    """DINOv2's hub models sample their N x N embeddings at (i + 0.5) * N / (h + 0.1) - 0.5."""
    n, h, w = 8, 5, 6
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + n * n, 4)
    out = hub_pos_embed(pos, h, w)[0, 1:].T.reshape(1, 4, h, w)
    grid_in = pos[:, 1:].reshape(1, n, n, 4).permute(0, 3, 1, 2)

    def where(k, offset):  # grid_sample's coordinates of the source positions
        src = (torch.arange(k) + 0.5) * n / (k + offset) - 0.5
        return (2 * src + 1) / n - 1

    def sample(offset):
        gy, gx = torch.meshgrid(where(h, offset), where(w, offset), indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None]
        return F.grid_sample(grid_in, grid, mode="bicubic", align_corners=False)

    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # borders clamp differently
    torch.testing.assert_close(out[inner], sample(0.1)[inner], atol=1e-5, rtol=1e-5)
    assert (out[inner] - sample(0.0)[inner]).abs().max() > 1e-2  # the offset matters
    assert torch.equal(hub_pos_embed(pos, n, n), pos)  # its own grid: untouched


# -- the tiny backbone and the registry -------------------------------------------------------


def test_tiny_backbone_is_small_seeded_and_real_dinov2():
    from transformers import Dinov2Model

    a, b = get_featurizer("dinov2_tiny"), get_featurizer("dinov2_tiny")
    n_params = sum(p.numel() for p in a.parameters())
    assert 1000 < n_params < 100_000 and a.dim % 4 == 0
    assert isinstance(a.model, Dinov2Model)
    images = imagenet_normalize(_images(224, 224, n=1))
    with torch.no_grad():
        assert torch.equal(a(images), b(images))
        assert a(images).shape == (1, a.dim, 16, 16)
    assert not any(m.training for m in a.train().modules())  # frozen: stays in eval mode
    assert not any(p.requires_grad for p in a.parameters())


def test_registry_names_and_released_pairing():
    from loftup.hub import RELEASED

    for name in [
        *(f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")),
        "clip_vitb16",
        "siglip_vitb16",
        "siglip2_vitb16",
        "dinov3_vits16",
        "dinov3_vits16plus",
        "dinov3_vitb16",
    ]:
        spec = resolve(name)
        assert spec.default_weights and spec.patch_size in (14, 16)
    for ckpt in RELEASED.values():
        assert resolve(ckpt.backbone).dim == ckpt.dim
        assert ckpt.grid == 224 // resolve(ckpt.backbone).patch_size  # method.md: "at 224"
    # method.md's table of released checkpoints: name, C, grid at 224, hub repo (and file),
    # and the official weights of the backbone it names
    table = {
        "loftup_dinov2s": (384, 16, "haiwen/loftup-dinov2s", "facebook/dinov2-small"),
        "loftup_dinov2s_reg": (
            384,
            16,
            "haiwen/loftup-dinov2s_reg",
            "facebook/dinov2-with-registers-small",
        ),
        "loftup_dinov2b": (768, 16, "haiwen/loftup-dinov2b", "facebook/dinov2-base"),
        "loftup_dinov2b_reg": (
            768,
            16,
            "haiwen/loftup-dinov2b_reg",
            "facebook/dinov2-with-registers-base",
        ),
        "loftup_clip": (512, 14, "haiwen/loftup-clip", "openai/clip-vit-base-patch16"),
        "loftup_siglip": (768, 14, "haiwen/loftup-siglip", "google/siglip-base-patch16-224"),
        "loftup_siglip2": (768, 14, "haiwen/loftup-siglip2", "google/siglip2-base-patch16-224"),
    }
    got = {
        c.name: (c.dim, c.grid, c.repo_id, resolve(c.backbone).default_weights)
        for c in RELEASED.values()
    }
    assert got == table
    assert {c.filename for c in RELEASED.values()} == {"pytorch_model.bin"}
    assert resolve("dinov2_vitg14_reg").default_weights == "facebook/dinov2-with-registers-giant"
    assert resolve("clip_vitb16").default_weights == "openai/clip-vit-base-patch16"


def test_a_device_that_is_not_here_is_said_in_one_line(tmp_path):
    """get_featurizer and load_upsampler put the model where asked: a device this machine does
    not have (a GPU index past its count, "cuda" without one) or a misspelt one was torch's
    AssertionError or RuntimeError traceback, after the weights were loaded."""
    from loftup import LoftUp, load_upsampler
    from loftup.errors import UsageError

    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    for device, words in (("cuda:99", "cuda:99"), ("gpu", "unknown device 'gpu'")):
        with pytest.raises(UsageError, match=words):
            get_featurizer("dinov2_tiny", device=device)
        with pytest.raises(UsageError, match=words):
            load_upsampler(tmp_path / "up", device=device)
    assert get_featurizer("dinov2_tiny", device="cpu").model.device.type == "cpu"


def test_imagenet_constants_are_the_guidance_normalisation():
    feat = get_featurizer("dinov2_tiny")
    x = torch.full((1, 3, 2, 2), 0.5)
    want = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(feat.normalize(x)[0, :, 0, 0], want)


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


# -- where the weights come from --------------------------------------------------------------


def test_official_name_found_in_the_hf_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from transformers import Dinov2Config, Dinov2Model

    from conftest import make_hf_cache

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28)
    folder = _save(Dinov2Model(cfg), tmp_path / "m")
    files = {p.name: p for p in folder.iterdir()}
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", files)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    feat = get_featurizer("dinov2_vits14")  # the default hub id, resolved from the cache
    assert feat.dim == 32 and feat.model.config.num_hidden_layers == 1
    assert (download("dinov2_vits14") / "model.safetensors").is_file()
    with pytest.raises(WeightsNotFoundError, match="no hub weights"):
        download("dinov2_tiny")


def test_a_damaged_cached_backbone_says_which_blob_to_delete(tmp_path, monkeypatch):
    """A cache copied from another machine (the offline recipe) with a cut config.json, or the
    files of another model, told the user to "pass the matching folder" or "write the folder
    again with save_pretrained": nobody passed that folder, and the fix is to delete the
    cached file and fetch it again."""
    from huggingface_hub import constants
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from conftest import make_hf_cache

    tiny = _save(get_featurizer("dinov2_tiny").model, tmp_path / "tiny")
    clip = CLIPVisionConfig(**VISION, patch_size=16, image_size=32, projection_dim=16)
    other = _save(CLIPVisionModelWithProjection(clip), tmp_path / "clip")
    config, weights = tiny / "config.json", tiny / "model.safetensors"
    for i, (files, bad, said) in enumerate(
        (
            ({"config.json": config.read_bytes()[:40]}, "config.json", "is corrupt ("),
            ({"config.json": b"[]"}, "config.json", "holds a JSON list"),
            ({"config.json": other / "config.json"}, "config.json", "'clip_vision_model' model"),
            ({"model.safetensors": other / "model.safetensors"}, "model.safetensors", "missing"),
        )
    ):
        hub = tmp_path / "hub" / str(i)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
        both = {"config.json": config, "model.safetensors": weights, **files}
        snap = make_hf_cache(hub, "facebook/dinov2-small", both)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_vits14")
        msg = str(e.value)
        assert msg.startswith(str(snap)) and said in msg and "\n" not in msg, msg
        fix = f"damaged download in the Hugging Face cache: delete {(snap / bad).resolve()} and "
        assert fix + "run `loftup download dinov2_vits14` to fetch it again" in msg, msg


def test_offline_without_weights_names_repo_and_local_option():
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vitb14")
    msg = str(e.value)
    assert "facebook/dinov2-base" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--backbone-weights" in msg and "weights=" in msg and "\n" not in msg
    assert "`loftup train backbone_weights=/path/to/folder`" in msg  # the training key too


def test_every_released_name_and_backbone_missing_offline_is_one_line_naming_its_file():
    """Offline with an empty cache, each released upsampler and each backbone with hub weights
    fails at once with one line naming its hub repo, the missing file and both ways out."""
    from huggingface_hub import constants

    from loftup import load_upsampler
    from loftup.featurizers import FEATURIZERS
    from loftup.hub import RELEASED

    wants = [(lambda c=c: load_upsampler(c.name), c.repo_id, c.filename) for c in RELEASED.values()]
    wants += [
        (lambda n=n: get_featurizer(n), spec.default_weights, "config.json")
        for n, spec in FEATURIZERS.items()
        if spec.default_weights
    ]
    assert len(wants) == 7 + 15  # DINOv2 8, DINOv3 3, CLIP, SigLIP, SigLIP 2 (and NaFlex)
    for load, repo, filename in wants:
        with pytest.raises(WeightsNotFoundError) as e:
            load()
        msg = str(e.value)
        assert f"file {filename!r} of hub repo {repo!r} is not in the Hugging Face cache" in msg
        assert "HF_HUB_OFFLINE=1 is set" in msg and "`loftup download " in msg
        assert "/path/to/" in msg and "\n" not in msg
        # where this process reads the cache (a copy put elsewhere is not found)
        assert f"(~/.cache/huggingface/hub by default) to {constants.HF_HUB_CACHE}, or" in msg
        if filename == "config.json":  # the weights are missing too: said at once
            assert "(nor is 'model.safetensors' or 'pytorch_model.bin', which it needs too)" in msg


def test_offline_with_only_the_config_cached_names_the_weights_alone(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from conftest import make_hf_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", {"config.json": b"{}"})
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14")
    msg = str(e.value)
    assert "file 'model.safetensors' of hub repo 'facebook/dinov2-small' is not in the " in msg
    assert "nor is" not in msg and "'config.json'" not in msg.split("Run")[0]


def test_a_gated_backbone_missing_offline_says_how_to_get_access():
    """DINOv3's repos are gated: offline, the advice to run `loftup download` elsewhere failed
    there too (401) until the terms were accepted and the user logged in; it says so first."""
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    for call in (lambda: get_featurizer("dinov3_vits16"), lambda: download("dinov3_vits16")):
        with pytest.raises(WeightsNotFoundError) as e:
            call()
        msg = str(e.value)
        assert f"(the repo is gated: accept its terms at https://huggingface.co/{repo} " in msg
        assert "HF_TOKEN" in msg and "`hf auth login`" in msg and "\n" not in msg
    assert "env -u HF_HUB_OFFLINE loftup download dinov3_vits16` (the repo is gated" in msg
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14")
    # "repo is gated": the message names the cache folder, whose path (this test's) has "gated"
    assert "repo is gated" not in str(e.value) and "HF_TOKEN" not in str(e.value)


def test_bad_local_folders_are_named(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    with pytest.raises(WeightsNotFoundError, match="nothere does not exist"):
        get_featurizer("dinov2_vits14", weights=tmp_path / "nothere")
    # a relative Path was looked up as a hub repo ("file 'config.json' of hub repo
    # 'models/dinov2' is not in the Hugging Face cache", online a download): a Path is local
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14", weights=Path("models/dinov2"))
    assert str(e.value) == (
        "backbone weights for dinov2_vits14: models/dinov2 does not exist; pass a folder in "
        "the Hugging Face layout (config.json + model.safetensors) or a hub id"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        get_featurizer("dinov2_vits14", weights=tmp_path / "empty")
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28)
    folder = _save(Dinov2Model(cfg), tmp_path / "dino")
    with pytest.raises(CheckpointError, match="holds a 'dinov2' model.*clip_vitb16"):
        get_featurizer("clip_vitb16", weights=folder)
    # a config.json that transformers rejects (edited by hand: 12 layers' out_features kept
    # with one layer): the folder, the backbone and transformers' reason, not a traceback
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "out_features": ["stage12"]}))
    with pytest.raises(CheckpointError, match=r"dino cannot be loaded as backbone dinov2_vits14 "
                       r"\(ValueError: out_features must be a subset"):  # fmt: skip
        get_featurizer("dinov2_vits14", weights=folder)
    # a config.json whose sizes are not the weights' (edited by hand): which weight, both
    # shapes and the fix, not transformers' "look at the above report" (which is silenced)
    (folder / "config.json").write_text(json.dumps({**config, "mlp_ratio": 2}))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    msg = str(e.value)
    assert "config.json does not describe its weights: encoder.layer.0.mlp.fc1.bias is" in msg
    assert "(128,) in the file, (64,) by the config" in msg and "save_pretrained" in msg
    (folder / "config.json").write_text("[1]")  # valid JSON, but not a config
    with pytest.raises(CheckpointError, match="config.json holds a JSON list.*save_pretrained"):
        get_featurizer("dinov2_vits14", weights=folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    msg = str(e.value)  # what is missing and where to get it, in one line
    assert "needs model.safetensors" in msg and "facebook/dinov2-small" in msg
    assert "\n" not in msg


def test_backbone_weights_that_are_no_folder_nor_hub_id_are_one_line(tmp_path, monkeypatch,
                                                                     capsys):  # fmt: skip
    """Weights that are no folder here and no valid hub id came out of get_featurizer as
    huggingface_hub's HFValidationError (naming neither the backbone nor a fix), and so did a
    revision, ORG/NAME@REVISION (a backbone's weights are read from the main branch, as
    `loftup download` says); an empty string was Path(""), the current folder, loaded as the
    backbone whatever it held. Each is one line naming the backbone and the fix."""
    from PIL import Image

    from loftup import LoftUp
    from loftup.cli import main
    from loftup.errors import UsageError

    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights="my w/x")
    msg = str(e.value)
    assert msg.startswith("backbone weights for dinov2_tiny: 'my w/x' is neither a folder here "
                          "nor a hub id (Repo id must use")  # fmt: skip
    assert msg.endswith("); pass a folder in the Hugging Face layout (config.json + "
                        "model.safetensors) or a hub id ORG/NAME") and "\n" not in msg  # fmt: skip
    # a backbone's name (`--backbone-weights dinov2_vitb14`, meant as --backbone) was looked up
    # as hub repo 'dinov2_vitb14': "run `loftup download dinov2_vitb14`" fetched another repo
    for weights, said in (
        ("facebook/dinov2-small@main", "facebook/dinov2-small@main names a revision, but a "
         "backbone's weights are read from its hub repo's main branch; pass "
         "facebook/dinov2-small, or a folder in the Hugging Face layout (config.json + "
         "model.safetensors) of that revision"),
        ("dinov2_vitb14", "dinov2_vitb14 is a backbone's name, not its weights; pass it as the "
         "backbone (backbone=, CLI --backbone), without weights for the official ones "
         "(facebook/dinov2-base), or pass a folder in the Hugging Face layout or a hub id"),
        ("dinov2_vits14", "dinov2_vits14 is a backbone's name, not its weights; leave them out "
         "for the official ones (facebook/dinov2-small), or pass a folder in the Hugging Face "
         "layout or a hub id"),
    ):  # fmt: skip
        with pytest.raises(UsageError) as e:
            get_featurizer("dinov2_vits14", weights=weights)
        assert str(e.value) == f"backbone weights for dinov2_vits14: {said}"
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path)  # a backbone folder here
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "dinov2_vitb14")
    monkeypatch.chdir(tmp_path)
    assert get_featurizer("dinov2_tiny", weights="dinov2_vitb14").dim == 32  # the folder here
    for empty in ("", " "):
        with pytest.raises(UsageError, match="dinov2_tiny are an empty string; pass a folder"):
            get_featurizer("dinov2_tiny", weights=empty)
    Image.new("RGB", (16, 16)).save("x.png")  # the command line says the same, in one line
    LoftUp(dim=32).save_pretrained("up", backbone="dinov2_tiny")
    argv = ["upsample", "x.png", "-m", "up", "-o", "out", "--backbone-weights", "my w/x"]
    capsys.readouterr()  # save_pretrained's progress bar
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backbone weights for dinov2_tiny: 'my w/x' is neither a ")
    assert "\n" not in err


class _RunsCode:
    def __reduce__(self):
        return (print, ("code in the pickle ran",))


@READS_BACKBONE_PICKLES
def test_a_damaged_or_unsafe_pytorch_model_bin_is_named(tmp_path, capsys):
    """A backbone folder with only pytorch_model.bin (as some hub repos have) is unpickled by
    transformers: an empty or truncated file was a bare EOFError or "does not fit backbone",
    one holding objects beyond tensors an UnpicklingError whose text suggests
    weights_only=False (running it), and one with damaged bytes loaded without a word (torch
    does not check the zip's checksums). Each is one line naming the file."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tiny = get_featurizer("dinov2_tiny").model
    tiny.config.save_pretrained(folder)
    weights = folder / "pytorch_model.bin"
    torch.save(tiny.state_dict(), weights)
    good = weights.read_bytes()
    assert get_featurizer("dinov2_tiny", weights=folder).dim == 32  # the file as saved loads
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    torch.save({**tiny.state_dict(), "x": _RunsCode()}, weights)
    unsafe = weights.read_bytes()
    for data, said in (
        (b"", "is empty (0 bytes)"),
        (good[: len(good) // 2], "is corrupt or truncated and cannot be read"),
        (bytes(flipped), "does not match the checksum written with it"),
        (unsafe, "could run code when loaded; it was not loaded"),
    ):
        weights.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_tiny", weights=folder)
        assert str(weights) in str(e.value) and said in str(e.value), str(e.value)
        assert "weights_only=False" not in str(e.value) and "\n" not in str(e.value)
    assert "code in the pickle ran" not in capsys.readouterr().out


def test_a_pickled_backbone_under_a_torch_older_than_2_6_says_to_upgrade(tmp_path, monkeypatch):
    """pyproject allows torch 2.4 and 2.5, beside which transformers 4 runs, but refuses there to
    unpickle a pytorch_model.bin (CVE-2025-32434): its ValueError was reported as a config.json
    that transformers rejects ("check its config.json"). One line names the file and the fix;
    safetensors still load. (The torch release is set to an older one's for the call.)"""
    tiny = get_featurizer("dinov2_tiny").model
    pickled, safe = tmp_path / "bin", tmp_path / "st"
    tiny.config.save_pretrained(pickled)
    torch.save(tiny.state_dict(), pickled / "pytorch_model.bin")
    tiny.save_pretrained(safe)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=pickled)
    assert str(e.value) == (
        f"{pickled / 'pytorch_model.bin'} is a PyTorch pickle, which transformers reads only "
        "with torch 2.6 or newer (torch.load could run code from the file before it, "
        "CVE-2025-32434), and this is torch 2.5.1+cpu: upgrade torch (pip install "
        "'torch>=2.6'), or give backbone dinov2_tiny a folder with model.safetensors (write the "
        "folder again with save_pretrained)"
    )
    assert get_featurizer("dinov2_tiny", weights=safe).dim == 32
    monkeypatch.undo()
    if torch_release() >= SAFE_PICKLE_TORCH:  # the torch under test reads it
        assert get_featurizer("dinov2_tiny", weights=pickled).dim == 32
    else:  # and refuses it, as it did the older release's
        with pytest.raises(
            CheckpointError, match=re.escape(f"and this is torch {torch.__version__}: upgrade")
        ):
            get_featurizer("dinov2_tiny", weights=pickled)


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 88225724\n"


def _edit_weights(folder, edit):
    """Write ``folder``'s model.safetensors again with ``edit(name, tensor)`` applied to each."""
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    save_file({k: edit(k, v) for k, v in state.items()}, folder / "model.safetensors")


def _nan_patch_embedding(key, tensor):
    return tensor * float("nan") if "patch_embeddings" in key else tensor


@pytest.mark.parametrize(
    "damage, file, said",
    [
        # a hub repo cloned without Git LFS: "corrupt (header too large)" named no cause
        ("lfs", "model.safetensors", "is a Git LFS pointer (73 bytes of text), not the file"),
        ("lfs-bin", "pytorch_model.bin", "is a Git LFS pointer (73 bytes of text), not the file"),
        # integers and booleans were cast to float32 by transformers, and ran
        ("int8", "model.safetensors", "stores embeddings.cls_token as I8, not as floating-point"),
        ("bool", "model.safetensors", "stores embeddings.cls_token as BOOL, not as floating"),
        # every feature NaN, without a word
        ("nan", "", "weight embeddings.patch_embeddings.projection.weight of backbone"),
        # transformers asked for accelerate or optimum, with a traceback
        ("quantized", "", "holds a quantized model (bitsandbytes, its config.json's quantiz"),
        # transformers' mmap of a cut zip: "[Errno 22] Invalid argument", called a missing file
        pytest.param(
            "cut-bin",
            "pytorch_model.bin",
            "is corrupt or truncated and cannot be read",
            marks=READS_BACKBONE_PICKLES,
        ),
    ],
)
def test_backbone_weights_that_are_not_float_weights_are_named(tmp_path, damage, file, said):
    """Each way a backbone folder's weights can be wrong although its files are there: one line
    naming the file (or the folder) and how to get the weights, never a traceback, never a
    backbone that runs on them."""
    folder = tmp_path / "dino"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    if damage == "lfs":
        weights.write_bytes(LFS_POINTER)
    elif damage in ("lfs-bin", "cut-bin"):  # a repo with only pytorch_model.bin
        from safetensors.torch import load_file

        torch.save(load_file(weights), folder / "pytorch_model.bin")
        whole = (folder / "pytorch_model.bin").read_bytes()
        weights.unlink()
        cut = LFS_POINTER if damage == "lfs-bin" else whole[: len(whole) // 4]
        (folder / "pytorch_model.bin").write_bytes(cut)
    elif damage in ("int8", "bool"):
        _edit_weights(folder, lambda k, v: (v > 0) if damage == "bool" else v.to(torch.int8))
    elif damage == "nan":
        _edit_weights(folder, _nan_patch_embedding)
    else:
        config = json.loads((folder / "config.json").read_text())
        config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    msg = str(e.value)
    assert msg.startswith(str(folder / file) if file else str(folder)) and said in msg, msg
    assert "save_pretrained" in msg and "\n" not in msg


def test_a_sharded_folder_with_a_shard_cut_or_missing_names_that_shard(tmp_path):
    """save_pretrained splits a large model into shards listed by model.safetensors.index.json:
    a missing shard was "it needs model.safetensors (or pytorch_model.bin)", and a cut one was
    called model.safetensors, a file the folder does not have."""
    import shutil

    folder = tmp_path / "sharded"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder, max_shard_size="50KB")
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and get_featurizer("dinov2_tiny", weights=folder).dim == 32
    cut = shutil.copytree(folder, tmp_path / "cut") / shards[1].name
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=cut.parent)
    assert str(e.value).startswith(f"{cut} is truncated or corrupt (")
    gone = shutil.copytree(folder, tmp_path / "gone")
    (gone / shards[-1].name).unlink()
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights=gone)
    assert str(e.value) == (
        f"{gone} lacks {shards[-1].name}, one of the weight files its "
        f"model.safetensors.index.json names (1 of {len(shards)} missing: a copy cut short?); "
        "copy them all, or write the folder again with save_pretrained"
    )
    # an index that is not JSON, or lacks its weight_map, was "check its config.json"
    index = gone / "model.safetensors.index.json"
    for text, said in (("{not json", "is corrupt (Expecting"), ("{}", 'has no "weight_map"')):
        index.write_text(text)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_tiny", weights=gone)
        assert str(e.value).startswith(f"{index} {said}") and "config.json" not in str(e.value)


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
    from conftest import make_hf_cache

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
    up.save_pretrained(tmp_path / "up", backbone="siglip_vitb16", backbone_norm="own")
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
    LoftUp(32).save_pretrained(tmp_path / "plain", backbone="siglip_vitb16")
    assert load_pipeline(tmp_path / "plain", backbone_weights=backbone).featurizer.input_norm == (
        "imagenet"
    )
    record = json.loads((tmp_path / "up" / "config.json").read_text())
    (tmp_path / "up" / "config.json").write_text(json.dumps({**record, "backbone_norm": "clip"}))
    with pytest.raises(CheckpointError, match='"backbone_norm" must be one of imagenet, own or'):
        load_upsampler(tmp_path / "up")


def test_offline_weights_from_another_repo_say_how_to_fetch_that_repo(monkeypatch):
    """Offline, weights="facebook/dinov2-base" for dinov2_vits14 said "Run `loftup download
    dinov2_vits14`", which fetches facebook/dinov2-small, not the repo asked for; then a
    snapshot_download of the whole repo (every format of its weights), where `loftup download
    ORG/NAME` fetches what is loaded."""
    from loftup.errors import WeightsNotFoundError
    from loftup.featurizers.hf import resolve_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    default = "facebook/dinov2-small"
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("someone/dinov2-tuned", default, "dinov2_vits14")
    msg = str(e.value)
    assert "Run `loftup download someone/dinov2-tuned` on a machine with network" in msg
    assert "loftup download dinov2_vits14" not in msg and "snapshot_download" not in msg
    with pytest.raises(WeightsNotFoundError, match="Run `loftup download dinov2_vits14`"):
        resolve_weights(None, "someone/not-cached", "dinov2_vits14")


def test_the_exported_registry_lists_every_backbone_before_any_lookup():
    """``loftup.FEATURIZERS`` was an empty dict until something looked a backbone up (the
    families registered on first lookup); loading no backbone library for it."""
    import subprocess
    import sys

    code = (
        "import sys, loftup; r = loftup.FEATURIZERS; "
        "print(len(r), 'dinov2_vits14' in r, 'siglip2_vitb16' in r, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    n, dinov2, siglip2, transformers = done.stdout.split()
    assert int(n) >= 13 and dinov2 == siglip2 == "True" and transformers == "False"


def _sharded_bin(folder):
    """``folder`` written by save_pretrained again as pytorch_model.bin shards (three) listed by
    pytorch_model.bin.index.json, as a hub repo uploaded before safetensors holds them."""
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    groups = [keys[i::3] for i in range(3)]
    weight_map = {}
    for i, group in enumerate(groups, 1):
        shard = f"pytorch_model-0000{i}-of-00003.bin"
        torch.save({k: state[k] for k in group}, folder / shard)
        weight_map.update(dict.fromkeys(group, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return sorted(folder.glob("pytorch_model-*.bin"))


@READS_BACKBONE_PICKLES
def test_a_sharded_bin_folder_with_a_shard_cut_or_missing_names_that_shard(tmp_path):
    """Sharded pytorch_model.bin (pytorch_model.bin.index.json): a missing shard was
    transformers' traceback, and a cut one was not named; both are said as for safetensors
    shards, naming the shard and the index."""
    import shutil

    folder = tmp_path / "sharded"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    shards = _sharded_bin(folder)
    assert get_featurizer("dinov2_tiny", weights=folder).dim == 32
    gone = shutil.copytree(folder, tmp_path / "gone")
    (gone / shards[1].name).unlink()
    said = (
        f"{gone} lacks {shards[1].name}, one of the weight files its "
        "pytorch_model.bin.index.json names (1 of 3 missing: a copy cut short?); copy them "
        "all, or write the folder again with save_pretrained"
    )
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights=gone)
    assert str(e.value) == said
    cut = shutil.copytree(folder, tmp_path / "cut") / shards[2].name
    cut.write_bytes(cut.read_bytes()[:3000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=cut.parent)
    assert str(e.value).startswith(f"{cut} is corrupt or truncated and cannot be read"), e.value
    lfs = shutil.copytree(folder, tmp_path / "lfs") / shards[0].name
    lfs.write_bytes(LFS_POINTER)
    with pytest.raises(CheckpointError, match="is a Git LFS pointer"):
        get_featurizer("dinov2_tiny", weights=lfs.parent)


@READS_BACKBONE_PICKLES
def test_a_failed_read_of_weights_that_are_there_is_not_called_missing(tmp_path, monkeypatch):
    """An OSError while transformers loads a folder whose pytorch_model.bin is whole (a read
    error of the disk, say) said the folder "needs model.safetensors (or pytorch_model.bin)",
    which it has, after reading the file whole once more: now the error is given as it is."""
    from transformers import Dinov2Model

    folder = tmp_path / "dino"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()

    def fails(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Dinov2Model, "from_pretrained", fails)
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=folder)
    assert str(e.value) == (
        f"cannot load backbone dinov2_tiny from {folder} ([Errno 5] Input/output error); "
        "write the folder again with save_pretrained"
    )
    assert loads == []  # the file, which transformers did not say was bad, was not read
