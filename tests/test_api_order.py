"""``loftup.upsample``'s order of refusals: what is wrong with the model and its options (a
typo in a name, missing weights) before what is wrong with the image, and the image before a
LoftUp or backbone module passed in is converted in place."""

from __future__ import annotations

import pytest
import torch

import loftup
from loftup.errors import UnknownNameError, UsageError, WeightsNotFoundError


def test_the_models_mistakes_are_said_before_the_images(upsampler, tmp_path):
    """Since the image was checked before the pipeline was built (not to convert a LoftUp
    for an image refused), a missing image or one of 0-255 floats was said first, and a typo
    in a model or backbone name, or weights not there, only once it was mended. The models'
    checks, which convert nothing, come first again; the image's before any conversion."""
    missing = tmp_path / "nope.png"
    with pytest.raises(WeightsNotFoundError, match="no such file or folder"):
        loftup.upsample(missing, model=tmp_path / "no_weights")
    with pytest.raises(UnknownNameError, match="unknown upsampler 'loftup_dinov2_s14_typo'"):
        loftup.upsample(missing, model="loftup_dinov2_s14_typo")
    floats = torch.rand(1, 3, 40, 48) * 255  # values of 0-255: refused as such
    with pytest.raises(UnknownNameError, match="unknown backbone 'dinov2_tny'"):
        loftup.upsample(floats, model=upsampler, backbone="dinov2_tny")
    model = loftup.load_upsampler(upsampler)
    with pytest.raises(UnknownNameError, match="unknown backbone 'dinov2_tny'"):
        loftup.upsample(missing, model=model, backbone="dinov2_tny", dtype="float16")
    with pytest.raises(UsageError, match="unknown precision 'float17'"):
        loftup.upsample(missing, model=model, dtype="float17")
    with pytest.raises(UsageError, match=r"expected RGB values in \[0, 1\]"):
        loftup.upsample(floats, model=model, dtype="float16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # not converted
    with pytest.raises(loftup.LoftUpError, match="no such image file"):
        loftup.upsample(missing, model=upsampler)


def test_upsample_scans_the_pixels_once(monkeypatch):
    """upsample checked a float batch's pixels, then the pipeline it called scanned them again
    (a pass over every pixel of the caller's batch, each call); once now. The pipeline called
    directly still checks them, and refuses 0-255 floats."""
    import loftup.checks as checks

    scans, real = [], checks.check_pixels

    def counted(images, *a, **k):
        scans.append(images.shape)
        return real(images, *a, **k)

    monkeypatch.setattr(checks, "check_pixels", counted)
    torch.manual_seed(0)
    model = loftup.LoftUp(dim=32)
    images = torch.rand(2, 3, 40, 48)
    loftup.upsample(images, model=model, backbone="dinov2_tiny", backbone_size=28, size=16)
    assert len(scans) == 1
    pipeline = loftup.load_pipeline(model, backbone="dinov2_tiny", backbone_size=28)
    pipeline(images, 16)
    assert len(scans) == 2
    with pytest.raises(UsageError, match=r"expected RGB values in \[0, 1\]"):
        pipeline(images * 255, 16)
