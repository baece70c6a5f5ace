"""Exact tiled inference: tiles reproduce the untiled output, streaming writes all of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loftup import LoftUp, graph_upsampler, load_upsampler
from loftup.errors import UsageError
from loftup.fused import winograd_available
from loftup.tiling import plan_tiles, split_axis, upsample, upsample_to_npy
from reference_files import REFERENCE_STATE

CONVS = ["direct"] + (["winograd"] if winograd_available("cpu") else [])

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = LoftUp(dim=32, num_heads=4, n_freqs=6).eval()
    with torch.no_grad():
        for t in model.parameters():
            t.add_(0.1 * torch.randn_like(t))
        model.stem.bn1.running_mean.normal_()
    return model


@pytest.mark.parametrize(
    "length,tile,align", [(640, 200, 1), (640, 200, 6), (37, 8, 6), (5, 64, 6)]
)
def test_split_axis_covers_once_with_aligned_starts(length, tile, align):
    pieces = split_axis(length, tile, align)
    assert pieces[0][0] == 0 and pieces[-1][1] == length
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(pieces, pieces[1:]))
    assert all(a % align == 0 and 0 < b - a <= max(tile, align) for a, b in pieces)


def test_plan_tiles_bounds_pixels_and_shares_small_images():
    tiles = plan_tiles(8, 100, 100, 256)  # 6 images of 100x100 fit in 256x256 pixels
    assert [t.batch for t in tiles] == [slice(0, 6), slice(6, 8)]
    big = plan_tiles(1, 1000, 700, 256)
    assert len(big) == 4 * 3
    assert all((t.rows.stop - t.rows.start) * (t.cols.stop - t.cols.start) <= 256**2 for t in big)


@pytest.mark.parametrize("conv", CONVS)
def test_tiled_4x4_matches_untiled(small, conv):
    """4 x 4 tiles (interior ones among them; uneven: 32, 33, 33, 32, and under Winograd's
    6-pixel alignment 36, 30, 36, 28), each larger than the decode chunk of 700 pixels (as
    tiles of the CPU's 256 are than its chunk of 8192), as the whole is."""
    lr, image = torch.randn(1, 32, 16, 16), torch.randn(1, 3, 130, 130)
    whole = upsample(small, lr, image, tile_size=130, chunk_size=700, conv=conv)
    tiled = upsample(small, lr, image, tile_size=40, chunk_size=700, conv=conv)
    assert (tiled - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("conv", CONVS)
def test_uneven_tiles_match_untiled(small, conv):
    lr, image = torch.randn(1, 32, 7, 5), torch.randn(1, 3, 131, 97)
    whole = upsample(small, lr, image, tile_size=256, conv=conv)
    tiled = upsample(small, lr, image, tile_size=41, conv=conv)  # tiles that divide nothing
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_tiled_local_attention_and_batches_match_untiled():
    torch.manual_seed(1)
    model = LoftUp(dim=16, num_heads=2, attention_window=3).eval()
    lr, image = torch.randn(3, 16, 5, 7), torch.randn(3, 3, 50, 70)
    whole = upsample(model, lr, image, tile_size=100)
    tiled = upsample(model, lr, image, tile_size=24)
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_forward_tiles_with_the_models_tile_size(small, monkeypatch):
    """The forward computes in tiles of ``model.tile_size`` (9 of at most 30 x 30 here, not
    the one tile of the default), and gets the untiled numbers."""
    import loftup.tiling as tiling

    planned = []
    real = tiling.plan_tiles
    monkeypatch.setattr(tiling, "plan_tiles", lambda *a: planned.append(real(*a)) or planned[-1])
    lr, image = torch.randn(1, 32, 8, 8), torch.randn(1, 3, 90, 70)
    with torch.no_grad():
        whole = small(lr, image)
        small.tile_size = 30
        try:
            tiled = small(lr, image)
        finally:
            small.tile_size = None
    assert [len(tiles) for tiles in planned] == [1, 9]
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_streamed_and_batched_outputs_follow_the_models_settings(small, tmp_path, monkeypatch):
    """upsample_to_npy and upsample_frames took the device's tiles (one 256-pixel tile here)
    and Winograd whatever the model's tile_size and conv said: other tiles, so another working
    memory than the one set, and numbers 5e-5 from model(lr_feats, image). They now compute
    what the forward computes, in its tiles."""
    import loftup.tiling as tiling
    from loftup import upsample_frames

    planned = []
    real = tiling.plan_tiles
    monkeypatch.setattr(tiling, "plan_tiles", lambda *a: planned.append(real(*a)) or planned[-1])
    lr, image = torch.randn(2, 32, 4, 4), torch.randn(2, 3, 40, 30)
    small.conv, small.tile_size = "direct", 16
    try:
        with torch.no_grad():
            expected = small(lr, image)
        arr = upsample_to_npy(small, lr, image, tmp_path / "x.npy", progress=False)
        frames = list(upsample_frames(small, zip(lr, image)))
    finally:
        small.conv, small.tile_size = "auto", None
    assert [len(tiles) for tiles in planned] == [12, 12, 12]  # 3 x 2 tiles of each image
    assert np.array_equal(arr, expected.numpy())
    assert all(torch.equal(f, e) for f, e in zip(frames, expected))


@pytest.mark.parametrize("shape", [(4, 10, 12), (6, 3, 40)], ids=["rows", "images"])
def test_a_tile_shared_by_images_is_decoded_in_chunks_of_chunk_size(small, monkeypatch, shape):
    """Small images share a tile; each decoding chunk took chunk_size pixels of every one of
    them (16 images of 64 x 64, 384 channels: 968 MB of working memory instead of the 395 MB
    of chunks of 8192 pixels). Now a chunk holds chunk_size pixels at most (whole rows of
    each image, or one row of some of the images), and the output is the same."""
    import loftup.tiling as tiling

    sizes = []
    real = tiling.decode
    monkeypatch.setattr(
        tiling, "decode", lambda fw, x, *a, **k: sizes.append(x.shape[:2]) or real(fw, x, *a, **k)
    )
    b, height, width = shape
    lr, image = torch.randn(b, 32, 4, 4), torch.randn(b, 3, height, width)
    whole = upsample(small, lr, image)
    sizes.clear()
    chunked = upsample(small, lr, image, chunk_size=100)
    assert len(plan_tiles(b, height, width, 256)) == 1  # one tile for the whole batch
    assert max(n * pixels for n, pixels in sizes) <= 100
    assert sum(n * pixels for n, pixels in sizes) == b * height * width
    assert (chunked - whole).abs().max().item() <= 1e-5


def test_an_empty_batch_gives_an_empty_output_or_no_tiles(small):
    """Batch 0 (the last slice of a loop, say), as the model's forward takes it."""
    lr, image = torch.randn(0, 32, 4, 4), torch.randn(0, 3, 10, 12)
    assert upsample(small, lr, image).shape == (0, 32, 10, 12)
    tiles = []
    assert upsample(small, lr, image, callback=lambda tile, f: tiles.append(tile)) is None
    assert tiles == []


@pytest.mark.parametrize("shape", [(2, 32, 21, 20), (2, 32, 20, 19), (1, 32, 20, 20)])
def test_an_out_of_another_shape_is_named_before_any_work(small, shape):
    """An ``out`` one row taller than the output was filled but for that row, left as it was
    (uninitialised memory, here), without a word; a smaller one failed in the first tile
    with torch's words. Now named with the shape it must have."""
    from loftup import LoftUpError

    lr, image = torch.randn(2, 32, 4, 4), torch.randn(2, 3, 20, 20)
    out = torch.full(shape, 7.0)
    with pytest.raises(LoftUpError, match=r"out must have the output's shape \(B, C, H, W\) = "):
        upsample(small, lr, image, out=out)
    assert bool((out == 7.0).all())  # nothing written
    right = torch.empty(2, 32, 20, 20)
    assert upsample(small, lr, image, out=right) is right
    assert torch.equal(right, upsample(small, lr, image))


def test_callback_receives_every_pixel_once(small):
    lr, image = torch.randn(2, 32, 4, 4), torch.randn(2, 3, 40, 30)
    expected = upsample(small, lr, image)
    seen = torch.zeros(2, 40, 30, dtype=torch.int64)
    got = torch.zeros_like(expected)

    def collect(tile, feats):
        seen[tile.batch, tile.rows, tile.cols] += 1
        got[tile.batch, :, tile.rows, tile.cols] = feats

    assert upsample(small, lr, image, tile_size=16, callback=collect) is None
    assert bool((seen == 1).all())
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("layout,dtype", [("nchw", "float32"), ("nhwc", "float16")])
def test_npy_streaming_writes_the_output(small, tmp_path, layout, dtype):
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 45, 38)
    expected = upsample(small, lr, image)
    path = tmp_path / "feats.npy"
    arr = upsample_to_npy(small, lr, image, path, layout=layout, dtype=dtype, tile_size=20)
    again = np.load(path)
    assert again.dtype == np.dtype(dtype)
    assert [p.name for p in tmp_path.iterdir()] == ["feats.npy"]  # no temporary file left
    if layout == "nhwc":
        again = again.transpose(0, 3, 1, 2)
    tol = 1e-6 if dtype == "float32" else 2e-3 * float(expected.abs().max())
    assert np.abs(again.astype(np.float32) - expected.numpy()).max() <= tol
    assert arr.shape == np.load(path, mmap_mode="r").shape


def test_npy_streaming_in_float16_refuses_values_it_cannot_hold(small, tmp_path):
    """dtype="float16" stored features beyond 65504 as infinities without a word (the CLI's
    --save-dtype float16 refuses them): named, with the fix, and no file is left."""
    import copy

    big = copy.deepcopy(small)
    with torch.no_grad():  # the last norm's scale: outputs up to about 3e5
        for t in big.head.norm.parameters():
            t.mul_(1e5)
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 45, 38)
    said = (r"values as large as \d+, beyond what float16 holds \(65504 at most\), so "
            r".*feats.npy was not written; pass dtype='float32'$")  # fmt: skip
    with pytest.raises(UsageError, match=said):
        upsample_to_npy(big, lr, image, tmp_path / "feats.npy", dtype="float16", tile_size=20)
    assert not list(tmp_path.iterdir())
    upsample_to_npy(big, lr, image, tmp_path / "feats.npy", tile_size=20)  # float32 holds them


def test_npy_streaming_in_float16_sees_large_values_beside_a_nan(small, tmp_path, monkeypatch):
    """A tile's min and max were NaN (or infinite) where it held one NaN (or Inf): its values
    beyond float16's range went to the file as infinities. And 65510 rounds to 65504, which
    float16 holds: written, not refused."""
    import loftup.tiling as tiling

    real = tiling.upsample

    def with_values(values):
        def upsample(*args, callback, **kwargs):
            def spoilt(tile, feats):
                feats = feats.clone()
                feats[0, 0, 0, : len(values)] = torch.tensor(values)
                callback(tile, feats)

            return real(*args, callback=spoilt, **kwargs)

        return upsample

    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 45, 38)
    for beside in (float("nan"), float("inf"), -float("inf")):
        monkeypatch.setattr(tiling, "upsample", with_values([1e5, beside]))
        with pytest.raises(UsageError, match=r"values as large as 100000, beyond what float16"):
            upsample_to_npy(small, lr, image, tmp_path / "f.npy", dtype="float16", tile_size=20)
        assert not list(tmp_path.iterdir())
    monkeypatch.setattr(tiling, "upsample", with_values([65510.0, -65519.0]))
    arr = upsample_to_npy(small, lr, image, tmp_path / "f.npy", dtype="float16", tile_size=20)
    assert arr[0, 0, 0, :2].tolist() == [65504.0, -65504.0]


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_npy_streaming_that_fails_leaves_nothing(small, tmp_path, monkeypatch, fault):
    """Interrupted (Ctrl-C) or failed (a full disk) after the first tile was written into the
    file: the partly written file is removed."""
    import loftup.tiling as tiling

    real = tiling.upsample
    seen = []

    def fail_after_first_tile(*args, callback, **kwargs):
        def write_then_fail(tile, feats):
            callback(tile, feats)  # the real write, into the file under its temporary name
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            raise fault("stopped after one tile")

        return real(*args, callback=write_then_fail, **kwargs)

    monkeypatch.setattr(tiling, "upsample", fail_after_first_tile)
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 45, 38)
    with pytest.raises(fault, match="stopped after one tile"):
        upsample_to_npy(small, lr, image, tmp_path / "feats.npy", tile_size=20)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0] != ["feats.npy"]  # a temporary
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "lr_shape, img_shape, setting, words",
    [
        ((1, 31, 4, 4), (1, 3, 45, 38), {}, "31 channels but this upsampler expects C=32"),
        ((2, 32, 4, 4), (1, 3, 45, 38), {}, "batch sizes differ"),
        ((1, 32, 4, 4), (1, 4, 45, 38), {}, "image must have 3 channels"),
        ((1, 32, 4, 4), (1, 3, 45, 38), {"tile_size": 0}, "tile_size must be a whole number"),
    ],
)
def test_npy_streaming_names_bad_input_before_making_the_file(
    small, tmp_path, lr_shape, img_shape, setting, words
):
    """As the model's forward names them, not as a shape error from inside the first tile
    (a torch RuntimeError about LayerNorm's normalized_shape, once the file had been made)."""
    from loftup import LoftUpError

    lr, image = torch.randn(lr_shape), torch.randn(img_shape)
    with pytest.raises((ValueError, LoftUpError), match=words):
        upsample_to_npy(small, lr, image, tmp_path / "feats.npy", **setting)
    assert not list(tmp_path.iterdir())


def test_npy_streaming_names_inputs_on_another_device_before_making_the_file(small, tmp_path):
    """As the model's forward names them: the features or image on another device than the
    model failed inside the first tile, with torch's error naming neither."""
    from loftup import LoftUpError

    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 20, 18)
    for args, name in (((lr.to("meta"), image), "lr_feats"), ((lr, image.to("meta")), "image")):
        with pytest.raises(LoftUpError, match=rf"^{name} is on meta, the upsampler on cpu; "):
            upsample_to_npy(small, *args, tmp_path / "feats.npy")
    assert not list(tmp_path.iterdir())


def test_streaming_a_model_in_training_mode_is_refused_with_the_fix(small, tmp_path):
    """A fresh LoftUp is in training mode, where its BatchNorm takes the batch's statistics:
    upsample_to_npy wrote the eval-mode output of such a model (max deviation 4.4 from what
    model(lr, image) gave), without a word. Now refused, naming model.eval(), before any file."""
    from loftup import LoftUpError

    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 8, 8)
    small.train()
    try:
        with pytest.raises(LoftUpError, match=r"in training mode .*; call model\.eval\(\) first"):
            upsample_to_npy(small, lr, image, tmp_path / "x.npy", progress=False)
        assert not list(tmp_path.iterdir())
        small.eval()
        small.stem.bn2.train()  # a BatchNorm alone in training mode: the same
        with pytest.raises(LoftUpError, match="training mode"):
            upsample_to_npy(small, lr, image, tmp_path / "x.npy", progress=False)
    finally:
        small.eval()
    arr = upsample_to_npy(small, lr, image, tmp_path / "x.npy", progress=False)
    with torch.no_grad():
        assert np.array_equal(arr, small(lr, image).numpy())


def test_streaming_to_the_home_folder_and_an_empty_batch(small, tmp_path, monkeypatch):
    """``"~/feats.npy"`` made a folder named ``~`` in the working folder, and an empty batch
    (the model gives (0, C, H, W)) was a UsageError about the file's shape; now the home
    folder's file, and an empty array of the batch's shape, in either layout."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 8, 10)
    arr = upsample_to_npy(small, lr, image, "~/feats.npy", progress=False)
    assert (tmp_path / "home" / "feats.npy").is_file() and not (tmp_path / "~").exists()
    with torch.no_grad():
        assert np.array_equal(arr, small(lr, image).numpy())
    for layout, shape in (("nchw", (0, 32, 8, 10)), ("nhwc", (0, 8, 10, 32))):
        empty = upsample_to_npy(small, lr[:0], image[:0], tmp_path / "e.npy", layout=layout)
        assert empty.shape == shape and empty.dtype == np.float32
        assert np.load(tmp_path / "e.npy").shape == shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "home"]  # no temporary


def test_bad_streaming_arguments_are_named(small, tmp_path):
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="layout"):
        upsample_to_npy(small, lr, image, tmp_path / "x.npy", layout="hwc")
    with pytest.raises(ValueError, match="float32 or float16"):
        upsample_to_npy(small, lr, image, tmp_path / "x.npy", dtype="int8")
    with pytest.raises(ValueError, match="tile_size"):
        plan_tiles(1, 8, 8, 0)
    with pytest.raises(ValueError, match="CUDA"):
        graph_upsampler(small, lr, image)


@pytest.mark.parametrize(
    "name, value", [("chunk_size", 2.5), ("chunk_size", -5), ("tile_size", 0), ("align", True)]
)
def test_bad_inference_settings_are_named(small, name, value):
    """The model's inference settings (attributes a user sets) are checked when used: a
    one-line LoftUpError naming the setting, not a TypeError from deep inside, nor a value
    quietly taken as another; the convolution's name likewise."""
    from loftup import LoftUpError

    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 8, 8)
    setattr(small, name, value)
    try:
        with pytest.raises(LoftUpError, match=f"{name} must be a whole number >= 1.*model.{name}"):
            small(lr, image)
    finally:
        setattr(small, name, None)
    with pytest.raises(LoftUpError, match="conv must be one of auto"):
        upsample(small, lr, image, conv="fast")
    assert small(lr, image).shape == (1, 32, 8, 8)  # None: the device's defaults


@pytest.mark.slow
def test_reference_model_tiled_640_matches_untiled(reference_dir):
    model = load_upsampler(REFERENCE_STATE)
    torch.manual_seed(0)
    lr, image = torch.randn(1, 384, 16, 16), torch.randn(1, 3, 640, 640)
    whole = upsample(model, lr, image, tile_size=640)
    tiled = upsample(model, lr, image, tile_size=200)
    assert (tiled - whole).abs().max().item() <= 1e-5


def test_started_upsample_finishes_with_the_models_output(small):
    """start_upsample(model, image).finish(lr) == model(lr, image): one tile (the stem is run
    at start), several tiles, training mode and a model changed in between (not started, or
    redone)."""
    from loftup import start_upsample

    g = torch.Generator().manual_seed(9)
    lr = torch.randn(2, 32, 4, 5, generator=g)
    image = torch.randn(2, 3, 30, 26, generator=g)
    with torch.inference_mode():
        ref = small(lr, image)
        pending = start_upsample(small, image)
        assert pending.queries is not None  # the stem ran already
        assert torch.equal(pending.finish(lr), ref)
        small.tile_size = 16
        try:
            tiled = start_upsample(small, image)
            assert tiled.queries is None and torch.equal(tiled.finish(lr), small(lr, image))
        finally:
            small.tile_size = None
    changed = LoftUp(dim=32, num_heads=4, n_freqs=6).eval()
    changed.load_state_dict(small.state_dict())
    with torch.inference_mode():
        stale = start_upsample(changed, image)
    with torch.no_grad():
        changed.stem.conv1.weight.add_(0.1)  # after the start: finish must not use the old stem
    with torch.inference_mode():
        assert torch.equal(stale.finish(lr), changed(lr, image))
        assert not torch.equal(stale.finish(lr), ref)
    small.train()
    try:
        pending = start_upsample(small, image)
        assert pending.queries is None
    finally:
        small.eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        start_upsample(small, image[:, :2])
    with pytest.raises(ValueError, match="stream= is for CUDA images"):
        start_upsample(small, image, stream=object())


def test_a_started_upsample_finished_in_training_or_with_gradients_is_the_models():
    """finish() after model.train(), or where a gradient is wanted, is what model() gives
    then (the differentiable path), not the eval output started before."""
    from loftup import start_upsample

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=4).eval()
    lr, image = torch.randn(2, 8, 3, 3), torch.randn(2, 3, 10, 9)
    with torch.no_grad():
        pending = start_upsample(model, image)
    assert pending.queries is not None
    graded = pending.finish(lr)  # gradients on, the parameters want them
    assert graded.requires_grad
    assert torch.allclose(graded, model(lr, image), atol=1e-6)
    with torch.no_grad():
        pending = start_upsample(model, image)
        model.train()  # BatchNorm on the batch's statistics
        assert torch.allclose(pending.finish(lr), model(lr, image), atol=1e-6)


def test_a_started_upsample_names_inputs_on_another_device_or_empty_before_any_work():
    """start_upsample of an image on another device than the model, or of an empty grid, failed
    inside the stem (torch's device error, a ZeroDivisionError); finish() of features on
    another device failed inside a layer: each now as model() says it, in one line."""
    from loftup import LoftUpError, start_upsample

    model = LoftUp(dim=8, num_heads=2, n_freqs=4).eval()
    lr, image = torch.randn(1, 8, 3, 3), torch.randn(1, 3, 10, 9)
    with torch.no_grad():
        with pytest.raises(LoftUpError, match=r"^image is on meta, the upsampler on cpu; move"):
            start_upsample(model, image.to("meta"))
        with pytest.raises(LoftUpError, match=r"^image has an empty grid, shape \(1, 3, 0, 9\)"):
            start_upsample(model, image[:, :, :0])
        pending = start_upsample(model, image)
        assert pending.queries is not None  # the stem ran: finish would not call model()
        with pytest.raises(LoftUpError, match=r"^lr_feats is on meta, the upsampler on cpu; "):
            pending.finish(lr.to("meta"))
        assert torch.equal(pending.finish(lr), model(lr, image))


def test_names_split_out_of_tiling_are_still_found_there():
    """start_upsample and PendingUpsample moved to loftup.early_start, and the others to
    tile_plan and npy_stream: ``from loftup.tiling import X`` finds the very same objects."""
    import loftup
    import loftup.early_start as early_start
    import loftup.npy_stream as npy_stream
    import loftup.tile_plan as tile_plan
    import loftup.tiling as tiling

    moved = {
        early_start: ("start_upsample", "PendingUpsample"),
        npy_stream: ("upsample_to_npy",),
        tile_plan: ("Tile", "plan_tiles", "split_axis", "default_tile_size", "check_settings"),
    }
    for new, names in moved.items():
        for name in names:
            assert getattr(tiling, name) is vars(new)[name], name
    assert loftup.start_upsample is early_start.start_upsample
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tiling.nothing  # noqa: B018
