"""Readers on real on-disk layouts: SA-1B JSON with COCO RLE, image folders with cached superpixels."""

import json
import logging

import numpy as np
import pytest
import torch

from loftup.data.dataset import MaskedImages, StepSampler, collate, unpack_masks
from loftup.data.masks import MaskCache, pack
from loftup.errors import LoftUpError, UsageError
from train_fixtures import scene, tiny_config, tiny_sam, write_folder, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_sa1b_masks_decode_to_the_masks_written(tmp_path):
    root = write_sa1b(tmp_path / "sa", 3, size=32)
    ds = MaskedImages(root, size=32, masks="sa1b")
    assert len(ds) == 3 and ds.orphans == 0
    sample = ds[1]
    masks = unpack_masks(sample["masks"], 32).numpy()
    _, want = scene(1, 32)
    assert masks.shape == (4, 32, 32)
    for got, expected in zip(masks, want):
        assert np.array_equal(got, expected)
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.uint8


def test_sa1b_masks_in_uncompressed_rle_are_read(tmp_path):
    """COCO RLE also comes uncompressed (counts a list of run lengths, column-major, starting
    with the 0s), as COCO's crowd masks and many converters write it: every such file was
    skipped as unreadable (pycocotools' decode takes bytes only)."""
    root = write_sa1b(tmp_path / "sa", 2, size=32, height=40)

    want = unpack_masks(MaskedImages(root, size=16, masks="sa1b")[0]["masks"], 16)
    data = json.loads((root / "sa_0.json").read_text())
    _, written = scene(0, 32)
    for ann, m in zip(data["annotations"], written):
        full = np.concatenate([m, np.zeros((8, 32), bool)])
        ann["segmentation"] = {"size": [40, 32], "counts": _runs(full)}
    (root / "sa_0.json").write_text(json.dumps(data))
    sample = MaskedImages(root, size=16, masks="sa1b")[0]
    assert sample["skipped"] == [] and torch.equal(unpack_masks(sample["masks"], 16), want)


def test_sa1b_non_square_images_are_centre_cropped_with_their_masks(tmp_path):
    root = write_sa1b(tmp_path / "sa", 2, size=32, height=48)  # 16 black rows below
    ds = MaskedImages(root, size=16, masks="sa1b", max_masks=3)
    masks = unpack_masks(ds[0]["masks"], 16).numpy()
    _, written = scene(0, 32)
    expected = []
    for m in written[:3]:  # the first max_masks of the file, cropped, area-resized
        full = np.concatenate([m, np.zeros((16, 32), bool)])[8:40]  # the centred 32x32
        small = full.reshape(16, 2, 16, 2).mean(axis=(1, 3)) >= 0.5
        if small.any():  # masks outside the crop are left out
            expected.append(small)
    assert len(expected) < 3 and masks.shape[0] == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(masks, expected))


def _rewrite_masks(json_path, change):
    """Replace every RLE mask of an SA-1B JSON by ``change(mask)``."""
    from pycocotools import mask as mask_utils

    data = json.loads(json_path.read_text())
    for ann in data["annotations"]:
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        m = change(mask_utils.decode(rle).astype(np.uint8))
        new = mask_utils.encode(np.asfortranarray(m))
        ann["segmentation"] = {"size": new["size"], "counts": new["counts"].decode()}
    json_path.write_text(json.dumps(data))


def test_sa1b_masks_of_a_resized_image_follow_it_and_others_are_refused(tmp_path, caplog):
    """Images resized after their masks were made (to save disk) keep masks of the original
    size: those cover the same picture and must be cropped to their own centred square. Before,
    the image's box was cut from them: masks twice the size gave their top-left part, silently."""
    root = write_sa1b(tmp_path / "sa", 2, size=32, height=48)
    want = unpack_masks(MaskedImages(root, size=16, masks="sa1b")[0]["masks"], 16)
    _rewrite_masks(root / "sa_0.json", lambda m: np.kron(m, np.ones((2, 2), np.uint8)))
    ds = MaskedImages(root, size=16, masks="sa1b")
    assert ds[0]["skipped"] == [] and torch.equal(unpack_masks(ds[0]["masks"], 16), want)
    _rewrite_masks(root / "sa_0.json", lambda m: m[:64, :64])  # another picture's shape
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        sample = ds[0]
    assert sample["skipped"] == [str(ds.images[0])] and sample["index"] == 1
    assert "masks are 64x64 px but the image is 32x48 px" in caplog.text
    assert "pair each image with its own JSON" in caplog.text  # not "not SA-1B annotations"
    assert "not SA-1B annotations" not in caplog.text


def test_unreadable_files_are_skipped_counted_and_logged(tmp_path, caplog):
    root = write_sa1b(tmp_path / "sa", 4, size=16)
    (root / "sa_1.json").write_text("{not json")
    (root / "sa_2.jpg").write_bytes(b"not a jpeg")
    (root / "sa_9.jpg").write_bytes((root / "sa_0.jpg").read_bytes())  # no JSON next to it
    ds = MaskedImages(root, size=16, masks="sa1b")
    assert len(ds) == 4 and ds.orphans == 1
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        samples = [ds[i] for i in range(4)]
    order = [p.name for p in ds.images]
    bad = {order.index("sa_1.jpg"), order.index("sa_2.jpg")}
    skipped = [p for s in samples for p in s["skipped"]]
    # item 1 is skipped (bad JSON), then item 2 (bad JPEG) both on its own and after item 1
    assert sorted(set(skipped)) == sorted(str(ds.images[i]) for i in bad)
    assert all(s["index"] not in bad for s in samples)
    assert [s["index"] for s in samples] == [0, 3, 3, 3]
    assert "skipping unreadable" in caplog.text
    batch = collate(samples)
    assert len(batch["skipped"]) == len(skipped)


def test_an_image_too_large_for_pillow_is_skipped_like_an_unreadable_one(tmp_path, monkeypatch):
    """Pillow refuses images above its pixel limit with DecompressionBombError, neither an
    OSError nor a ValueError: one such image in the folder ended the run with a traceback."""
    from PIL import Image

    root = write_folder(tmp_path / "imgs", 3, size=16)
    Image.new("RGB", (32, 32)).save(root / "img_001.png")  # 1024 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # refused above 400
    ds = MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c")
    with pytest.warns(Image.DecompressionBombWarning):  # 16 x 16 = 256 is above 200
        sample = ds[1]
    assert sample["skipped"] == [str(root / "img_001.png")] and sample["index"] == 2


def test_training_reads_images_above_pillows_limit_when_data_max_image_pixels_says_so(
    tmp_path, monkeypatch, caplog
):
    """A training image above Pillow's limit was skipped with the advice of another command
    (``loftup upsample --max-image-pixels N``) and training had no way to raise it. The limit
    is raised for the dataset's own reads, in the process that reads, so in a DataLoader
    worker as in the main one; the process's own limit is left as it was."""
    from PIL import Image

    from loftup.train.loop import training_data

    root = write_folder(tmp_path / "imgs", 3, size=16)
    Image.new("RGB", (32, 32)).save(root / "img_001.png")  # 1024 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # refused above 400
    plain = MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c")
    with (
        caplog.at_level(logging.WARNING, logger="loftup.data"),
        pytest.warns(Image.DecompressionBombWarning),
    ):
        assert plain[1]["skipped"] == [str(root / "img_001.png")]
    (message,) = [r.getMessage() for r in caplog.records]
    assert "raise the limit: loftup train ... data.max_image_pixels=N (0: no limit)" in message
    assert "upsample" not in message and "\n" not in message
    cfg = tiny_config(root, tmp_path / "run", 1, 1, "data.masks=superpixels",
                      f"data.cache_dir={tmp_path / 'c'}", "data.max_image_pixels=1024")  # fmt: skip
    for limit in (1024, 0):
        cfg.data.max_image_pixels = limit
        ds = training_data(cfg, torch.device("cpu"))
        assert ds[1]["skipped"] == [] and ds[1]["index"] == 1
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1)
        assert [s["skipped"] for s in loader] == [[], [], []]
    assert Image.MAX_IMAGE_PIXELS == 200


def test_missing_or_empty_folders_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(LoftUpError, match="does not exist") as e:
        MaskedImages(tmp_path / "missing", size=8)
    assert "VARIABLE" not in str(e.value)
    # a $VAR given from Python, or quoted on the command line (--data '$DATA/sa1b'), is not
    # expanded: the error says how to have it expanded in either, and where it is
    hint = (
        "; its $ was taken as written{}: on the command line, let the shell expand it (--data "
        '"$DATA/x" or unquoted, not in single quotes); from Python, expand it first '
        "(os.path.expandvars); a config file's data.root and a data.root= override expand $VAR "
        "themselves"
    )
    monkeypatch.delenv("DATA", raising=False)
    with pytest.raises(LoftUpError) as e:
        MaskedImages(f"{tmp_path}/${{DATA}}/sa1b", size=8)
    assert str(e.value).endswith(hint.format(""))
    (tmp_path / "d" / "sa1b").mkdir(parents=True)
    monkeypatch.setenv("DATA", str(tmp_path / "d"))
    with pytest.raises(LoftUpError) as e:
        MaskedImages("$DATA/sa1b", size=8)
    there = f" (expanded here it is {tmp_path / 'd' / 'sa1b'}, which exists)"
    assert str(e.value) == (
        "data folder $DATA/sa1b does not exist (pass --data /path/to/images, or data.root=)"
        + hint.format(there)
    )
    # ~user of no user of this machine: one line naming the path (Path.expanduser raised a
    # bare RuntimeError)
    with pytest.raises(UsageError) as e:
        MaskedImages("~no_such_user_loftup/sa1b", size=8)
    assert str(e.value) == (
        "data folder ~no_such_user_loftup/sa1b: ~no_such_user_loftup is no home folder (no user "
        "no_such_user_loftup on this machine); give the path without it, e.g. its "
        "absolute path"
    )
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(LoftUpError, match="no sa_N.jpg images with their sa_N.json"):
        MaskedImages(tmp_path, size=8, masks="sa1b")
    with pytest.raises(UsageError, match=r"^mask cache ~no_such_user_loftup/c: ~no_such_user"):
        MaskedImages(tmp_path, size=8, masks="superpixels", cache_dir="~no_such_user_loftup/c")
    ds = MaskedImages(
        tmp_path, size=8, masks="superpixels", cache_dir=tmp_path / "c", max_retries=2
    )
    with pytest.raises(LoftUpError, match="none of the 1 files under .* could be read"):
        ds[0]


@pytest.mark.parametrize(
    "given, why",
    [
        ({"size": 0}, "size must be a whole number >= 1, got 0"),
        ({"size": 16.5}, "size must be a whole number >= 1, got 16.5"),
        ({"max_images": 0}, "max_images must be a whole number >= 1 or None (all), got 0"),
        ({"max_images": -1}, "max_images must be a whole number >= 1 or None (all), got -1"),
        ({"max_masks": -1}, "max_masks must be a whole number >= 1, got -1"),
        ({"max_retries": True}, "max_retries must be a whole number >= 0, got True"),
    ],
)
def test_masked_images_counts_out_of_range_are_named(tmp_path, given, why):
    """size=0 made every image "unreadable", max_images=0 said the images had no JSON beside
    them, and -1 (max_images, max_masks) dropped the last image or mask without a word."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    with pytest.raises(UsageError) as e:
        MaskedImages(root, **{"size": 16, **given})
    assert str(e.value) == f"MaskedImages: {why}"
    assert len(MaskedImages(root, size=np.int64(16), max_images=np.int64(1))) == 1


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


def _exif_rotated(array: np.ndarray, path, orientation: int) -> None:
    """Save ``array`` (the upright picture) stored as a camera does: the pixels turned back by
    EXIF ``orientation`` 6 (turn clockwise to view) or 3 (upside down), the tag saying so."""
    from PIL import Image

    stored = np.rot90(array, k=1 if orientation == 6 else 2).copy()  # inverse of the view turn
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)


def test_training_images_are_read_upright_and_in_rgb_as_upsample_reads_them(tmp_path):
    """Training read images with Pillow's plain convert("RGB"): EXIF orientation ignored (a
    phone photo trained on its side, with masks computed on it sideways), 16-bit grayscale
    clipped to white, transparent pixels black (``loftup upsample`` reads all of these upright,
    at full range and over white)."""
    from PIL import Image

    from loftup.data.images import load_square
    from loftup.io import load_image

    upright, _ = scene(0, 32)
    upright = np.concatenate([upright, np.zeros((16, 32, 3), np.uint8)])  # 48 high, 32 wide
    Image.fromarray(upright).save(tmp_path / "plain.png")
    _exif_rotated(upright, tmp_path / "turned.png", 6)
    image, crop = load_square(tmp_path / "turned.png", 16)
    assert crop.image == (32, 48)
    assert torch.equal(image, load_square(tmp_path / "plain.png", 16)[0])

    ramp = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    for name in ("gray16.png", "clear.png"):
        image, _ = load_square(tmp_path / name, 32)
        want = torch.from_numpy(np.array(load_image(tmp_path / name))).permute(2, 0, 1)
        assert torch.equal(image, want), name
    assert abs(load_square(tmp_path / "gray16.png", 32)[0].float().mean().item() - 127.5) < 2


@pytest.mark.parametrize("orientation", [6, 3])
@pytest.mark.parametrize("masks_stored_as", ["upright", "stored"])
def test_sa1b_masks_follow_an_exif_rotated_image(tmp_path, orientation, masks_stored_as):
    """The image is read upright (EXIF applied); its masks are taken upright too (SAM's own
    reader, OpenCV, applies EXIF). Masks of the stored pixels' shape, which only a 90-degree
    turn can tell apart, are turned like the image, not refused as another picture's."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    root = write_sa1b(tmp_path / "plain", 1, size=32, height=48)
    want = MaskedImages(root, size=16, masks="sa1b")[0]
    turned = tmp_path / "turned"
    turned.mkdir()
    upright = np.asarray(Image.open(root / "sa_0.jpg"))
    _exif_rotated(upright, turned / "sa_0.jpg", orientation)
    data = json.loads((root / "sa_0.json").read_text())
    if masks_stored_as == "stored":
        for ann in data["annotations"]:
            rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
            m = np.rot90(mask_utils.decode(rle), k=1 if orientation == 6 else 2)
            new = mask_utils.encode(np.asfortranarray(m))
            ann["segmentation"] = {"size": new["size"], "counts": new["counts"].decode()}
    (turned / "sa_0.json").write_text(json.dumps(data))
    got = MaskedImages(turned, size=16, masks="sa1b")[0]
    assert got["skipped"] == []
    assert (got["image"].float() - want["image"].float()).abs().mean() < 3  # JPEG twice
    if masks_stored_as == "stored" and orientation == 3:  # same shape: taken as upright
        assert not torch.equal(got["masks"], want["masks"])
    else:
        assert torch.equal(got["masks"], want["masks"])


def test_masks_cached_by_the_sideways_reader_are_not_served(tmp_path):
    """Masks cached before images were read upright were computed on EXIF-turned photos as
    stored (on their side): served for the upright image they would be silently misplaced."""
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    upright = np.concatenate([scene(0, 32)[0], np.zeros((16, 32, 3), np.uint8)])
    _exif_rotated(upright, root / "a.png", 6)
    Image.fromarray(upright).save(root / "b.png")
    old = {"source": "superpixels", "size": 16, "max_masks": 150, "segments": [4]}
    stale = pack(np.ones((1, 16, 16), bool))
    MaskCache(tmp_path / "c", old).put(root / "a.png", stale, 16)
    ds = MaskedImages(
        root, size=16, masks="superpixels", superpixels=(4,), cache_dir=tmp_path / "c"
    )
    a, b = ds[0], ds[1]
    assert not torch.equal(a["masks"], torch.from_numpy(stale))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "not JSON"),
        ("\udcff", "not JSON"),  # bytes that are not UTF-8
        ("[" * 100000, "not JSON"),  # nested past Python's recursion limit
        ("[1, 2]", "no 'annotations' list"),
        ('{"annotations": [5]}', "annotation 0 is not COCO RLE"),
        ('{"annotations": [{"segmentation": [[1, 2, 3, 4, 5, 6]]}]}', "is not COCO RLE"),
        ('{"annotations": [{"segmentation": {"counts": "PP"}}]}', "is not COCO RLE"),
        ('{"annotations": [{"segmentation": {"size": [-3, 16], "counts": "PP"}}]}', "annotation 0"),
        (
            '{"annotations": [{"segmentation": {"size": [16, 16], "counts": "\u00e9"}}]}',
            "annotation 0",
        ),
        (
            '{"annotations": [{"segmentation": {"size": [16, 16], "counts": [1, "a"]}}]}',
            "annotation 0",
        ),
    ],
)
def test_a_broken_sa1b_json_is_skipped_and_named(tmp_path, caplog, text, why):
    """A damaged JSON was skipped under its image's name with Python's bare message
    ('Expecting value: line 1 column 1'), pointing at the JPEG; a negative size (OverflowError)
    was not caught at all and ended the run with a traceback from inside pycocotools."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    (root / "sa_0.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    ds = MaskedImages(root, size=16, masks="sa1b")
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        sample = ds[0]
    assert sample["skipped"] == [str(root / "sa_0.jpg")] and sample["index"] == 1
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"{root / 'sa_0.json'}: " in message and why in message and "\n" not in message


def _one_mask_json(path, height, width):
    """An SA-1B JSON of one mask, a valid RLE of ``height`` x ``width`` (its top-left quarter)."""
    from pycocotools import mask as mask_utils

    m = np.zeros((height, width), np.uint8)
    m[: height // 2, : width // 2] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    ann = {"segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
    path.write_text(json.dumps({"annotations": [ann]}))


def _skipped_for_a_mask(tmp_path, caplog, n: int, part: str, value) -> tuple:
    """An SA-1B folder of 2 images whose first JSON has ``part`` of mask ``n`` set to ``value``:
    its first item, checked to be the second image with the first skipped; the folder and the
    one warning that names it."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    data = json.loads((root / "sa_0.json").read_text())
    data["annotations"][n]["segmentation"][part] = value
    (root / "sa_0.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        sample = MaskedImages(root, size=16, masks="sa1b")[0]
    assert sample["skipped"] == [str(root / "sa_0.jpg")] and sample["index"] == 1
    (message,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in message
    return root, message


@pytest.mark.parametrize(
    "size, why",
    [
        ([16.5, 16], "not two positive integers"),
        (["16", 16], "not two positive integers"),
        ([16], "not two positive integers"),
        ([0, 16], "not two positive integers"),
        ([True, 16], "not two positive integers"),
        ([16, 16, 1], "not two positive integers"),
        # as [100000, 100000] would be, without decoding 10 GB should the check ever go
        ([4000, 4000], "a 4000x4000 px mask, implausibly large for its 16x16 px image"),
    ],
)
def test_an_sa1b_mask_size_that_is_no_size_is_refused_before_decoding(tmp_path, caplog, size, why):
    """pycocotools allocates the whole mask of the RLE's size before anything compares it with
    the image: a damaged size of [100000, 100000] crashed the process (10 GB; a segfault under a
    memory limit). Refused as a damaged JSON first; the RLE is valid for its 16 x 16 px."""
    root, message = _skipped_for_a_mask(tmp_path, caplog, 1, "size", size)
    assert f"{root / 'sa_0.json'}: annotation 1 " in message and why in message
    assert "not SA-1B annotations" in message and "\n" not in message


def test_sa1b_masks_far_larger_than_their_image_are_refused_before_decoding(
    tmp_path, caplog, monkeypatch
):
    """Masks of a resized image are read (up to 8 times its side, 64 times its pixels, and at
    most MAX_MASK_PIXELS): a larger RLE was decoded whole, however large its size."""
    from loftup.data import sa1b

    root = write_sa1b(tmp_path / "sa", 2, size=16)
    _one_mask_json(root / "sa_0.json", 128, 128)  # 8 times the side: a resized image's
    ds = MaskedImages(root, size=16, masks="sa1b")
    assert ds[0]["skipped"] == [] and ds[0]["masks"].shape[0] == 1
    _one_mask_json(root / "sa_0.json", 136, 136)  # 72 times the pixels
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        assert ds[0]["skipped"] == [str(root / "sa_0.jpg")]
    assert "annotation 0 has a 136x136 px mask, implausibly large for its 16x16 px" in caplog.text
    caplog.clear()
    monkeypatch.setattr(sa1b, "MAX_MASK_PIXELS", 1000)  # the cap, whatever the image
    _one_mask_json(root / "sa_0.json", 32, 32)
    with caplog.at_level(logging.WARNING, logger="loftup.data"):
        assert ds[0]["skipped"] == [str(root / "sa_0.jpg")]
    assert "annotation 0 has a 32x32 px mask, implausibly large" in caplog.text
    _one_mask_json(root / "sa_0.json", 16, 16)  # its image's own size: read whatever the cap
    monkeypatch.setattr(sa1b, "MAX_MASK_PIXELS", 100)
    assert ds[0]["skipped"] == []


def test_plain_images_read_as_sa1b_say_how_to_train_on_them(tmp_path):
    """A folder of photos without SA-1B JSON, read with the default data.masks=sa1b, said only
    that it found no sa_N.jpg with sa_N.json: not that it saw the images, nor what to pass."""
    root = write_folder(tmp_path / "photos", 3, size=16)  # PNGs, no JSON
    with pytest.raises(LoftUpError) as info:
        MaskedImages(root, size=16, masks="sa1b")
    message = str(info.value)
    assert "3 images without an SA-1B JSON" in message and "--masks superpixels" in message


def test_image_folders_linked_into_the_data_folder_are_listed_once(tmp_path):
    """Shards on other disks are linked into one data folder: os.walk did not follow the
    links, so their images were silently left out; a link back up must not loop, and a folder
    linked twice is read once (not trained on twice)."""
    from loftup.data.images import list_images

    root = write_folder(tmp_path / "data" / "a", 2, size=8).parent
    other = write_folder(tmp_path / "disk2" / "shard", 3, size=8)
    (root / "b").symlink_to(other, target_is_directory=True)
    (root / "c").symlink_to(other, target_is_directory=True)  # the same shard again
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # a loop
    found = list_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == [
        "a/img_000.png", "a/img_001.png", "b/img_000.png", "b/img_001.png", "b/img_002.png"
    ]  # fmt: skip


def test_the_pictures_of_a_run_inside_the_data_folder_are_not_training_images(tmp_path):
    """A run whose --out lies in its own data folder (`--data . --out runs/s1`) draws PCA
    pictures there (viz/step_N.png): its --resume read them as training images (other data
    than the run it goes on with, and PCA plots to learn from), as did every later run on the
    folder. A picture named so outside a run folder is still an image."""
    from loftup.train.monitor import Monitor, write_run_record

    root = write_folder(tmp_path / "imgs", 2, size=32)
    run = root / "runs" / "s1"
    run.mkdir(parents=True)
    write_run_record(run, {}, 1)
    drawn = Monitor(run, tensorboard=False).picture_path(1000)
    write_folder(drawn.parent, 1, size=32).joinpath("img_000.png").rename(drawn)
    lookalike = write_folder(root / "mine" / "viz", 1, size=32) / "img_000.png"
    lookalike = lookalike.rename(lookalike.with_name(drawn.name))
    ds = MaskedImages(root, size=32, masks="superpixels", cache_dir=tmp_path / "c")
    assert ds.images == sorted([root / "img_000.png", root / "img_001.png", lookalike])


def test_two_images_of_one_sa1b_json_are_refused_naming_both(tmp_path):
    """``sa_0.jpg`` beside ``sa_0.JPG`` (or ``sa_0.jpeg``) on a disk that tells case apart both
    took ``sa_0.json``: one image trained on the other's masks without a word."""
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    (root / "sa_1.JPG").write_bytes((root / "sa_1.jpg").read_bytes())
    with pytest.raises(UsageError) as e:
        MaskedImages(root, size=16, masks="sa1b")
    assert str(e.value).startswith(f"sa_1.JPG and sa_1.jpg in {root} share one annotation file")
    assert "sa_1.json" in str(e.value) and "\n" not in str(e.value)
    (root / "sa_1.JPG").rename(root / "sa_1.jpeg")
    with pytest.raises(UsageError, match="sa_1.jpeg and sa_1.jpg in .* share one annotation"):
        MaskedImages(root, size=16, masks="sa1b")


def test_an_upper_case_json_is_the_annotation_of_its_image(tmp_path):
    root = write_sa1b(tmp_path / "sa", 2, size=16)
    (root / "sa_1.jpg").rename(root / "SA_1.JPG")
    (root / "sa_1.json").rename(root / "SA_1.JSON")
    ds = MaskedImages(root, size=16, masks="sa1b")
    assert ds.orphans == 0 and ds.annotations[0].name == "SA_1.JSON"
    assert ds[0]["skipped"] == [] and ds[0]["masks"].shape[0] > 0


def _runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed runs of ``mask``: column-major, starting with the 0s."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    lengths = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return lengths if not flat[0] else [0, *lengths]


def test_compressed_rle_runs_are_read_as_pycocotools_writes_them():
    """The run lengths read from COCO's compressed strings (5-bit groups, signed differences
    from the run two before) are the mask's, over random, blocky, full and empty masks."""
    from pycocotools import mask as mask_utils

    from loftup.data.rle import compressed_runs, decode_rle

    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        mask = [rng.random((h, w)) < rng.random(), np.zeros((h, w), bool), np.ones((h, w), bool)]
        mask = mask[t % 3]
        mask[rng.integers(h) :, : rng.integers(w) + 1] ^= t % 2 == 0
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert compressed_runs(rle["counts"]).tolist() == _runs(mask), (t, h, w)
        for counts in (rle["counts"].decode(), _runs(mask)):
            assert np.array_equal(decode_rle({"size": [h, w], "counts": counts}), mask)
    # the longest numbers read: 6 groups (256 written with 4 groups of leading zeros)
    assert not decode_rle({"size": [16, 16], "counts": "PXPPP0"}).any()


def test_runs_of_2_29_pixels_or_more_are_read_as_pycocotools_reads_them():
    """A run (or a growth of one) of 2**29 pixels or more takes 7 groups, which pycocotools
    reads right where the number is positive: such masks (of an image read where
    max_image_pixels allows it) were refused as damaged strings. Read without decoding the
    mask: pycocotools' area, from its own reading of the string, is the check."""
    from pycocotools import mask as mask_utils

    from loftup.data.rle import compressed_runs

    side = 1 << 16
    for runs in ([3, 2**29 + 5, 10, 2**30 + 10], [3, 10, 5, 2**31 + 9], [2**31 + 1, 7]):
        runs.append(side * side - sum(runs))
        rle = mask_utils.frPyObjects({"size": [side, side], "counts": runs}, side, side)
        read = compressed_runs(rle["counts"]).tolist()
        assert read == runs and sum(read[1::2]) == mask_utils.area(rle)


@pytest.mark.parametrize(
    "counts, why",
    [
        ("0", "its runs cover 0 pixels, not the 16x16 = 256 of its size"),
        ("0Q", "its counts end inside a number (cut short)"),
        ("0~", "its counts hold '~', not a character of COCO's RLE strings"),
        ("0oooooooo0", "its counts hold a number of 9 groups, too large a run"),
        # a negative number of 7 groups: pycocotools shifts its sign by 35 bits in a 32-bit
        # int, and reads it as another number
        ("0PPPPPP@", "its counts hold a negative number of 7 groups, which pycocotools misreads"),
        ([0, 10], "its runs cover 10 pixels, not the 16x16 = 256"),
        ([0, -10, 266], "its counts hold a negative or too long run"),
        ([0, 10.0, 246], "its counts are not a list of whole numbers"),
    ],
)
def test_rle_runs_that_do_not_cover_the_mask_are_refused_not_read_from_memory(
    tmp_path, caplog, counts, why
):
    """pycocotools fills a mask whose runs fall short of its size with whatever its memory
    held: a damaged annotation read as a different random mask each time, never an error."""
    root, message = _skipped_for_a_mask(tmp_path, caplog, 2, "counts", counts)
    assert f"{root / 'sa_0.json'}: annotation 2 does not decode ({why}" in message


def test_a_folder_of_unextracted_sa1b_shards_says_to_extract_them(tmp_path):
    """SA-1B downloads as sa_NNNNNN.tar shards: a folder of them said only 'no sa_N.jpg images
    found', as if the path were wrong."""
    (tmp_path / "sa1b").mkdir()
    for n in (1, 0):
        (tmp_path / "sa1b" / f"sa_00000{n}.tar").write_bytes(b"")
    with pytest.raises(LoftUpError) as e:
        MaskedImages(tmp_path, size=16, masks="sa1b")
    shard = tmp_path / "sa1b" / "sa_000000.tar"
    assert str(e.value).endswith(
        "it holds archives (sa_000000.tar and 1 more), whose images are not read: extract them "
        f"first (an SA-1B shard: tar -xf {shard} -C {shard.parent})"
    )
    (tmp_path / "sa1b" / "sa_000001.tar").unlink()
    with pytest.raises(LoftUpError, match=r"archives \(sa_000000.tar\), whose"):
        MaskedImages(tmp_path, size=16, masks="superpixels", cache_dir=tmp_path / "c")


def test_a_folder_of_images_upsample_reads_is_a_folder_of_training_images(tmp_path):
    """Training listed .jpg, .png, .webp, .bmp and .tif only: a folder of .ppm, .pgm or .gif
    images (which ``loftup upsample`` reads) was "no image files found" to it."""
    from PIL import Image

    from loftup.io import IMAGE_SUFFIXES

    root = tmp_path / "frames"
    root.mkdir()
    pixels = scene(0, 16)[0]
    for suffix in (".ppm", ".PGM", ".gif"):
        Image.fromarray(pixels).save(root / f"frame{suffix}")
    ds = MaskedImages(
        root, size=16, masks="superpixels", superpixels=(4,), cache_dir=tmp_path / "c"
    )
    assert [p.name for p in ds.images] == ["frame.PGM", "frame.gif", "frame.ppm"]
    assert all(ds[i]["skipped"] == [] and ds[i]["masks"].shape[0] > 0 for i in range(3))
    for suffix in IMAGE_SUFFIXES:  # every kind upsample reads, whatever the case
        (root / f"more{suffix.upper()}").write_bytes(b"")
    n = len(MaskedImages(root, size=16, masks="superpixels", cache_dir=tmp_path / "c"))
    assert n == 3 + len(IMAGE_SUFFIXES)


def test_a_mask_is_cropped_without_copying_it_whole(tmp_path):
    """Each SA-1B mask (up to 150 an image, 1500 x 2250 px) was copied whole three times, into
    rows of 0/255 bytes, before its square was cut out and resized: twice the cost of
    decoding it. Only the square is read now, in the order pycocotools decodes it (column by
    column), and it gives the area-weighted masks it gave."""
    import tracemalloc

    from pycocotools import mask as mask_utils

    from loftup.data.images import SquareCrop, crop_mask

    rng = np.random.default_rng(0)
    full = np.zeros((64, 16384), bool)  # a panorama: its square is 1/256 of it
    middle = slice(8192 - 32, 8192 + 32)
    full[8:40, 8180:8200] = True
    full[:, middle] ^= rng.random((64, 64)) < 0.2
    crop = SquareCrop.centred(16384, 64, 32)
    decoded = mask_utils.decode(mask_utils.encode(np.asfortranarray(full, np.uint8))).astype(bool)
    assert decoded.flags.f_contiguous  # as sa1b reads it
    want = full[:, middle].reshape(32, 2, 32, 2).mean(axis=(1, 3)) >= 0.5
    crop_mask(full, crop)  # the imports' allocations before the count
    for mask in (decoded, full):
        tracemalloc.start()
        got = crop_mask(mask, crop)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.array_equal(got, want) and got.flags.c_contiguous
        assert peak < full.size // 8, peak  # about the square (64 x 64), never the whole mask
