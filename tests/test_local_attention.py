"""Local attention's two forms (masked dense, gathered) give the same outputs and gradients."""

import math

import pytest
import torch

from loftup.model import LoftUp, _local_attend, neighbour_index


@pytest.mark.parametrize("window", [3, 5])
def test_masked_and_gathered_local_attention_agree(window):
    torch.manual_seed(0)
    blk = LoftUp(dim=16, num_heads=2, attention_window=window).blocks[0]
    h, w, height, width = 6, 7, 23, 26
    q = torch.randn(2, height * width, blk.norm_q.normalized_shape[0], requires_grad=True)
    kv = torch.randn(2, h * w, q.shape[-1], requires_grad=True)
    nbrs = neighbour_index(h, w, height, width, window)
    outs, grads = [], []
    for ratio in (0.0, math.inf):  # 0: always gather; inf: always the masked dense form
        out = _local_attend(blk, q, *blk.prepare_kv(kv), nbrs, dense_ratio=ratio)
        gq, gkv = torch.autograd.grad(out.square().sum(), (q, kv))
        outs.append(out.detach())
        grads.append((gq, gkv))
    assert (outs[0] - outs[1]).abs().max().item() < 1e-5
    for a, b in zip(*grads):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, a.abs().max().item())
    # and the window matters: every pixel's output ignores the tokens outside its window
    far = kv.detach().clone()
    outside = torch.ones(h * w, dtype=torch.bool)
    outside[nbrs[0]] = False
    far[:, outside] = torch.randn_like(far[:, outside])
    moved = _local_attend(blk, q.detach(), *blk.prepare_kv(far), nbrs)
    assert (moved[:, 0] - outs[1][:, 0]).abs().max().item() < 1e-5
    assert (moved[:, -1] - outs[1][:, -1]).abs().max().item() > 1e-3


def test_fast_path_forms_agree_with_the_scale_folded_into_the_queries():
    """The inference path's call (scale 1: folded into q) takes the same two forms."""
    from loftup.fastpath import local_attention

    torch.manual_seed(0)
    h, w, height, width = 6, 7, 23, 26
    q, k, v = (torch.randn(2, 3, n, 8) for n in (height * width, h * w, h * w))
    nbrs = neighbour_index(h, w, height, width, 3)
    gathered = local_attention(q, k, v, nbrs, dense_ratio=0.0)
    dense = local_attention(q, k, v, nbrs, dense_ratio=math.inf)
    assert (gathered - dense).abs().max().item() < 1e-5
    scaled = local_attention(q, k, v, nbrs, 0.5, dense_ratio=0.0)
    assert (scaled - local_attention(0.5 * q, k, v, nbrs, dense_ratio=math.inf)).abs().max() < 1e-5
    assert (scaled - gathered).abs().max().item() > 1e-2  # the scale is applied
