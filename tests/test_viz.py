import torch

from loftup.viz import apply_pca, fit_pca, pca_pair


def test_pca_basis_is_shared_so_colours_compare():
    torch.manual_seed(0)
    lr = torch.randn(1, 16, 4, 4)
    hr = torch.nn.functional.interpolate(lr, size=(16, 16), mode="nearest")
    lr_rgb, hr_rgb = pca_pair(lr, hr)
    assert lr_rgb.shape == (1, 3, 4, 4) and hr_rgb.shape == (1, 3, 16, 16)
    # nearest upsampling copies features, so the same basis must give the same colours
    again = torch.nn.functional.interpolate(lr_rgb, size=(16, 16), mode="nearest")
    assert torch.allclose(again, hr_rgb, atol=1e-5)
    assert 0 <= hr_rgb.min() and hr_rgb.max() <= 1


def test_pca_captures_the_dominant_direction():
    torch.manual_seed(0)
    direction = torch.randn(8)
    coeff = torch.linspace(-3, 3, 100)
    x = coeff[:, None] * direction + 0.01 * torch.randn(100, 8)
    basis = fit_pca(x)
    cos = torch.nn.functional.cosine_similarity(basis.components[:, 0], direction, dim=0).abs()
    assert cos > 0.99
    rgb = apply_pca(x.T.reshape(1, 8, 10, 10), basis)
    assert rgb.shape == (1, 3, 10, 10)
    # the first colour follows the position along that direction, over the whole range
    red = rgb[0, 0].flatten()  # pixel i holds coeff[i]
    steps = red.diff()
    assert (steps >= 0).all() or (steps <= 0).all(), red
    assert red.min() == 0 and red.max() == 1


def test_the_picture_of_a_very_narrow_image_stays_small():
    """A 1000 x 3 image made a 1200 x 133,000 pixel PNG; its picture is now at most 16 inches
    (1670 pixels) tall, and an ordinary one keeps the image's shape."""
    import io

    from PIL import Image

    from loftup.outputs import comparison_png

    for (height, width), most in (((1000, 3), 1670), ((60, 80), 400)):
        image = torch.rand(3, height, width)
        lr, hr = torch.randn(8, 4, 1), torch.randn(8, height, width)
        png = Image.open(io.BytesIO(comparison_png(image, lr, hr)))
        assert png.size[0] == 1200 and png.size[1] <= most, png.size


def test_colours_do_not_depend_on_the_memory_layout():
    """The same values held channels-last (as a streamed output is read back) gave colours
    that differed in the last bits, so a picture's bytes changed with how it was computed."""
    g = torch.Generator().manual_seed(0)
    hr = torch.randn(1, 32, 60, 70, generator=g)
    basis = fit_pca(hr[:, :, ::4, ::4])
    last = hr.contiguous(memory_format=torch.channels_last)
    assert torch.equal(apply_pca(hr, basis), apply_pca(last, basis))


def test_pca_is_the_exact_principal_basis_whatever_the_global_rng():
    """Backbone features have a flat spectrum: a randomised PCA seeded from the global RNG
    gave another, far-from-principal basis (another picture) on every call."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 64, generator=g) * torch.linspace(2, 1, 64)
    centred = x - x.mean(0)
    top = torch.linalg.eigh(centred.T.double() @ centred.double())[1][:, -3:].flip(1).float()
    bases = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        bases.append(fit_pca(x))
    assert torch.equal(bases[0].components, bases[1].components)
    cos = (bases[0].components * top).sum(0).abs()
    assert (cos > 0.999).all(), cos
    rgb = [apply_pca(x.T.reshape(1, 64, 40, 50), b) for b in bases]
    assert torch.equal(rgb[0], rgb[1])
    # past max_samples the fit takes a sample of the pixels: its own seeded one, not the
    # global RNG's
    many = torch.randn(6000, 8, generator=g) * torch.linspace(2, 1, 8)
    fits = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        fits.append(fit_pca(many, max_samples=1000))
    assert torch.equal(fits[0].components, fits[1].components)
    assert torch.equal(fits[0].lo, fits[1].lo) and torch.equal(fits[0].hi, fits[1].hi)
    assert not torch.equal(fits[0].mean, fit_pca(many).mean)  # a sample, not all


def test_a_picture_titled_with_a_file_name_that_is_not_utf8_is_drawn():
    """A file name in another encoding (``x\\xff.png`` from an old archive) reaches Python
    with a surrogate that the font cannot draw: --viz ended the whole run with matplotlib's
    TypeError. The title shows the byte as a replacement character instead."""
    import io

    from PIL import Image

    from loftup.outputs import comparison_png

    image, lr, hr = torch.rand(3, 20, 30), torch.randn(8, 2, 3), torch.randn(8, 20, 30)
    for name in ("x\udcff.png", "photo é.png"):
        png = Image.open(io.BytesIO(comparison_png(image, lr, hr, title=name)))
        assert png.size[0] == 1200


def test_features_of_fewer_than_three_channels_are_drawn_in_rgb():
    """One or two channels gave a 1- or 2-channel "RGB" picture: --viz failed with
    matplotlib's TypeError (Invalid shape (h, w, 2)). The missing colours repeat the first
    component: one channel is drawn in grey."""
    import io

    from PIL import Image

    from loftup.outputs import comparison_png

    g = torch.Generator().manual_seed(0)
    for c in (1, 2):
        lr, hr = torch.randn(1, c, 4, 4, generator=g), torch.randn(1, c, 16, 16, generator=g)
        lr_rgb, hr_rgb = pca_pair(lr, hr)
        assert lr_rgb.shape == (1, 3, 4, 4) and hr_rgb.shape == (1, 3, 16, 16)
        assert torch.equal(hr_rgb[:, 2], hr_rgb[:, 0]) and hr_rgb.std() > 0.1
        assert torch.equal(hr_rgb[:, 1], hr_rgb[:, 0]) == (c == 1)  # two channels: two colours
        png = comparison_png(torch.rand(3, 16, 16), lr[0], hr[0])
        assert Image.open(io.BytesIO(png)).size[0] == 1200


def test_a_low_res_grid_too_small_to_fit_on_gives_a_picture_not_noise():
    """A 1x1 (or 1x2) low-res grid has no (or one) direction to fit a PCA on: the other
    components were arbitrary and their colour range zero, so the upsampled picture was
    saturated noise (every value 0 or 1). The basis is fitted on the upsampled features then."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 16, 3, 3, generator=g)
    hr = torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear")
    for h, w in ((1, 1), (1, 2)):
        lr = torch.nn.functional.adaptive_avg_pool2d(hr, (h, w))
        lr_rgb, hr_rgb = pca_pair(lr, hr)
        assert lr_rgb.shape == (1, 3, h, w) and hr_rgb.shape == (1, 3, 24, 24)
        inside = ((hr_rgb > 0.01) & (hr_rgb < 0.99)).float().mean()
        assert inside > 0.5, (h, w, inside)
        # the same picture as a basis fitted on the upsampled features gives
        assert torch.equal(hr_rgb, apply_pca(hr, fit_pca(hr)))


def test_constant_features_are_drawn_grey_not_as_stretched_rounding():
    """Constant low-res features have no direction: the basis was an arbitrary one with a
    colour range of zero, so the low-res picture was black and the upsampled one (constant up
    to the interpolation's rounding, 5e-4 at 500) saturated noise. Both are mid-grey now."""
    lr = torch.full((2, 8, 4, 4), 500.0)
    lr[:, 1] = -300.0
    hr = torch.nn.functional.interpolate(lr, size=(37, 29), mode="bicubic")
    assert not torch.equal(hr, lr[:, :, :1, :1].expand_as(hr))  # rounding is there
    lr_rgb, hr_rgb = pca_pair(lr, hr)
    assert torch.equal(lr_rgb, torch.full_like(lr_rgb, 0.5))
    assert torch.equal(hr_rgb, torch.full_like(hr_rgb, 0.5))
    # a feature map that varies keeps its colours, however large its values
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    assert pca_pair(lr + noise[..., :4, :4], hr)[0].std() > 0.1
    # and what an upsampler adds to constant features is shown, in the colours of its own fit
    lr_rgb, hr_rgb = pca_pair(lr, hr + noise)
    assert hr_rgb.std() > 0.1 and torch.equal(hr_rgb, apply_pca(hr + noise, fit_pca(hr + noise)))


def test_a_nan_pixel_is_left_out_of_the_fit():
    """One NaN low-res pixel made the eigensolver fail to converge, so --viz (or a training
    run's picture) ended with a LinAlgError; the fit now skips it."""
    g = torch.Generator().manual_seed(0)
    lr, hr = torch.randn(1, 8, 4, 4, generator=g), torch.randn(1, 8, 8, 8, generator=g)
    broken = lr.clone()
    broken[0, 3, 0, 0] = float("nan")
    basis = fit_pca(lr.flatten(2)[0, :, 1:].T)  # the other pixels
    assert torch.equal(pca_pair(broken, hr)[1], apply_pca(hr, basis))
    # no finite pixel: no direction, drawn grey (pca_pair then fits on the upsampled ones)
    nothing = fit_pca(torch.full_like(lr, float("nan")))
    grey = apply_pca(hr, nothing)
    assert torch.equal(grey, torch.full_like(grey, 0.5))
    assert torch.equal(
        pca_pair(torch.full_like(lr, float("nan")), hr)[1], apply_pca(hr, fit_pca(hr))
    )


def test_one_images_features_as_loftup_upsample_returns_them_are_pictured():
    """``loftup.upsample`` returns (C, H, W) for one image; fit_pca, apply_pca and pca_pair
    raised torch's IndexError or a permute error about sparse_coo on it. They take it as a
    batch of one (giving (3, H, W)), and name any other shape in a line."""
    import pytest

    from loftup import LoftUpError

    torch.manual_seed(0)
    lr, hr = torch.randn(16, 4, 5), torch.randn(16, 12, 15)
    basis = fit_pca(hr)
    assert torch.equal(basis.components, fit_pca(hr[None]).components)
    assert torch.equal(apply_pca(hr, basis), apply_pca(hr[None], basis)[0])
    pair, batched = pca_pair(lr, hr), pca_pair(lr[None], hr[None])
    assert [t.shape for t in pair] == [(3, 4, 5), (3, 12, 15)]
    assert all(torch.equal(a, b[0]) for a, b in zip(pair, batched))
    for bad in (torch.randn(1, 1, 16, 4, 5), torch.randn(16)):
        with pytest.raises(LoftUpError, match=r"expected features \(B, C, H, W\) or \(C, H, W\)"):
            apply_pca(bad, basis)


def test_the_comparison_picture_leaves_the_process_random_numbers_alone(monkeypatch):
    """It seeded the global generator (inside fork_rng(devices=[]), which restores the CPU's
    alone): every GPU's random numbers restarted at seed 0 after a --viz picture. Its colours
    do not depend on the process's random state either. Without a GPU, whether any GPU's
    generator would have been reseeded is what torch.cuda.manual_seed_all was asked."""
    import io

    from loftup.outputs import comparison_png

    g = torch.Generator().manual_seed(1)
    image, lr = torch.rand(3, 40, 40, generator=g), torch.randn(8, 5, 5, generator=g)
    hr = torch.randn(8, 40, 40, generator=g)
    seeded, reseeded = [], []
    for seed in (0, 7):
        torch.manual_seed(seed)
        cpu, gpu = torch.get_rng_state(), torch.cuda.get_rng_state_all()
        with monkeypatch.context() as m:
            if not gpu:  # no GPU generator to read here
                m.setattr(torch.cuda, "manual_seed_all", reseeded.append)
            seeded.append(comparison_png(image, lr, hr))
        assert torch.equal(torch.get_rng_state(), cpu) and not reseeded, reseeded
        assert all(map(torch.equal, torch.cuda.get_rng_state_all(), gpu))
    assert seeded[0] == seeded[1]
    assert io.BytesIO(seeded[0]).read(4) == b"\x89PNG"


def test_features_of_another_width_than_the_basis_are_named_in_a_line():
    """A basis fitted on one backbone's features applied to another's (or a pair whose two
    maps differ in width) was torch's "The size of tensor a (4) must match the size of tensor
    b (8) at non-singleton dimension 3"."""
    import pytest

    from loftup import LoftUpError

    basis = fit_pca(torch.randn(1, 8, 4, 4))
    with pytest.raises(
        LoftUpError, match=r"^features of 4 channels, but the PCA basis was fitted on 8; "
    ):
        apply_pca(torch.randn(1, 4, 4, 4), basis)
    with pytest.raises(
        LoftUpError, match=r"^low-res features of 8 channels, upsampled ones of 4; "
    ):
        pca_pair(torch.randn(8, 2, 2), torch.randn(4, 8, 8))
