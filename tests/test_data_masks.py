"""Masks made for plain image folders (superpixels, SAM) and their cache, the step sampler and
the batch collation."""

import json

import numpy as np
import pytest
import torch

from loftup.data.dataset import MaskedImages, StepSampler, collate, unpack_masks
from loftup.data.masks import MaskCache, pack
from loftup.errors import LoftUpError, UsageError
from train_fixtures import scene, tiny_sam, write_folder, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_superpixels_are_computed_once_and_read_from_the_cache(tmp_path):
    root = write_folder(tmp_path / "imgs", 2, size=32)
    cache = tmp_path / "cache"
    ds = MaskedImages(root, size=32, masks="superpixels", superpixels=[4, 16], cache_dir=cache)
    first = ds[0]
    masks = unpack_masks(first["masks"], 32)
    assert masks.shape[0] >= 6 and masks.any(0).all()  # two granularities, covering the image
    files = list(cache.rglob("*.npz"))
    assert len(files) == 1
    # the cache is what a second read serves: plant a recognisable entry and read it back
    planted = np.zeros((1, 32, 32), bool)
    planted[0, :5, :7] = True
    ds.cache.put(ds.images[0], pack(planted), 32)
    again = MaskedImages(root, size=32, masks="superpixels", superpixels=[4, 16], cache_dir=cache)
    assert torch.equal(unpack_masks(again[0]["masks"], 32), torch.from_numpy(planted))
    # other settings are another key: the planted entry is not served to them
    other = MaskedImages(root, size=32, masks="superpixels", superpixels=[8], cache_dir=cache)
    assert other.cache.path(other.images[0]) != ds.cache.path(ds.images[0])
    assert not torch.equal(unpack_masks(other[0]["masks"], 32), torch.from_numpy(planted))


def test_a_damaged_cache_entry_is_recomputed(tmp_path):
    root = write_folder(tmp_path / "imgs", 1, size=16)
    ds = MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c")
    want = ds[0]["masks"]
    ds.cache.path(ds.images[0]).write_bytes(b"broken")
    assert torch.equal(ds[0]["masks"], want)


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_truncated_or_altered_cache_entry_is_recomputed(tmp_path, damage):
    """A .npz cut short (a full disk, a copy that stopped) or with altered bytes is a zip
    archive that zipfile refuses (BadZipFile, neither an OSError nor a ValueError): it was
    raised out of the data loader and ended the run instead of being recomputed."""
    root = write_folder(tmp_path / "imgs", 1, size=32)
    ds = MaskedImages(root, size=32, masks="superpixels", cache_dir=tmp_path / "c")
    want = ds[0]["masks"]
    path = ds.cache.path(ds.images[0])
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert ds.cache.get(ds.images[0]) is None
    assert torch.equal(ds[0]["masks"], want)
    assert ds.cache.get(ds.images[0]) is not None  # written again, whole


def test_a_mask_cache_that_cannot_be_written_is_named_and_not_blamed_on_the_images(
    tmp_path, caplog
):
    """A cache folder that cannot be made or written was reported as every image being
    unreadable ("none of the 2 files under imgs could be read; is the folder the right one?")."""
    root = write_folder(tmp_path / "imgs", 2, size=16)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=r"mask cache .*a_file/masks cannot be written \(.*\); set "
                       r"data.cache_dir \(or LOFTUP_CACHE\) to a writable folder"):  # fmt: skip
        MaskedImages(root, size=16, masks="superpixels", cache_dir=blocker / "masks")
    # one that fails later (a full disk; here a file in the folder's place) costs the cache
    # entry, not the image
    ds = MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c")
    (tmp_path / "c").rmdir()
    (tmp_path / "c").write_text("x")
    with caplog.at_level("WARNING", logger="loftup.data"):
        sample = ds[0]
    assert sample["index"] == 0 and sample["skipped"] == [] and sample["masks"].shape[0] > 0
    assert "could not cache the masks of" in caplog.text


def test_cache_keys_follow_the_file(tmp_path):
    img = tmp_path / "a.png"
    write_folder(tmp_path / "f", 1, size=8)
    img.write_bytes((tmp_path / "f" / "img_000.png").read_bytes())
    cache = MaskCache(tmp_path / "c", {"source": "superpixels"})
    before = cache.key(img)
    img.write_bytes(img.read_bytes() + b"\0")
    assert cache.key(img) != before


def test_sam_without_weights_says_what_to_do(tmp_path):
    write_folder(tmp_path / "imgs", 1, size=8)
    with pytest.raises(LoftUpError, match="data.sam_weights"):
        MaskedImages(tmp_path / "imgs", size=8, masks="sam")
    with pytest.raises(LoftUpError, match="unknown mask source"):
        MaskedImages(tmp_path / "imgs", size=8, masks="sam2")


def test_step_sampler_splits_global_batches_and_resumes_by_step():
    one = list(StepSampler(10, global_batch=4, steps=5, seed=3))
    assert all(len(b) == 4 for b in one)
    assert sorted(one[0] + one[1]) == sorted(set(one[0] + one[1]))  # no repeats in an epoch
    r0 = list(StepSampler(10, global_batch=4, steps=5, seed=3, rank=0, world=2))
    r1 = list(StepSampler(10, global_batch=4, steps=5, seed=3, rank=1, world=2))
    assert [a + b for a, b in zip(r0, r1)] == one
    assert list(StepSampler(10, global_batch=4, steps=5, seed=3, start_step=3)) == one[3:]
    assert one[2] != one[0]  # epoch 2 (steps 2-3) is another permutation
    with pytest.raises(LoftUpError, match=r"batch_size 3 is not divisible by 2 processes; set "
                       r"batch_size to a multiple of 2 \(e.g. 4\)"):  # fmt: skip
        StepSampler(10, global_batch=3, steps=1, world=2)
    with pytest.raises(LoftUpError, match=r"has 3 images, fewer than one batch of 4; lower "
                       r"batch_size to 3 or fewer, or add images"):  # fmt: skip
        StepSampler(3, global_batch=4, steps=1)


def test_collate_pads_masks_and_keeps_counts(tmp_path):
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    ds = MaskedImages(root, size=16, masks="sa1b", max_masks=3)
    sample = ds[0]
    sample2 = dict(ds[1], masks=ds[1]["masks"][:1])
    batch = collate([sample, sample2])
    assert batch["masks"].shape[:2] == (2, sample["masks"].shape[0])
    assert batch["n_masks"].tolist() == [sample["masks"].shape[0], 1]
    assert not unpack_masks(batch["masks"][1, 1:], 16).any()
    assert json.dumps(batch["skipped"]) == "[]"


@pytest.mark.slow
def test_sam_masks_through_transformers_are_deduplicated_and_cached(tmp_path):
    from loftup.data.sam import SamMaskGenerator, dedupe

    weights = tiny_sam(tmp_path / "sam")
    image = scene(0, 32)[0]
    gen = SamMaskGenerator(weights, device="cpu", points_per_side=4, pred_iou_thresh=0,
                           stability_thresh=0)  # fmt: skip
    masks = gen(image)  # random weights: we check the plumbing, not the masks' quality
    assert masks.dtype == bool and masks.shape[1:] == (32, 32) and 0 < len(masks) <= 48
    areas = masks.reshape(len(masks), -1).sum(1)
    assert list(areas) == sorted(areas, reverse=True)
    flat = torch.from_numpy(masks).flatten(1).float()
    inter = flat @ flat.T
    iou = inter / (flat.sum(1)[:, None] + flat.sum(1)[None] - inter)
    assert (iou.fill_diagonal_(0) <= 0.7).all()  # duplicates were removed
    in_batches = SamMaskGenerator(weights, device="cpu", points_per_side=4, points_per_batch=5,
                                  pred_iou_thresh=0, stability_thresh=0)(image)  # fmt: skip
    assert np.array_equal(in_batches, masks)  # prompts decoded 5 at a time, not 16: the same
    twice = torch.from_numpy(np.concatenate([masks[:1], masks[:1]]))
    assert dedupe(twice, torch.tensor([0.5, 0.9]), 0.7).tolist() == [1]
    root = write_folder(tmp_path / "imgs", 1, size=32)
    ds = MaskedImages(
        root, size=32, masks="sam", sam_weights=str(weights), cache_dir=tmp_path / "c"
    )
    ds[0]  # default thresholds: maybe no mask passes for random weights, but it runs and caches
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 1
