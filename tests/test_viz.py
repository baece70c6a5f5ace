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
