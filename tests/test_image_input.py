"""Images in memory that :func:`loftup.image_input.to_tensor` cannot read: a one-line
ImageInputError naming the fix (a LoftUpError, a ValueError and a TypeError)."""

import numpy as np
import pytest
import torch

from loftup.image_input import ImageInputError, to_tensor


@pytest.mark.parametrize(
    "bad, said",
    [
        (np.empty((4, 5, 3), dtype=object), r"got object; pass 0-255 values as uint8"),
        (np.zeros((4, 5, 3), dtype="U1"), r"got <U1; pass 0-255 values as uint8"),
        (torch.zeros(4, 5, 6), r"got shape \(4, 5, 6\); drop the alpha channel \(image\[:3\]\)"),
    ],
)
def test_pixels_no_image_has_are_named_with_the_fix(bad, said):
    """An object array (np.array(..., dtype=object) of images, a pandas column) was
    torch.from_numpy's TypeError ("can't convert np.ndarray of type numpy.object_"), and an
    RGBA tensor, channels first, was told to 'pass RGB or grayscale pixels' without the way."""
    with pytest.raises(ImageInputError, match=said) as e:
        to_tensor(bad)
    assert isinstance(e.value, TypeError) and "\n" not in str(e.value)


def _photo(tmp_path, orientation: int):
    """A 6 x 10 px PNG recording EXIF ``orientation``, its path and the PIL image opened from
    it."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8))
    path = tmp_path / f"o{orientation}.png"
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)
    return path, Image.open(path)


def test_a_pil_image_recording_an_orientation_is_read_as_stored_with_a_warning(tmp_path):
    """A PIL image was read as stored, its path upright, without a word: the features of the
    same photo came out rotated one way or the other. Not turned (masks may be of the stored
    pixels): one warning a call, naming the orientation and both fixes; none for 1 or none."""
    import warnings

    from PIL import ImageOps

    import loftup

    dim = loftup.get_featurizer("scenes_vit_p8").dim  # shipped: no transformers to import
    kw = {"backbone": "scenes_vit_p8", "backbone_size": None}  # the image's own size: quick
    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=dim), **kw)
    path, img = _photo(tmp_path, 6)
    with pytest.warns(UserWarning) as said:
        hr = loftup.upsample(img, model=pipeline)
    (w,) = said
    text = str(w.message)
    assert "EXIF Orientation 6 (to be shown rotated 90 degrees clockwise)" in text, text
    assert "PIL.ImageOps.exif_transpose(image)" in text and "or the path" in text, text
    assert w.filename == __file__  # said of the caller's line
    assert hr.shape[-2:] == (6, 10)  # as stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upright = loftup.upsample(ImageOps.exif_transpose(img), model=pipeline)  # none recorded
        assert torch.equal(upright, loftup.upsample(path, model=pipeline))
        loftup.upsample(_photo(tmp_path, 1)[1], model=pipeline)


@pytest.mark.parametrize("many", [["a.png", "b.png"], ("a.png",)])
def test_a_list_of_images_is_told_to_call_once_per_image_or_use_the_folder_api(many):
    """upsample(["a.png", "b.png"]) was told "convert it with numpy.asarray(image)", which no
    list of paths can follow; said before any weights load (the name below is never looked
    up, offline or not)."""
    import loftup

    with pytest.raises(ImageInputError) as e:
        loftup.upsample(many, model="no_such_upsampler")
    said = str(e.value)
    assert f"got a {type(many).__name__} of {len(many)}; call it once per image" in said, said
    assert "loftup.extract.upsample_folder(paths, out_dir)" in said and "asarray" not in said
    assert isinstance(e.value, TypeError)


@pytest.mark.parametrize(
    "rows, fix",
    [
        ([[0, 255, 0], [255, 0, 255]], "numpy.asarray(image, dtype=numpy.uint8) (0-255 values)"),
        (((0.0, 0.5), (1.0, 0.25)), "numpy.asarray(image) (floats in [0, 1])"),
        ([[[0, 0, 0]] * 2] * 2, "numpy.asarray(image, dtype=numpy.uint8)"),
    ],
)
def test_one_image_as_nested_rows_of_numbers_is_told_how_to_convert_it(rows, fix):
    """upsample([[0, 255, 0], [255, 0, 255]]) was told to "call it once per image", as a list
    of paths is: nested numbers are one image, told the conversion to_tensor advises, before
    any weights load; a list of images keeps its own advice (above)."""
    import loftup

    with pytest.raises(ImageInputError) as e:
        loftup.upsample(rows, model="no_such_upsampler")
    said = str(e.value)
    assert f"got a {type(rows).__name__} of numbers; convert it with {fix}" in said, said
    assert "once per image" not in said


def _quick_pipeline():
    """A pipeline of the shipped scene backbone at the image's own size: no transformers."""
    import loftup

    dim = loftup.get_featurizer("scenes_vit_p8").dim
    return loftup.load_pipeline(
        loftup.LoftUp(dim=dim), backbone="scenes_vit_p8", backbone_size=None
    )


@pytest.mark.parametrize(
    "layout",
    [
        "channels first",
        "channels last",
        "RGBA channels first",
        "RGBA channels last",
        "BGR flipped channels last",
    ],
)
def test_a_numpy_batch_is_told_the_fix_for_where_its_channels_are(layout):
    """A (B, 3, H, W) numpy batch was told torch.from_numpy(a).permute(0, 3, 1, 2), which
    made it (B, W, 3, H): the fix depends on which axis holds the channels. The fix said,
    followed, gives the features of each image passed alone; also for a BGR batch flipped to
    RGB (a[..., ::-1], negative strides: torch.from_numpy(a) was a ValueError)."""
    import loftup

    rng = np.random.default_rng(0)
    rgb = rng.random((2, 3, 16, 24), dtype=np.float32)  # (B, 3, H, W)
    a = {
        "channels first": rgb,
        "channels last": rgb.transpose(0, 2, 3, 1),
        "RGBA channels first": np.concatenate([rgb, rgb[:, :1]], axis=1),
        "RGBA channels last": np.concatenate([rgb, rgb[:, :1]], axis=1).transpose(0, 2, 3, 1),
        # a BGR batch (as cv2 reads) flipped to RGB: negative strides
        "BGR flipped channels last": np.ascontiguousarray(rgb[:, ::-1].transpose(0, 2, 3, 1))[
            ..., ::-1
        ],
    }[layout]
    pipeline = _quick_pipeline()
    with pytest.raises(ImageInputError) as e:
        loftup.upsample(a, model=pipeline)
    said = str(e.value)
    assert f"got shape {a.shape}; pass a batch as a (B, 3, H, W) tensor: " in said, said
    fix = said.split(" tensor: ")[1].split(" (")[0]
    batch = eval(fix, {"torch": torch, "np": np, "a": a})  # what the user is told to run
    assert batch.shape == (2, 3, 16, 24), fix
    got = loftup.upsample(batch, model=pipeline)
    for i in range(2):
        alone = loftup.upsample(torch.from_numpy(rgb[i]), model=pipeline)
        assert torch.allclose(got[i], alone, atol=1e-5)


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["None", "bytes", "file object"])
def test_an_object_that_is_no_image_is_told_a_fix_that_works(kind):
    """None, a PNG's bytes and a file object of them were told "convert it with
    numpy.asarray(image)", whose array (shape ()) was refused in turn. Bytes and file objects
    are told to open them with PIL, which, followed, reads as the file's path does; None is told
    what was expected instead."""
    import io

    from PIL import Image

    import loftup

    data = _png_bytes()
    image = {"None": None, "bytes": data, "file object": io.BytesIO(data)}[kind]
    with pytest.raises(ImageInputError) as e:
        to_tensor(image)
    said = str(e.value)
    assert "asarray" not in said and isinstance(e.value, TypeError), said
    if kind == "None":
        assert said.startswith("expected a path, PIL image, numpy array or tensor, got None; ")
        assert "pass the image itself" in said, said
        return
    fix = {"bytes": "PIL.Image.open(io.BytesIO(data))", "file object": "PIL.Image.open(f)"}
    assert said.endswith(fix[kind]), said
    opened = eval(fix[kind], {"PIL": __import__("PIL"), "io": io, "data": data, "f": image})
    assert isinstance(opened, Image.Image)
    pipeline = _quick_pipeline()
    want = loftup.upsample(np.array(Image.open(io.BytesIO(data))), model=pipeline)
    assert torch.equal(loftup.upsample(opened, model=pipeline), want)


@pytest.mark.parametrize(
    "nested", [[[1, 2], [3, 4]], [[[255, 0, 0]]], [[300, 0], [0, 70000]], (1, 2, 3)]
)
def test_nested_numbers_are_told_a_conversion_that_is_read(nested):
    """Nested ints were told numpy.asarray(image), whose int64 array was refused in turn: told
    the dtype their values fit, which, followed, reads; a flat sequence is told it is no
    image (numpy.asarray of it has shape (3,), refused too)."""
    with pytest.raises(ImageInputError) as e:
        to_tensor(nested)
    said = str(e.value)
    if nested == (1, 2, 3):
        assert "shape (3,), which no image has" in said and "asarray" not in said, said
        return
    fix = said.split("convert it with ")[-1].split(" (")[0] if "convert" in said else None
    if fix is None:  # beyond 16 bits: scale to floats
        assert "from 0 to 70000" in said and "/ MAX" in said, said
        return
    image = eval(fix, {"numpy": np, "image": nested})
    assert torch.equal(
        to_tensor(image) * 255,
        torch.tensor(nested)
        .float()
        .reshape(image.shape[:2] + (-1,))
        .permute(2, 0, 1)
        .expand(3, -1, -1),
    )


def test_a_path_is_told_the_functions_that_read_one(tmp_path):
    """A path passed to to_tensor was told "expected a path, ..." and no way to read it."""
    from PIL import Image

    import loftup

    path = tmp_path / "x.png"
    Image.fromarray(np.full((4, 5, 3), 90, np.uint8)).save(path)
    with pytest.raises(ImageInputError, match=r"loftup\.io\.load_image_tensor\(path\)"):
        to_tensor(str(path))
    assert loftup.io.load_image_tensor(path).shape == (3, 4, 5)
