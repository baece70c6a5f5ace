"""Backbone input sizes and positional embeddings: sizes snapped to the patch grid, images
resized to it (in any precision), and DINOv2's hub interpolation of its embeddings.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from loftup import get_featurizer
from loftup.featurizers import imagenet_normalize
from loftup.featurizers.dinov2 import hub_pos_embed
from loftup.featurizers.sizes import backbone_input_size, resize_images, snap_to_patches
from test_featurizers import _images

pytestmark = pytest.mark.usefixtures("hf_offline")


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
