"""The backbone registry: the tiny test backbone, the registered names and their pairing with
the released upsamplers, the exported table, the device a backbone is put on, and the ImageNet
constants of the guidance image.
"""

from __future__ import annotations

import pytest
import torch

from loftup import get_featurizer
from loftup.featurizers import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize, resolve
from test_featurizers import _images

pytestmark = pytest.mark.usefixtures("hf_offline")


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
