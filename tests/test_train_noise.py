"""Each mask-noise kind moves masks in its direction, more with its level; level 0 is the identity."""

import pytest
import torch

from loftup.train.config import load_config
from loftup.train.noise import (
    KINDS,
    MaskNoise,
    add_blobs,
    apply_mask_noise,
    dilate,
    drop_masks,
    erode,
    merge_neighbours,
)


def tiles(n=4, side=8):
    """n x n non-overlapping square masks tiling a (n*side)^2 image, plus one big mask."""
    size = n * side
    masks = torch.zeros(n * n + 1, size, size, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            masks[i * n + j, i * side : (i + 1) * side, j * side : (j + 1) * side] = True
    masks[-1, 4:20, 4:20] = True
    return masks


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", KINDS)
def test_level_zero_is_the_identity(kind):
    masks = tiles()
    out = apply_mask_noise(masks, MaskNoise(**{kind: 0.0}), gen())
    assert torch.equal(out, masks)


def test_erode_and_dilate_shrink_and_grow_by_the_level():
    masks = tiles()
    areas = masks.flatten(1).sum(1)
    small, smaller = erode(masks, 0.25, 8), erode(masks, 0.5, 8)  # 2 px and 4 px bands
    assert (small <= masks).all() and (smaller <= small).all()
    # a 8x8 square away from the border loses a 2 px band: 4x4 left
    assert small[5].sum() == 16 and smaller[5].sum() == 0
    big, bigger = dilate(masks, 0.25, 8), dilate(masks, 0.5, 8)
    assert (big >= masks).all() and (bigger >= big).all()
    assert big[5].sum() == 12 * 12 and (bigger.flatten(1).sum(1) > areas).all()
    # the image border does not erode: the corner tile only loses its inner sides
    assert small[0, 0, 0] and small[0].sum() == 6 * 6 and small[-1].sum() == 12 * 12


def test_drop_removes_about_level_of_the_masks():
    masks = torch.zeros(400, 4, 4, dtype=torch.bool)
    masks[:, 0, 0] = True
    kept = [drop_masks(masks, level, gen(1)).shape[0] for level in (0.25, 0.5, 1.0)]
    assert 260 < kept[0] < 340 and 160 < kept[1] < 240 and kept[2] == 0


def test_merge_unites_neighbours():
    masks = tiles()
    merged = merge_neighbours(masks[:-1], 1.0, gen(2))  # the 16 tiles, all trying to merge
    assert 4 <= merged.shape[0] <= 12
    # every output is a union of input tiles, and together they still cover everything once
    for m in merged:
        parts = [t for t in masks[:-1] if (t & m).any()]
        assert torch.equal(torch.stack(parts).any(0), m)
    assert torch.equal(merged.sum(0), masks[:-1].sum(0))
    half = merge_neighbours(masks[:-1], 0.5, gen(2)).shape[0]
    assert merged.shape[0] <= half < 16


def test_blobs_add_false_positives_and_keep_the_real_masks_in_order():
    masks = tiles()
    out = add_blobs(masks, 0.5, gen(3))
    assert out.shape[0] == masks.shape[0] + round(0.5 * masks.shape[0])
    real = [i for i, m in enumerate(out) if any(torch.equal(m, t) for t in masks)]
    assert len(real) >= masks.shape[0]
    matched = [next(i for i, m in enumerate(out) if torch.equal(m, t)) for t in masks]
    assert matched == sorted(matched)
    assert add_blobs(masks, 1.0, gen(3)).shape[0] == 2 * masks.shape[0]


def test_noise_is_seeded_and_levels_are_checked():
    masks = tiles()
    noise = MaskNoise(erode=0.3, drop=0.3, merge=0.3, blobs=0.3)
    assert torch.equal(
        apply_mask_noise(masks, noise, gen(4)), apply_mask_noise(masks, noise, gen(4))
    )
    with pytest.raises(ValueError, match=r"mask_noise.drop must be a level in \[0, 1\]"):
        MaskNoise(drop=1.5)
    cfg = load_config({}, ["mask_noise.dilate=0.25", "mask_noise.blobs=1"])
    assert cfg.mask_noise.dilate == 0.25 and cfg.mask_noise.blobs == 1.0
