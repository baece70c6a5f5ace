"""Losses, jitter and the attention downsampler on inputs whose answers can be worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from loftup.train.batches import crop_offsets
from loftup.train.downsampler import AttentionDownsampler, window_stride
from loftup.train.losses import (
    affinity,
    affinity_loss,
    central_crop,
    project,
    random_projection,
    reconstruction_loss,
    tv_loss,
)
from loftup.train.views import draw_jitters, jitter


def test_reconstruction_loss_plain_and_with_uncertainty():
    pred = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    # per pixel, mean over channels: (1 + 9) / 2 = 5 and (4 + 0) / 2 = 2 -> mean 3.5
    assert reconstruction_loss(pred, target).item() == pytest.approx(3.5)
    log_s = torch.log(torch.tensor([2.0, 1.0])).view(1, 1, 1, 2)
    # 5 / (2 * 4) + log 2 and 2 / 2 + 0
    want = (5 / 8 + math.log(2) + 1.0) / 2
    assert reconstruction_loss(pred, target, log_s).item() == pytest.approx(want)
    with pytest.raises(ValueError, match="differ"):
        reconstruction_loss(pred, target[..., :1])


def test_tv_loss_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical diffs 2, 3 -> mean sq 6.5; horizontal 1, 2 -> 2.5
    assert tv_loss(x).item() == pytest.approx(9.0)
    assert tv_loss(torch.ones(2, 3, 5, 5)).item() == 0.0


def test_affinity_and_its_loss():
    feats = torch.tensor([[[[1.0, 0.0, 2.0]], [[0.0, 1.0, 0.0]]]])  # positions e1, e2, 2*e1
    a = affinity(feats)[0]
    assert torch.allclose(a, torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]), atol=1e-6)
    assert affinity_loss(feats, 3 * feats, central=1.0).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.tensor([[[[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]]]])  # all parallel
    # affinities differ in 4 of 9 entries by 1
    assert affinity_loss(feats, other, central=1.0).item() == pytest.approx(4 / 9, abs=1e-6)


def test_losses_are_float32_under_bf16_autocast():
    # precision=bf16 autocasts the step: the affinity and projection products were bf16, whose
    # rounding made the affinity loss of a student close to its teacher 40% off
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 64, 1, 1, generator=g) + 0.5 * torch.randn(2, 64, 20, 20, generator=g)
    student = teacher + 0.05 * torch.randn(2, 64, 20, 20, generator=g)
    proj = random_projection(64, 16, generator=g)
    want = affinity_loss(student, teacher, 0.8), project(student, proj)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = affinity_loss(student, teacher, 0.8), project(student, proj)
    assert got[0].dtype == got[1].dtype == torch.float32
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(got[1], want[1])


def test_central_crop_keeps_the_middle():
    x = torch.arange(100.0).view(1, 1, 10, 10)
    c = central_crop(x, 0.8)
    assert c.shape == (1, 1, 8, 8) and c[0, 0, 0, 0] == 11


def test_random_projection_has_unit_columns_and_is_seeded():
    p = random_projection(384, 64, generator=torch.Generator().manual_seed(0))
    assert p.shape == (384, 64)
    assert torch.allclose(p.norm(dim=0), torch.ones(64), atol=1e-5)
    q = random_projection(384, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p, q)


def test_jitter_identity_shift_and_zoom():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    same = jitter(x, torch.tensor([[0.0, 0.0, 1.0]]))
    assert torch.allclose(same, x, atol=1e-5)
    shifted = jitter(x, torch.tensor([[0.0, 2.0, 1.0]]))  # view moves 2 px right
    assert torch.allclose(shifted[..., :6], x[..., 2:], atol=1e-4)
    # the border that comes in is the image reflected (as after reflection padding)
    assert torch.allclose(shifted[..., 0, 6:], x[..., 0, [7, 6]], atol=1e-4)
    zoomed = jitter(x, torch.tensor([[0.0, 0.0, 2.0]]))  # zoom 2x about the centre
    assert zoomed[0, 0, 3:5, 3:5].mean().item() == pytest.approx(31.5, abs=1e-4)
    assert zoomed.std() < x.std() * 0.6
    params = draw_jitters(5, 3, max_shift=8, zoom_range=(0.9, 1.1))
    assert params.shape == (5, 3, 3)
    assert params[..., :2].abs().max() <= 8 and 0.9 <= params[..., 2].min() <= 1.1


def test_crop_offsets_are_drawn_then_rounded_down_to_multiples_of_16():
    """method.md stage 2: crop offsets "rounded down to multiples of 16". At 896 px and s = 224
    an offset in [0, 672] is drawn: multiples 0..656 come 16 times in 673, 672 only once (not
    1 in 43, as if the 43 multiples themselves were drawn alike)."""
    g = torch.Generator().manual_seed(0)
    off = crop_offsets((200_000,), 896, 224, 16, generator=g)
    assert off.min() >= 0 and off.max() <= 672 and bool((off % 16 == 0).all())
    counts = torch.bincount(off // 16, minlength=43).double() / off.numel()
    assert counts[-1].item() == pytest.approx(1 / 673, abs=0.001)
    assert counts[:-1].sub(16 / 673).abs().max() < 0.003
    # 518 from 896: 378 = 23 * 16 + 10, so the last multiple, 368, takes 11 offsets of 379
    off = crop_offsets((2, 3, 2), 896, 518, 16, generator=g)
    assert off.shape == (2, 3, 2) and off.max() <= 368 and bool((off % 16 == 0).all())


def test_downsampler_with_flat_logits_is_window_average():
    down = AttentionDownsampler(4, 4, dropout=0.0, blur=0)
    with torch.no_grad():
        down.logit.weight.zero_()
        down.logit.bias.zero_()
    x = torch.randn(2, 4, 16, 12)
    out = down(x, (4, 3))
    assert torch.allclose(out, F.avg_pool2d(x, 4), atol=1e-6)


def test_downsampler_attention_picks_the_highest_logit_pixel():
    down = AttentionDownsampler(2, 2, dropout=0.0, blur=0)
    with torch.no_grad():
        down.logit.weight.copy_(torch.tensor([[100.0, 0.0]]))
        down.logit.bias.zero_()
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 1, 0] = 1.0  # the pixel with the highest logit
    x[0, 1, 1, 0] = 7.0
    out = down(x, (1, 1))
    assert out[0, 1, 0, 0].item() == pytest.approx(7.0, abs=1e-3)
    # dropped windows fall back to the learned per-offset bias (here flat -> the mean)
    down.train()
    down.dropout = 0.5
    dropped = down(x, (1, 1), keep=torch.zeros(1, 1, 1, dtype=torch.bool))
    assert dropped[0, 1, 0, 0].item() == pytest.approx(7.0 / 4, abs=1e-5)


def test_window_stride_explains_a_bad_size():
    assert window_stride(224, 16, 14) == 14
    with pytest.raises(ValueError, match="windows"):
        window_stride(20, 16, 14)
