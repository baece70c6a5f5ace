"""SA-1B annotations read from disk: COCO RLE masks (compressed and not) decoded and cropped with
their image, and broken JSON or implausible masks refused by name."""

import json
import logging

import numpy as np
import pytest
import torch

from loftup.data.dataset import MaskedImages, unpack_masks
from train_fixtures import scene, write_sa1b

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
