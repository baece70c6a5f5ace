import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loftup import LoftUp, LoftUpError
from loftup.baselines import BASELINES, get_upsampler, jbu


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "jbu"])
def test_every_baseline_has_loftups_call_shape(name):
    fn = get_upsampler(name)
    lr = torch.randn(2, 5, 4, 6)
    image = torch.randn(2, 3, 30, 21)  # any ratio, up in one axis and down in the other
    assert fn(lr, image).shape == (2, 5, 30, 21)
    with pytest.raises(ValueError, match="batch sizes differ: .*; give one guidance image per"):
        fn(lr, image[:1])
    with pytest.raises(ValueError, match=r"got \(5, 4, 6\) and .*\.unsqueeze\(0\)"):
        fn(lr[0], image)


def test_interpolating_baselines_are_torchs():
    lr = torch.randn(1, 3, 5, 7)
    image = torch.zeros(1, 3, 20, 28)
    ref = F.interpolate(lr, size=(20, 28), mode="bicubic", align_corners=False)
    assert torch.equal(BASELINES["bicubic"](lr, image), ref)


def test_nearest_copies_the_cell_under_each_pixels_centre():
    """torch's legacy "nearest" read the cell under a pixel's top-left corner: at 3 -> 8 pixel 5
    (centre 5.5, in cell 2 which starts at 5.33) copied cell 1, and the copy was no longer
    symmetric under a flip of the image."""
    h, w, height, width = 3, 7, 8, 10  # no pixel centre on a cell boundary: no ties
    lr = torch.randn(2, 4, h, w)
    out = BASELINES["nearest"](lr, torch.zeros(2, 3, height, width))
    rows = [math.floor((y + 0.5) * h / height) for y in range(height)]
    cols = [math.floor((x + 0.5) * w / width) for x in range(width)]
    assert torch.equal(out, lr[:, :, rows][:, :, :, cols])
    flipped = BASELINES["nearest"](lr.flip(-1, -2), torch.zeros(2, 3, height, width))
    assert torch.equal(flipped, out.flip(-1, -2))
    small = BASELINES["nearest"](lr.mT, torch.zeros(2, 3, 5, 2))  # down: 7 -> 5 rows, 3 -> 2
    assert torch.equal(small, lr.mT[:, :, [0, 2, 3, 4, 6]][:, :, :, [0, 2]])


def _jbu_by_loops(lr, rgb, radius, ss, sr):
    """The joint bilateral upsampler written out pixel by pixel (independent of jbu())."""
    _, c, h, w = lr.shape
    height, width = rgb.shape[-2:]
    small = F.adaptive_avg_pool2d(rgb, (h, w))
    out = torch.zeros(c, height, width, dtype=lr.dtype)
    for y in range(height):
        for x in range(width):
            u = (y + 0.5) * h / height - 0.5
            v = (x + 0.5) * w / width - 0.5
            cy, cx = min(max(round(u), 0), h - 1), min(max(round(v), 0), w - 1)
            num, den = torch.zeros(c, dtype=lr.dtype), 0.0
            for iy in range(cy - radius, cy + radius + 1):
                for ix in range(cx - radius, cx + radius + 1):
                    if not (0 <= iy < h and 0 <= ix < w):
                        continue
                    d2 = float(((rgb[0, :, y, x] - small[0, :, iy, ix]) ** 2).sum())
                    wgt = math.exp(-((u - iy) ** 2 + (v - ix) ** 2) / (2 * ss**2))
                    wgt *= math.exp(-d2 / (2 * sr**2))
                    num += wgt * lr[0, :, iy, ix]
                    den += wgt
            out[:, y, x] = num / den
    return out


def test_jbu_matches_its_definition_pixel_by_pixel():
    torch.manual_seed(0)
    lr = torch.randn(1, 4, 3, 4)
    rgb = torch.rand(1, 3, 9, 11)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    ours = jbu(lr, image, radius=1, sigma_spatial=0.8, sigma_range=0.3)[0]
    ref = _jbu_by_loops(lr, rgb, 1, 0.8, 0.3)
    assert torch.allclose(ours, ref, atol=1e-5)
    tiled = jbu(lr, image, radius=1, sigma_spatial=0.8, sigma_range=0.3, tile_elements=4 * 11)
    assert torch.allclose(tiled[0], ours, atol=1e-6)  # tiling over rows changes nothing


def test_jbu_keeps_edges_that_bilinear_blurs():
    # two regions split between cells; features follow the regions
    lr = torch.zeros(1, 1, 4, 4)
    lr[..., 2:] = 1.0
    rgb = torch.zeros(1, 3, 32, 32)
    rgb[..., 16:] = 1.0
    mean, std = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
    image = (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    sharp = jbu(lr, image)[0, 0]
    blurred = BASELINES["bilinear"](lr, image)[0, 0]
    truth = rgb[0, 0]
    assert (sharp - truth).abs().mean() < 0.5 * (blurred - truth).abs().mean()
    assert torch.allclose(jbu(torch.full((1, 2, 3, 3), 7.0), image), torch.tensor(7.0))


def test_get_upsampler_loads_checkpoints_and_explains_highres(tmp_path):
    model = LoftUp(dim=8)
    model.save_pretrained(tmp_path / "up")
    loaded = get_upsampler(str(tmp_path / "up"))
    assert isinstance(loaded, LoftUp) and loaded.dim == 8
    with pytest.raises(LoftUpError, match="larger input"):
        get_upsampler("highres")
    # a misspelt baseline: the error lists the baselines with the released names
    with pytest.raises(LoftUpError, match="unknown upsampler 'bilinar'.*loftup_dinov2s") as e:
        get_upsampler("bilinar")
    assert "nearest, bilinear, bicubic, jbu" in str(e.value) and "\n" not in str(e.value)


def _shifted_checkerboard(n: int) -> torch.Tensor:
    """(1, 1, n, n) of +-1 in squares of 2 cells shifted by one cell: the two cells nearest
    the centre of every 4 x 4 block (what plain bilinear reads there) share one sign, while
    the block, like the whole grid, averages to 0."""
    i = torch.arange(n)
    return (((i[:, None] + 1) // 2 + (i[None] + 1) // 2) % 2).float()[None, None] * 2 - 1


@pytest.mark.parametrize("name", ["bilinear", "bicubic"])
def test_shrinking_baselines_average_every_cell(name):
    """An output smaller than the grid (a tiny output, or highres' large grid) is antialiased:
    each pixel weighs all the cells it covers. Plain interpolation would read the 2 (4) cells
    nearest each pixel's centre and turn this zero-mean pattern into a flat +-1."""
    from PIL import Image

    fn = BASELINES[name]
    lr = _shifted_checkerboard(16)
    small = fn(lr, torch.zeros(1, 3, 4, 4))
    assert small.abs().max() < 0.1
    plain = F.interpolate(lr, size=(4, 4), mode=name, align_corners=False)
    assert plain.abs().min() > 0.9  # what it was
    # both axes shrinking: PIL's resize of the same grid (its bicubic is torch's antialiased one)
    lr = torch.randn(2, 3, 12, 17, generator=torch.Generator().manual_seed(0))
    out = fn(lr, torch.zeros(2, 3, 5, 7))
    mode = Image.BILINEAR if name == "bilinear" else Image.BICUBIC
    for b in range(2):
        for c in range(3):
            ref = Image.fromarray(lr[b, c].numpy(), mode="F").resize((7, 5), mode)
            assert torch.allclose(out[b, c], torch.from_numpy(np.array(ref)), atol=1e-4)
    # an axis that grows keeps plain interpolation (torch's cubic, not PIL's): rows 12 -> 24 of
    # a grid constant along each row, whose columns 17 -> 7 then change nothing
    rows = lr[..., :1]
    mixed = fn(rows.expand(2, 3, 12, 17), torch.zeros(2, 3, 24, 7))
    grown = F.interpolate(rows, size=(24, 1), mode=name, align_corners=False)
    assert torch.allclose(mixed, grown.expand(2, 3, 24, 7), atol=1e-6)
    half = fn(lr.bfloat16(), torch.zeros(2, 3, 5, 7))
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), out, atol=0.05)


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "jbu"])
def test_baselines_refuse_what_loftup_refuses_with_one_clear_error(name):
    """A uint8 image (0-255 pixels) was taken as a normalised one (the JBU's colours all
    white, silently), uint8 features were interpolated in integers, and an empty grid failed
    deep in torch (an IndexError in the JBU). Each is now a one-line error saying what to do,
    a ValueError and a TypeError as LoftUp's forward raises."""
    fn = BASELINES[name]
    lr, image = torch.randn(1, 4, 3, 3), torch.randn(1, 3, 8, 8)
    cases = [
        (lr, (image * 255).to(torch.uint8), "image must be floating point.*float"),
        (lr.to(torch.uint8), image, "lr_feats must be floating point"),
        (lr[:, :, :0], image, "lr_feats has an empty grid"),
        (lr, image[:, :, :, :0], "image has an empty grid"),
    ]
    for feats, img, message in cases:
        with pytest.raises(LoftUpError, match=message) as e:
            fn(feats, img)
        assert isinstance(e.value, ValueError) and isinstance(e.value, TypeError)
        assert "\n" not in str(e.value)


def test_bicubic_overshoots_a_step_as_documented_and_jbu_does_not():
    """The convention the docstring states: bicubic is torch's, unclamped (11% of a step on
    each side when upsampling); the JBU's weights are positive, so it stays inside."""
    lr = torch.zeros(1, 2, 4, 8)
    lr[..., 4:] = 1.0
    image = torch.zeros(1, 3, 56, 112)
    cubic = BASELINES["bicubic"](lr, image)
    assert 0.10 < cubic.max() - 1 < 0.12 and -0.12 < cubic.min() < -0.10
    inside = jbu(lr, image)
    assert inside.min() >= 0 and inside.max() <= 1 + 1e-6


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "jbu"])
def test_the_output_is_on_the_features_device_wherever_the_image_is(name):
    """The interpolating baselines read only the image's size, so features on a GPU with the
    image on the CPU worked; the JBU failed mixing devices. ("meta" stands in for a GPU.)"""
    out = BASELINES[name](torch.randn(2, 4, 3, 3, device="meta"), torch.zeros(2, 3, 8, 9))
    assert out.device.type == "meta" and out.shape == (2, 4, 8, 9)


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic", "jbu"])
def test_each_image_of_a_batch_is_upsampled_alone(name):
    """A batch gives what its images give one by one (the JBU guided by its own image's
    colours, whatever its tiling over rows), at odd sizes in both directions."""
    g = torch.Generator().manual_seed(0)
    lr, image = torch.randn(3, 5, 4, 5, generator=g), torch.randn(3, 3, 13, 3, generator=g)
    fn = BASELINES[name]
    if name == "jbu":
        fn = lambda f, i: jbu(f, i, tile_elements=2 * 3 * 5 * 3)  # noqa: E731 (rows in tiles)
    out = fn(lr, image)
    for i in range(3):
        assert torch.allclose(out[i], fn(lr[i : i + 1], image[i : i + 1])[0], atol=1e-6)


def test_jbu_refuses_a_zero_sigma_or_negative_radius():
    """sigma_spatial=0 divided by zero: every weight underflowed and the output was all
    zeros, silently. An infinite range sigma is the limit without a range term: allowed."""
    lr, image = torch.randn(1, 2, 3, 3), torch.randn(1, 3, 6, 6)
    for bad in ({"sigma_spatial": 0.0}, {"sigma_range": 0.0}, {"radius": -1}, {"radius": 1.5}):
        with pytest.raises(LoftUpError, match="sigmas > 0.*got radius"):
            jbu(lr, image, **bad)
    plain = jbu(lr, image, sigma_range=math.inf)  # spatial weights only: no colour
    assert torch.allclose(plain, jbu(lr, torch.zeros_like(image)), atol=1e-6)


def test_jbu_with_a_small_spatial_sigma_copies_the_nearest_cell():
    """Every spatial weight of a pixel underflowed to 0 below sigma ~0.03 cells and its
    features came out 0; the weights are now relative to the pixel's nearest cell, so a small
    sigma tends to the nearest cell (the nearest baseline at 3 -> 8, whose centres never tie)."""
    lr, image = torch.randn(1, 2, 3, 3), torch.zeros(1, 3, 8, 8)
    assert torch.equal(jbu(lr, image, sigma_spatial=0.01), BASELINES["nearest"](lr, image))


def test_jbu_follows_colours_far_from_every_cell():
    """The range exponent was clamped at -50 against underflow: a pixel whose colour was far
    from all its cells' (a thin line, or a narrow range sigma) weighed them by position alone.
    Weights relative to each pixel's largest keep the definition (checked in double)."""
    torch.manual_seed(0)
    lr, rgb = torch.randn(1, 4, 3, 4), torch.rand(1, 3, 9, 11)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    ours = jbu(lr, image, radius=1, sigma_spatial=0.8, sigma_range=0.05)[0]
    ref = _jbu_by_loops(lr.double(), rgb.double(), 1, 0.8, 0.05)
    assert torch.allclose(ours.double(), ref, atol=1e-4)
