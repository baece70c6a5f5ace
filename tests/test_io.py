"""Images open upright and as RGB whatever their mode; unreadable files are named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loftup.io import ImageReadError, load_image, load_image_tensor, to_tensor


def _rgb(h=10, w=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pixels(t: torch.Tensor) -> np.ndarray:
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2), (1, 0)])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    rgb = _rgb()
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "x.png", exif=exif)
    want = np.rot90(rgb, turn)  # 6: shown turned 90 degrees clockwise
    assert np.array_equal(_pixels(load_image_tensor(tmp_path / "x.png")), want)
    assert np.array_equal(np.asarray(load_image(tmp_path / "x.png")), want)


def test_grayscale_and_palette(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    t = load_image_tensor(tmp_path / "g.png")
    assert t.shape == (3, 10, 16) and np.array_equal(_pixels(t)[..., 2], gray)
    rgb = _rgb()
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    pal = Image.open(tmp_path / "p.png")
    assert pal.mode == "P"
    assert np.array_equal(
        np.asarray(load_image(tmp_path / "p.png")), np.asarray(pal.convert("RGB"))
    )


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK"])
def test_an_8_bit_file_is_read_in_one_float_copy_with_the_same_values(tmp_path, mode):
    """An 8-bit file went through three float32 copies of itself (1454 MB for a 48-megapixel
    JPEG whose tensor is 549 MB, and 8.5 s); now 8-bit until one float copy (688 MB, 2.7 s),
    with the values of the general reader, bit for bit."""
    import tracemalloc

    from loftup.io import _to_rgb_array

    img = Image.fromarray(_rgb(120, 90)).convert(mode)
    img.save(tmp_path / "a.tif")
    tracemalloc.start()
    try:
        got = load_image_tensor(tmp_path / "a.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * got.numel() * got.element_size()  # 2.04 before, counting NumPy's only
    assert got.shape == (3, 120, 90) and got.dtype == torch.float32 and got.is_contiguous()
    with Image.open(tmp_path / "a.tif") as again:
        expected = torch.from_numpy(_to_rgb_array(again)).permute(2, 0, 1)
    assert torch.equal(got, expected)


def test_rgba_and_transparent_palette_go_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent on the left half, opaque on the right
    rgba[:, 2:, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    px = np.asarray(load_image(tmp_path / "a.png"))
    assert (px[:, :2] == 255).all() and (px[:, 2:] == [200, 0, 0]).all()
    pal = Image.fromarray(rgba, mode="RGBA").convert("P")
    pal.info["transparency"] = pal.getpixel((0, 0))
    pal.save(tmp_path / "pt.png", transparency=pal.getpixel((0, 0)))
    assert (np.asarray(load_image(tmp_path / "pt.png"))[:, :2] == 255).all()


def test_16_bit_keeps_its_range_and_precision(tmp_path):
    ramp = np.linspace(0, 65535, 12 * 20).reshape(12, 20).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    t = load_image_tensor(tmp_path / "d.png")
    assert t.shape == (3, 12, 20)
    torch.testing.assert_close(t[1], torch.from_numpy(ramp / 65535.0).float())
    assert load_image(tmp_path / "d.png").getpixel((19, 11)) == (255, 255, 255)


def test_float_and_cmyk_files_as_the_readme_says(tmp_path):
    """A float TIFF is grayscale in [0, 1] kept at full precision (a resampling's overshoot,
    up to PIXEL_SLACK outside, clipped);
    a CMYK file is read as Pillow converts it to RGB."""
    ramp = np.linspace(-0.25, 1.25, 6 * 9, dtype=np.float32).reshape(6, 9)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tiff")
    t = load_image_tensor(tmp_path / "f.tiff")
    assert t.shape == (3, 6, 9) and torch.equal(t[0], t[2])
    assert torch.equal(t[1], torch.from_numpy(ramp.clip(0, 1)))
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    cmyk = Image.open(tmp_path / "c.jpg")
    assert cmyk.mode == "CMYK"
    want = np.asarray(cmyk.convert("RGB"))
    assert np.array_equal(_pixels(load_image_tensor(tmp_path / "c.jpg")), want)
    assert np.array_equal(np.asarray(load_image(tmp_path / "c.jpg")), want)


def test_a_float_image_outside_0_1_is_refused_not_clipped_to_white(tmp_path):
    """A float TIFF of 0-255 values (what many tools write) was clipped to [0, 1] without a
    word: an all-white picture, and features of it. Infinite pixels were clipped as well."""
    ramp = np.linspace(0, 255, 6 * 9, dtype=np.float32).reshape(6, 9)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f255.tiff")
    for read in (load_image_tensor, load_image):
        with pytest.raises(ImageReadError) as e:
            read(tmp_path / "f255.tiff")
        msg = str(e.value)
        assert f"image {tmp_path / 'f255.tiff'}:" in msg and "from 0 to 255" in msg
        assert "scale them to [0, 1]" in msg and "16-bit" in msg and "\n" not in msg
    with pytest.raises(ImageReadError, match=r"the image: .* from 0 to 255"):
        to_tensor(Image.fromarray(ramp, mode="F"))  # a PIL image of the caller's, unnamed
    inf = np.full((4, 5), 0.5, np.float32)
    inf[0, :2] = np.inf
    Image.fromarray(inf, mode="F").save(tmp_path / "inf.tiff")
    with pytest.raises(ImageReadError, match="2 of its pixels are NaN or infinite"):
        load_image_tensor(tmp_path / "inf.tiff")


def _int_tiff(path, values: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, values)
    assert Image.open(path).mode == "I"


def test_integer_images_are_read_as_16_bit_or_refused(tmp_path):
    """Pillow reads 32-bit and signed 16-bit integer TIFFs as mode "I": their values were
    divided by 65535 and clipped, so 8-bit values came out near black, negative ones black and
    a signed image's white (32767) mid-grey.
    A 32-bit image of 16-bit values, or a 16-bit file of dark ones, is read as 16-bit."""
    eight = np.arange(0, 256, 5, dtype=np.uint32).reshape(4, 13)
    _int_tiff(tmp_path / "u32_8bit.tif", eight)
    for read in (load_image_tensor, load_image):
        with pytest.raises(ImageReadError) as e:
            read(tmp_path / "u32_8bit.tif")
        msg = str(e.value)
        assert "u32_8bit.tif: its 32-bit integer pixels run from 0 to 255" in msg
        assert "8-bit values" in msg and "save it as an 8-bit (0-255)" in msg
    for values in ([[-100, 300], [0, 7]], [[0, 32767], [100, 7]]):  # no white level to read by
        _int_tiff(tmp_path / "s16.tif", np.array(values, np.int16))
        with pytest.raises(
            ImageReadError, match=r"signed 16-bit integer pixels \(from .* no white"
        ):
            load_image_tensor(tmp_path / "s16.tif")
    _int_tiff(tmp_path / "big.tif", np.array([[0, 70000]], np.int32))
    with pytest.raises(ImageReadError, match=r"from 0 to 70000, outside the 16-bit range"):
        load_image_tensor(tmp_path / "big.tif")
    wide = np.linspace(0, 65535, 4 * 13).reshape(4, 13).astype(np.uint32)
    _int_tiff(tmp_path / "u32_16bit.tif", wide)
    want = torch.from_numpy(wide / 65535.0).float()
    torch.testing.assert_close(load_image_tensor(tmp_path / "u32_16bit.tif")[2], want)
    # a dark 16-bit PGM (Pillow's mode "I" too) is what it says: near black, not refused
    dark = np.array([[0, 100], [200, 255]], ">u2")
    (tmp_path / "dark.pgm").write_bytes(b"P5\n2 2\n65535\n" + dark.tobytes())
    assert Image.open(tmp_path / "dark.pgm").mode == "I"
    want = torch.from_numpy(dark.astype(np.float32) / 65535.0)
    torch.testing.assert_close(load_image_tensor(tmp_path / "dark.pgm")[0], want)
    with pytest.raises(ImageReadError, match="the image: its integer pixels run from 0 to 255"):
        to_tensor(Image.fromarray(eight.astype(np.int32), mode="I"))  # no file: no depth known


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA", "RGB"])
def test_a_tiff_turned_a_quarter_turn_is_read_upright(tmp_path, mode):
    """An uncompressed grayscale, 16-bit or RGBA TIFF whose Orientation is 5 to 8 (a quarter
    turn) came out scrambled: Pillow memory-maps such a file with its turned size."""
    rng = np.random.default_rng(0)
    if mode == "I;16":
        pixels = rng.integers(0, 65536, (6, 4), dtype=np.uint16)
    else:
        pixels = rng.integers(0, 256, (6, 4, len(mode)), dtype=np.uint8).squeeze(
            -1 if mode == "L" else ()
        )
    Image.fromarray(pixels).save(tmp_path / "plain.tif")
    plain = load_image_tensor(tmp_path / "plain.tif")  # (3, 6, 4)
    turned = {  # what each Orientation shows, as the displayed picture
        5: plain.transpose(1, 2),
        6: plain.rot90(-1, (1, 2)),
        7: plain.rot90(2, (1, 2)).transpose(1, 2),
        8: plain.rot90(1, (1, 2)),
        3: plain.flip(1, 2),
    }
    for orientation, upright in turned.items():
        path = tmp_path / f"o{orientation}.tif"
        Image.fromarray(pixels).save(path, tiffinfo={274: orientation})
        assert torch.equal(load_image_tensor(path), upright), orientation


@pytest.mark.parametrize("content", [b"", b"not an image", "truncated"])
def test_unreadable_files_are_named(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        Image.fromarray(_rgb(64, 64)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match="bad.jpg"):
        load_image_tensor(path)
    with pytest.raises(ImageReadError, match="no such image file"):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("name", ["bad.png", "image", "file"])
def test_a_file_pillow_cannot_identify_is_named_once(tmp_path, monkeypatch, name):
    """It said "cannot read image X: cannot identify image file 'X'"; the path taken out of the
    message is the quoted one only, not a word that spells it (a file named "image" given by
    its relative name)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"not an image")
    for path in (tmp_path / name, Path(name)):
        with pytest.raises(ImageReadError) as e:
            load_image_tensor(path)
        assert str(e.value) == f"cannot read image {path}: cannot identify image file"


@pytest.mark.parametrize("limit, said", [(1, "1 pixel,"), (3, "3 pixels,"), (4, "4 pixels,")])
def test_a_limit_of_whole_pixels_is_said_as_a_whole_number(tmp_path, limit, said):
    """``--max-image-pixels 1`` said "exceeds limit of 1.0 pixels" (Pillow's twice a half)."""
    from loftup.io import max_image_pixels

    Image.fromarray(_rgb(2, 3)).save(tmp_path / "six.png")
    with max_image_pixels(limit), pytest.raises(ImageReadError) as e:
        load_image(tmp_path / "six.png")
    assert f"(6 pixels) exceeds limit of {said} could be" in str(e.value)


def test_a_path_that_is_there_but_no_file_says_what_it_is(tmp_path):
    """A folder, a link to nothing and a pipe were each "no such image file", though there;
    a loop of links was "a link to ..., which does not exist", a socket "a pipe or a device"."""
    import socket

    (tmp_path / "photos").mkdir()
    (tmp_path / "gone.png").symlink_to(tmp_path / "moved.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    os.mkfifo(tmp_path / "pipe.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.png"))
    said = {
        "photos": "photos is a folder, not an image file; pass an image in it",
        "gone.png": "gone.png is a link to ",  # its target, then
        "loop.png": "loop.png is a link to loop.png, which leads back to it (a loop)",
        "pipe.png": "pipe.png is not a regular file (a pipe)",
        "sock.png": "sock.png is not a regular file (a socket)",
    }
    for name, words in said.items():
        with pytest.raises(ImageReadError) as e:
            load_image_tensor(tmp_path / name)
        assert words in str(e.value) and "no such" not in str(e.value), str(e.value)
    with pytest.raises(ImageReadError, match="moved.png, which does not exist"):
        load_image(tmp_path / "gone.png")


def test_a_path_under_the_home_folder_is_read_as_the_command_line_reads_it(tmp_path, monkeypatch):
    """``load_image_tensor("~/x.png")`` said "no such image file: ~/x.png" where ``loftup
    upsample ~/x.png`` (the shell's ~) read the file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert np.array_equal(_pixels(load_image_tensor("~/x.png")), rgb)
    assert np.array_equal(np.asarray(load_image("~/x.png")), rgb)


def test_to_tensor_accepts_arrays_pil_and_tensors():
    rgb = _rgb()
    want = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert torch.equal(to_tensor(rgb), want)
    assert torch.equal(to_tensor(Image.fromarray(rgb)), want)
    assert torch.equal(to_tensor(want), want)
    assert torch.equal(to_tensor(rgb[..., 0]), want[:1].expand(3, -1, -1))  # grey: R = G = B
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        to_tensor(np.zeros((4, 4, 4), np.uint8))
    # 16-bit pixels (cv2.IMREAD_UNCHANGED, tifffile) read as a 16-bit file is: / 65535
    deep = rgb.astype(np.uint16) * 257  # 255 -> 65535
    assert torch.allclose(to_tensor(deep), want, atol=1e-6)
    assert torch.allclose(to_tensor(torch.from_numpy(deep).permute(2, 0, 1)), want, atol=1e-6)


def test_an_image_to_tensor_cannot_read_is_a_loftup_error_with_the_fix():
    """An RGBA or channels-first array, a channels-last tensor or 0-255 integers were a plain
    ValueError / TypeError naming the shape only: not a LoftUpError (what a caller of
    loftup.upsample catches), and no word of the fix. The old types still match."""
    from loftup.errors import LoftUpError

    cases = [
        (np.zeros((4, 5, 4), np.uint8), r"alpha.*image\[\.\.\., :3\]"),
        (np.zeros((3, 4, 5), np.uint8), r"channels first.*transpose\(1, 2, 0\)"),
        (np.zeros((2, 4, 5, 3), np.uint8), r"a batch.*\(B, 3, H, W\) tensor"),
        (torch.zeros(4, 5, 3), r"channels last.*permute\(2, 0, 1\)"),
        (torch.zeros(4, 5), r"grayscale.*image\[None\]"),
        (torch.zeros(5, 4, 4), r"got shape \(5, 4, 4\)"),
        (np.zeros((4, 5, 3), np.int64), r"int64.*uint8.*/ 255"),
        (torch.zeros(3, 4, 5, dtype=torch.int32), r"int32.*uint8.*/ 255"),
        ([[0.5]], r"got list.*numpy\.asarray"),
    ]
    for bad, fix in cases:
        with pytest.raises(LoftUpError, match=fix) as e:
            to_tensor(bad)
        assert isinstance(e.value, (ValueError, TypeError)) and "\n" not in str(e.value)
    with pytest.raises(TypeError, match="uint8, uint16 or floating point"):
        to_tensor(np.zeros((4, 5, 3), np.int64))


def test_leftovers_are_our_temporary_files_only(tmp_path):
    """What --resume removes as a killed run's leftovers: temp_beside's files, in sub-folders
    too, never a user's own hidden .tmp file that happens to be in the output folder."""
    from loftup.atomic import leftovers, temp_beside

    (tmp_path / ".notes.tmp").write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".draft.v2.tmp").write_text("mine too")
    ours = {temp_beside(tmp_path / "a.pt"), temp_beside(tmp_path / "sub" / "b.npy")}
    assert {str(p) for p in leftovers(tmp_path)} == ours


def test_a_name_at_the_file_systems_limit_is_written(tmp_path):
    """A 255-byte output name (a long input name, plus .pt) is a name the file system takes:
    its temporary file must be too (it failed with ENAMETOOLONG, naming the hidden file)."""
    from loftup.atomic import atomic_write_bytes, leftovers, temp_beside

    name = "x" + "é" * 100 + "x" * 51 + ".pt"  # 255 bytes in UTF-8, cut mid-character below
    atomic_write_bytes(tmp_path / name, b"ok")
    assert (tmp_path / name).read_bytes() == b"ok"
    tmp = temp_beside(tmp_path / name)
    assert [str(p) for p in leftovers(tmp_path)] == [tmp]  # still found as ours


@pytest.mark.parametrize(
    "text",
    [
        "Error while serializing: I/O error: No space left on device (os error 28)",  # >= 0.5
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
        'left on device" })',  # safetensors 0.4, the oldest we allow
    ],
)
def test_a_full_disk_is_read_from_safetensors_messages_of_every_release(text):
    """safetensors names the file system's error only in its text, spelled differently before
    0.5: both are the OSError that fails one image by name instead of the run."""
    from loftup.outputs import _write_failure

    found = _write_failure(RuntimeError(text))
    assert isinstance(found, OSError) and found.errno == 28
    assert _write_failure(RuntimeError("invalid tensor")) is None


@pytest.mark.parametrize("writer", ["atomic_write", "FeatureFile"])
def test_files_reach_the_disk_before_their_final_name(tmp_path, monkeypatch, writer):
    """A power cut must not leave an output under its final name but empty (a resumed run
    would keep it as done): the file's data is synced before the rename, its folder after."""
    import os

    from loftup import atomic
    from loftup.outputs import FeatureFile

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "a.npy"
    if writer == "atomic_write":
        atomic.atomic_write_bytes(path, b"data")
    else:
        f = FeatureFile(path, "npy", torch.float32, (2, 3, 4))
        f.features.fill_(1.0)
        f.commit()
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    tmp = events[1][1]
    assert events[0][1] == tmp and events[1][2] == str(path)  # the data, then the name
    assert events[2][1] == str(tmp_path)  # then the folder that holds the new name
    assert path.is_file() and not atomic.leftovers(tmp_path)


def test_a_writer_that_makes_its_own_file_still_gives_the_mode_of_a_new_file(tmp_path):
    """safetensors' save_file puts a new, private (0o600) file in the temporary file's place:
    the features, pretrained folders and cached features it writes were unreadable to a
    user's group. Every atomic write ends with the mode a new file gets under the umask."""
    import os
    import stat

    from safetensors.torch import save_file

    from loftup.atomic import FILE_MODE, atomic_write
    from loftup.outputs import save_features

    path = tmp_path / "w.safetensors"
    atomic_write(path, lambda tmp: save_file({"a": torch.zeros(2)}, tmp))
    save_features(tmp_path / "f.safetensors", torch.zeros(2, 3, 4), "safetensors")
    for name in ("w.safetensors", "f.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == FILE_MODE, name


def test_a_link_is_followed_only_where_the_user_named_the_file(tmp_path, capsys):
    """A --json given as a symbolic link stays one and the file it names is written, as a
    shell's `>` would (the rename onto the link replaced it with a plain file, and the results
    file kept elsewhere never saw the numbers). The library's own files are never written
    through a link: a Hugging Face cache's snapshot files are links to shared blobs named by
    their content, which save_pretrained into a downloaded snapshot would have overwritten."""
    from loftup.atomic import leftovers, write_json
    from loftup.cli import main

    kept = tmp_path / "kept" / "results.json"
    kept.parent.mkdir()
    kept.write_text("{}")
    link = tmp_path / "out.json"
    link.symlink_to(kept)
    assert main(["info", "--json", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(kept)
    assert json.loads(kept.read_text())[0]["name"] == "loftup_dinov2s"
    dangling = tmp_path / "new.json"
    dangling.symlink_to(tmp_path / "kept" / "made.json")
    write_json(dangling, [1], follow_links=True)
    assert dangling.is_symlink() and (tmp_path / "kept" / "made.json").read_text() == "[\n  1\n]\n"

    blob = tmp_path / "blobs" / "5c50694a"
    blob.parent.mkdir()
    blob.write_text('{"format": "loftup"}')
    snapshot = tmp_path / "snapshot" / "config.json"
    snapshot.parent.mkdir()
    snapshot.symlink_to(blob)
    write_json(snapshot, {"format": "loftup", "step": 2})
    assert not snapshot.is_symlink() and json.loads(snapshot.read_text())["step"] == 2
    assert blob.read_text() == '{"format": "loftup"}'  # the shared blob untouched
    assert leftovers(tmp_path) == []


def test_a_big_endian_array_is_read_as_its_values():
    """np.asarray of Pillow's 16-bit big-endian image ("I;16B") or a FITS file's data is
    big-endian: torch.from_numpy refused it ("byte order different from the native")."""
    values = np.array([[0, 1000, 65535]], dtype=np.uint16)
    for dtype, pixels in ((">u2", values), (">f4", values / 65535)):
        t = to_tensor(pixels.astype(dtype))
        assert torch.equal(t, to_tensor(pixels.astype(dtype[1:])).float()), dtype
    assert to_tensor(values.astype(">u2"))[0, 0, 1].item() == pytest.approx(1000 / 65535)
