"""A JPEG whose EXIF block is damaged but whose pixels decode: turned upright by the
Orientation it still records (as stored where the block cannot be read at all), with a
warning naming it, by every reader (``loftup upsample``, load_image, training); the run goes
on."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.io import load_image, load_image_tensor

#: One byte of the first tag's id changed, as fuzzing found them (3000 variants): Make
#: (0x010F, a string) read as RowsPerStrip (0x0116, a number) made Pillow's exif_transpose
#: raise struct.error, as WhitePoint (0x013E, fractions) a TypeError.
DAMAGES = {"struct.error": b"\x01\x16", "TypeError": b"\x01\x3e"}


def _damaged_jpeg(path, tag: bytes, xmp: bytes = b"") -> np.ndarray:
    """A 32 x 40 JPEG at ``path`` whose EXIF says Orientation 6 and whose first tag's id is
    ``tag`` (``xmp``: its XMP packet, where given); its pixels, as plain Pillow decodes them."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Cam"
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00"}
    raw = exif.tobytes()
    assert raw.count(b"\x01\x0f\x00\x02") == 1  # Make, of type ASCII
    buf = io.BytesIO()
    damaged = raw.replace(b"\x01\x0f\x00\x02", tag + b"\x00\x02")
    img.save(buf, "JPEG", exif=damaged, **({"xmp": xmp} if xmp else {}))
    path.write_bytes(buf.getvalue())
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGB"))


@pytest.mark.parametrize("kind, tag", DAMAGES.items(), ids=list(DAMAGES))
def test_an_image_turned_by_a_damaged_block_records_no_orientation(tmp_path, kind, tag):
    """The turned image kept the block's Orientation 6 (and XMP's), where exif_transpose drops
    them for an intact one: applied again, or saved with the image, it turned it twice."""
    from PIL import ImageOps

    path = tmp_path / "cam.jpg"
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'
    upright = np.rot90(_damaged_jpeg(path, tag, xmp), k=-1)
    with Image.open(path) as stored:  # Pillow 10 neither writes nor reads a JPEG's XMP
        has_xmp = b"Orientation" in stored.info.get("xmp", b"")
    with pytest.warns(UserWarning, match="turned upright"):
        img = load_image(path)
    assert img.getexif().get(0x0112, 1) == 1 and b"Orientation" not in img.info.get("xmp", b"")
    assert ("xmp" in img.info) == has_xmp  # kept, less its orientation
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(img)), upright)


@pytest.mark.parametrize("kind, tag", DAMAGES.items(), ids=list(DAMAGES))
def test_a_damaged_exif_block_still_turns_the_image_by_its_orientation(tmp_path, kind, tag):
    """Pillow's exif_transpose raises only when it writes the block back, after it read
    Orientation 6: the image was read as stored (sideways), orientation 1."""
    from loftup.data.images import load_square

    path = tmp_path / "cam.jpg"
    upright = np.rot90(_damaged_jpeg(path, tag), k=-1)  # Orientation 6: a quarter turn clockwise
    warned = re.escape(f"{path}: its EXIF block is damaged ({kind}:") + ".*turned upright"
    with pytest.warns(UserWarning, match=warned):
        tensor = load_image_tensor(path)
    assert np.array_equal(np.round(tensor.permute(1, 2, 0).numpy() * 255), upright)
    with pytest.warns(UserWarning, match="turned upright by the Orientation it records \\(6\\)"):
        assert np.array_equal(np.asarray(load_image(path)), upright)
    with pytest.warns(UserWarning, match=re.escape(str(path))):  # training: the same image
        square, crop = load_square(path, 16)
    assert crop.orientation == 6 and crop.image == (32, 40) and square.shape == (3, 16, 16)


@pytest.mark.parametrize("height, width", [(64, 64), (48, 64)], ids=["square", "landscape"])
def test_training_masks_stay_on_a_picture_whose_exif_block_is_damaged(tmp_path, height, width):
    """Masks are of the upright picture: with the image read as stored they covered the
    wrong half (agreement 0.5), or, of a 64 x 48 photo, were taken for another picture's."""
    from loftup.data.images import crop_mask, load_square

    stored = np.zeros((height, width, 3), np.uint8)
    stored[:, : width // 2] = 255  # left half white: the top half once turned clockwise
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Cam"
    raw = exif.tobytes().replace(b"\x01\x0f\x00\x02", DAMAGES["struct.error"] + b"\x00\x02")
    Image.fromarray(stored).save(tmp_path / "cam.jpg", quality=100, exif=raw)
    mask = np.zeros((width, height), bool)  # of the upright picture: its top half
    mask[: width // 2] = True
    with pytest.warns(UserWarning, match="its EXIF block is damaged"):
        square, crop = load_square(tmp_path / "cam.jpg", 16)
    white = square[0].numpy() > 128
    assert white[:8].all() and not white[8:].any()  # upright: white on top
    assert np.array_equal(crop_mask(mask, crop), white)


def test_an_unreadable_exif_block_reads_the_image_as_stored(tmp_path, monkeypatch):
    """Where the block cannot be read at all (getexif raises), no orientation is known: the
    pixels as stored, orientation 1, and the warning says so."""
    from loftup import exif

    path = tmp_path / "cam.jpg"
    stored = _damaged_jpeg(path, DAMAGES["TypeError"])

    def unreadable(self):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", unreadable)
    with Image.open(path) as img, pytest.warns(UserWarning, match="read as stored"):
        img.load()
        turned, orientation = exif.upright(img, path)
    assert orientation == 1 and np.array_equal(np.asarray(turned), stored)


def test_running_out_of_memory_is_not_taken_for_a_damaged_exif_block(tmp_path, monkeypatch):
    """A MemoryError while turning a large photo was reported as a damaged EXIF block and the
    image read sideways; it is the machine's, not the file's: it propagates."""
    from PIL import ImageOps

    path = tmp_path / "cam.jpg"
    _damaged_jpeg(path, DAMAGES["TypeError"])

    def out_of_memory(img, **kwargs):
        raise MemoryError

    monkeypatch.setattr(ImageOps, "exif_transpose", out_of_memory)
    with pytest.raises(MemoryError):
        load_image_tensor(path)


def test_upsample_goes_on_past_a_damaged_exif_block(tmp_path, capsys):
    """``loftup upsample`` stopped at such a file with a traceback (struct.error), the
    images after it never computed."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, tag in zip(("a.jpg", "b.jpg"), DAMAGES.values()):
        _damaged_jpeg(folder / name, tag)
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(folder / "c.png")
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown as the command shows it
        code = main(["upsample", str(folder), "-m", str(tmp_path / "up"), "-o", str(out),
                     "--size", "32"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert f"{folder / 'a.jpg'}: its EXIF block is damaged" in err
    assert f"{folder / 'b.jpg'}: its EXIF block is damaged" in err
    assert sorted(p.name for p in out.glob("*.pt")) == ["a.pt", "b.pt", "c.pt"]
