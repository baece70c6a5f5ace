"""mask_bicubic / mask_adjust against a slow literal implementation written here."""

import pytest
import torch
import torch.nn.functional as F

from loftup.train.targets import mask_adjust, mask_bicubic


def reference_mask_bicubic(feats, masks, alpha):
    """The definition, pixel set by pixel set: bicubic, then each mask in order pulls its pixels
    towards their current mean."""
    up = F.interpolate(feats.double(), size=masks.shape[-2:], mode="bicubic", align_corners=False)
    out = up.clone()
    for b in range(out.shape[0]):
        for k in range(masks.shape[1]):
            ys, xs = torch.nonzero(masks[b, k], as_tuple=True)
            if len(ys) == 0:
                continue
            mean = torch.stack([out[b, :, y, x] for y, x in zip(ys, xs)]).mean(0)
            for y, x in zip(ys, xs):
                out[b, :, y, x] = (1 - alpha) * out[b, :, y, x] + alpha * mean
    return out


def random_masks(b, k, h, w, seed, max_side=None):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(b, k, h, w, dtype=torch.bool)
    max_side = max_side or h
    for i in range(b):
        for j in range(k):
            sy, sx = torch.randint(1, max_side + 1, (2,), generator=g).tolist()
            y, x = torch.randint(0, h - sy + 1, (1,), generator=g).item(), 0
            x = torch.randint(0, w - sx + 1, (1,), generator=g).item()
            masks[i, j, y : y + sy, x : x + sx] = True
    return masks


@pytest.mark.parametrize("alpha", [0.8, 0.5, 1.0, 0.3])
def test_mask_bicubic_matches_the_literal_definition(alpha):
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    masks = random_masks(2, 7, 12, 15, seed=1, max_side=9)  # overlapping rectangles
    got = mask_bicubic(feats, masks, alpha)
    want = reference_mask_bicubic(feats, masks, alpha)
    assert torch.allclose(got, want, atol=1e-12), (got - want).abs().max()


def test_float32_matches_too_and_order_matters():
    torch.manual_seed(1)
    feats = torch.randn(1, 4, 3, 3)
    masks = random_masks(1, 6, 9, 9, seed=2, max_side=7)
    got = mask_bicubic(feats, masks, 0.8)
    assert torch.allclose(got.double(), reference_mask_bicubic(feats, masks, 0.8), atol=1e-5)
    reversed_order = mask_bicubic(feats, masks.flip(1), 0.8)
    assert (got - reversed_order).abs().max() > 1e-3  # later masks see earlier ones' result


def test_deep_overlap_falls_back_to_the_loop_with_the_same_result():
    # 60 nested masks over one pixel: 0.2^61 is beyond float32's range, so another path runs
    torch.manual_seed(2)
    feats = torch.randn(1, 2, 2, 2)
    masks = torch.zeros(1, 60, 6, 6, dtype=torch.bool)
    for k in range(60):
        s = 1 + k % 6
        masks[0, k, :s, :s] = True
    got = mask_bicubic(feats, masks, 0.8)
    assert torch.allclose(got.double(), reference_mask_bicubic(feats, masks, 0.8), atol=1e-5)


def test_no_masks_alpha_zero_and_padding_leave_bicubic():
    feats = torch.randn(2, 3, 4, 4)
    bicubic = F.interpolate(feats, size=(8, 8), mode="bicubic", align_corners=False)
    empty = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    assert torch.equal(mask_bicubic(feats, empty, 0.8), bicubic)
    masks = random_masks(2, 3, 8, 8, seed=3)
    assert torch.allclose(mask_bicubic(feats, masks, 0.0), bicubic)
    # n_masks: masks beyond the count are padding and are ignored
    padded = torch.cat([masks, random_masks(2, 2, 8, 8, seed=4)], dim=1)
    got = mask_bicubic(feats, padded, 0.8, n_masks=torch.tensor([3, 3]))
    assert torch.allclose(got, mask_bicubic(feats, masks, 0.8), atol=1e-6)


def test_a_single_mask_with_alpha_one_becomes_its_mean():
    feats = torch.randn(1, 2, 4, 4)
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    up = F.interpolate(feats, size=(4, 4), mode="bicubic", align_corners=False)
    out = mask_bicubic(feats, masks, 1.0)
    mean = up[0, :, :2].mean(dim=(1, 2))
    assert torch.allclose(out[0, :, :2], mean[:, None, None].expand(2, 2, 4), atol=1e-6)
    assert torch.equal(out[0, :, 2:], up[0, :, 2:])


def test_linear_so_the_projection_can_come_first():
    torch.manual_seed(3)
    feats = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    masks = random_masks(2, 5, 8, 8, seed=5)
    proj = torch.randn(16, 4, dtype=torch.float64)
    before = torch.einsum("bchw,ck->bkhw", mask_bicubic(feats, masks, 0.8), proj)
    after = mask_bicubic(torch.einsum("bchw,ck->bkhw", feats, proj), masks, 0.8)
    assert torch.allclose(before, after, atol=1e-10)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="alpha must be in"):
        mask_adjust(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool), 1.5)
    with pytest.raises(ValueError, match="disagree"):
        mask_adjust(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 5, 4, dtype=torch.bool), 0.5)
