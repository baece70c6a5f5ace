"""A JPEG whose EXIF block is damaged but whose pixels decode: read as stored, with a warning
naming it, by every reader (``loftup upsample``, load_image, training); the run goes on."""

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


def _damaged_jpeg(path, tag: bytes) -> np.ndarray:
    """A 32 x 40 JPEG at ``path`` whose EXIF says Orientation 6 and whose first tag's id is
    ``tag``; its pixels, as plain Pillow decodes them."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Cam"
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00"}
    raw = exif.tobytes()
    assert raw.count(b"\x01\x0f\x00\x02") == 1  # Make, of type ASCII
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=raw.replace(b"\x01\x0f\x00\x02", tag + b"\x00\x02"))
    path.write_bytes(buf.getvalue())
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGB"))


@pytest.mark.parametrize("kind, tag", DAMAGES.items(), ids=list(DAMAGES))
def test_a_damaged_exif_block_reads_the_image_as_stored_with_a_warning(tmp_path, kind, tag):
    from loftup.data.images import load_square

    path = tmp_path / "cam.jpg"
    stored = _damaged_jpeg(path, tag)
    with pytest.warns(UserWarning, match=re.escape(f"{path}: its EXIF block is damaged ({kind}:")):
        tensor = load_image_tensor(path)
    assert np.array_equal(np.round(tensor.permute(1, 2, 0).numpy() * 255), stored)
    with pytest.warns(UserWarning, match="read as stored"):
        assert np.array_equal(np.asarray(load_image(path)), stored)
    with pytest.warns(
        UserWarning, match=re.escape(str(path))
    ):  # training: the same image, unturned
        square, crop = load_square(path, 16)
    assert crop.orientation == 1 and crop.image == (40, 32) and square.shape == (3, 16, 16)


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
