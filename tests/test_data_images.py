"""Training images read from disk: unreadable or too large ones skipped and said, and images read
upright (EXIF) and in RGB as ``loftup upsample`` reads them, their masks following."""

import json
import logging

import numpy as np
import pytest
import torch

from loftup.data.dataset import MaskedImages, collate
from loftup.data.masks import MaskCache, pack
from train_fixtures import scene, tiny_config, write_folder, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


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

    from loftup.train.loader import training_data

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
