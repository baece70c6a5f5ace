"""Backbones: every family loaded from a save_pretrained folder equals transformers' own output.

Each test builds a tiny randomly initialised model of the real architecture, saves it the way a
hub snapshot is laid out, and loads it through the path a user's local weights take, offline.
The expected features are computed from the transformers model itself, loaded from the folder.
SigLIP's families are in test_featurizer_siglip.py, the other topics of the backbones in the
other test_featurizer_*.py files, which take their helpers from here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from loftup import get_featurizer
from loftup.featurizers import imagenet_normalize
from loftup.featurizers.dinov2 import hub_pos_embed
from model_helpers import also_in_bfloat16

pytestmark = pytest.mark.usefixtures("hf_offline")

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


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


def _backbone_input(images01, norm, mean, std):
    """What a backbone trained with ``mean``/``std`` is given from ``images01`` under
    ``input_norm=norm``: the ImageNet-normalised image itself (the paper's code), or its own."""
    return imagenet_normalize(images01) if norm == "imagenet" else _native(images01, mean, std)


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


def test_a_config_json_asking_for_other_outputs_gives_the_same_features(tmp_path):
    """A config.json exported for tracing ("return_dict": false) made every call fail with an
    AttributeError ('tuple' object has no attribute 'last_hidden_state'), and one asking for
    every layer's hidden states (or attention maps) had them kept, unused: the features are
    read the same whatever it asks, and nothing else is kept."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=56)
    folder = _save(Dinov2Model(cfg), tmp_path / "m")
    images = imagenet_normalize(_images(42, 70, n=1))
    with torch.no_grad():
        want = get_featurizer("dinov2_vits14", weights=folder)(images)
    config = json.loads((folder / "config.json").read_text())
    asks = {"return_dict": False, "output_attentions": True, "output_hidden_states": True}
    (folder / "config.json").write_text(json.dumps({**config, **asks}))
    feat = get_featurizer("dinov2_vits14", weights=folder)
    with torch.no_grad():
        assert torch.equal(feat(images), want)
    config = feat.model.config
    assert config.return_dict and not (config.output_attentions or config.output_hidden_states)


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
