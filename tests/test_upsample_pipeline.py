"""The pipeline behind ``loftup upsample`` called from Python, and the command's arguments: what
is not a model, a size, an image of pixels in 0..1 or a precision is named."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import loftup
from loftup.cli import main
from loftup.convert import native_to_reference


def test_a_pipeline_keeps_its_precision(upsampler):
    pipe = loftup.load_pipeline(upsampler, dtype="float16", device="cpu")
    assert pipe.dtype == torch.float16
    assert next(pipe.featurizer.parameters()).dtype == torch.float16
    image = torch.rand(1, 3, 40, 56)
    assert loftup.upsample(image, model=pipe, size=32).dtype == torch.float16
    with pytest.raises(loftup.LoftUpError, match="dtype='bfloat16'"):
        loftup.upsample(image, model=pipe, dtype="bf16")


def test_arguments_that_contradict_a_ready_pipeline_are_refused_by_name(upsampler):
    """upsample(image, model=pipeline, backbone_size=448) ran at the pipeline's 112 without a
    word (so did another backbone, device, weights or norm): only dtype was checked. Each is
    refused by name now; those that agree with the pipeline, or are left out, are taken."""
    pipe = loftup.load_pipeline(upsampler, device="cpu", backbone_size=112)
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    want = loftup.upsample(image, model=pipe, size=32)
    contradicting = [
        ({"backbone_size": 448}, "backbone_size=448"),
        ({"backbone_size": 224}, "backbone_size=224"),  # the default's value, said aloud
        ({"backbone_size": None}, "backbone_size=None"),
        ({"backbone": "dinov2_vits14"}, "backbone='dinov2_vits14'"),
        ({"backbone": loftup.get_featurizer("dinov2_tiny")}, "backbone="),
        ({"backbone_weights": "/some/folder"}, "backbone_weights="),
        ({"backbone_norm": "own"}, "backbone_norm='own'"),
        ({"device": "cuda"}, "cuda"),  # here: no GPU; on a GPU machine: not the pipeline's
    ]
    for kw, named in contradicting:
        with pytest.raises(loftup.LoftUpError, match=re.escape(named)) as e:
            loftup.upsample(image, model=pipe, size=32, **kw)
        assert "\n" not in str(e.value)
    agreeing = {"backbone_size": 112, "backbone": "dinov2_tiny", "backbone_norm": "imagenet"}
    for kw in ({}, agreeing, {"backbone": pipe.featurizer, "device": "cpu", "dtype": "fp32"}):
        assert torch.equal(loftup.upsample(image, model=pipe, size=32, **kw), want)


def test_a_uint8_batch_reads_as_its_images_do(upsampler):
    """A uint8 (3, H, W) image was scaled to [0, 1], a uint8 (B, 3, H, W) batch was taken as
    pixel values 0..255: the features of a saturated, different image, without a word."""
    pipe = loftup.load_pipeline(upsampler, device="cpu")
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(2, 3, 40, 56, generator=g) * 255).to(torch.uint8)
    batch = loftup.upsample(pixels, model=pipe, size=32)
    one = loftup.upsample(pixels[1], model=pipe, size=32)
    torch.testing.assert_close(batch[1], one, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="uint8, uint16 or floating"):
        loftup.upsample(pixels.long(), model=pipe, size=32)


def test_images_that_are_not_pixels_in_0_1_are_refused_by_name(upsampler):
    """An ImageNet-normalised or 0-255 float image (what LoftUp itself and many loaders give)
    was normalised again and upsampled without a word: the features of another image. A NaN
    one failed on "lr_feats", an empty one with a ZeroDivisionError traceback."""
    from loftup.featurizers import imagenet_normalize

    pipe = loftup.load_pipeline(upsampler, device="cpu")
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    nan = image.clone()
    nan[0, 1, 3, 4] = float("nan")
    for bad in (imagenet_normalize(image), image * 255):
        with pytest.raises(loftup.LoftUpError, match=r"expected RGB values in \[0, 1\], got"):
            loftup.upsample(bad, model=pipe, size=32)
    inf = image.clone()
    inf[0, 0, :2, 0] = float("inf")
    for bad, count in ((nan, "1 NaN or infinite value:"), (inf, "2 NaN or infinite values:")):
        with pytest.raises(loftup.LoftUpError, match=f"the image has {count} pixels must be RGB"):
            loftup.upsample(bad, model=pipe, size=32)
    for empty in (image[:, :, :0], image[:0]):
        with pytest.raises(loftup.LoftUpError, match="with B, H, W >= 1, got"):
            pipe(empty, 32)
    # a resampling's overshoot is not refused: bicubic resizing leaves [0, 1] a little
    edge = torch.zeros(1, 3, 20, 28)
    edge[..., 14:] = 1
    resized = torch.nn.functional.interpolate(edge, (40, 56), mode="bicubic")
    assert resized.min() < -0.05 and resized.max() > 1.05
    assert loftup.upsample(resized, model=pipe, size=32).shape == (1, 32, 32, 45)


def test_a_model_that_is_no_model_is_named():
    """model=3 or model=None was os.fspath's TypeError (expected str, bytes or os.PathLike
    object, not int), which says nothing of what model may be."""
    image = torch.rand(3, 40, 56)
    for bad in (3, None, 2.5, ["loftup_dinov2s"]):
        for call, kw in (
            (loftup.upsample, {"image_or_path": image, "model": bad}),
            (loftup.load_pipeline, {"model": bad, "device": "cpu"}),
            (loftup.load_upsampler, {"source": bad}),
        ):
            with pytest.raises(loftup.LoftUpError, match=r"name \(e\.g\. loftup_dinov2s\)") as e:
                call(**kw)
            assert f"got {bad!r}" in str(e.value) and "\n" not in str(e.value)


def test_a_size_that_is_no_size_is_named_not_misread(upsampler):
    """size="32" was read as 3 x 2 (a string is a sequence), size=32.0 was a TypeError
    traceback ('float' object is not iterable)."""
    pipe = loftup.load_pipeline(upsampler, device="cpu")
    image = torch.rand(3, 40, 56)
    for bad in ("32", 32.0, (32, 32, 3), (32, 0), True, (32.5, 40)):
        with pytest.raises(loftup.LoftUpError, match=r"shorter side N >= 1\) or \(H, W\)"):
            loftup.upsample(image, model=pipe, size=bad)
    assert loftup.upsample(image, model=pipe, size=np.int64(20)).shape == (32, 20, 28)
    assert loftup.upsample(image, model=pipe, size=[24, 30]).shape == (32, 24, 30)


def test_unrecorded_backbone_and_missing_weights_are_one_line(
    upsampler, photos, tmp_path, capsys, monkeypatch
):
    from huggingface_hub import constants
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"  # a weights file knows nothing of its backbone (in
    # the paper's layout, of its 4 heads: one in loftup's warns that its heads are not known)
    save_file(native_to_reference(loftup.load_upsampler(upsampler).state_dict()), bare)
    args = [
        "upsample",
        str(photos / "coffee.jpg"),
        "-m",
        str(bare),
        "-o",
        str(tmp_path / "o"),
        "--size",
        "16",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--backbone" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--backbone", "dinov2_tiny"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main([*args, "--backbone", "dinov2_vits14"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "facebook/dinov2-small" in err and "--backbone-weights" in err


def test_size_argument_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["upsample", "x.png", "-o", "out", "--size", "0x5"])
    assert "expected N or HxW" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upsample", "x.png", "-o", "out", "--dtype", "fp8"])
    assert "choose one of float32, bfloat16, float16" in capsys.readouterr().err


def _nan_image() -> torch.Tensor:
    image = torch.rand(3, 32, 32)
    image[1, 3, 4] = float("nan")
    return image


@pytest.mark.parametrize(
    "image, size, said",
    [
        (_nan_image(), None, "the image has 1 NaN or infinite value"),
        (torch.rand(3, 32, 32) * 255, None, r"expected RGB values in \[0, 1\]"),
        (torch.rand(2, 32, 32, 3), None, r"it is channels last: images.permute\(0, 3, 1, 2\)"),
        (torch.rand(3, 32, 32), (70000, 70000), "asks for 70000x70000 features"),
        (torch.rand(3, 1, 4000), None, r"patches of 14 \(at most 65536\)"),  # the backbone's
    ],
)
def test_a_refused_image_leaves_the_modules_passed_in_as_they_were(upsampler, image, size, said):
    """upsample(bad_image, model=a LoftUp, dtype="float16") converted the caller's LoftUp (and
    a backbone module passed with it) to float16 in place, and put it in eval mode, before the
    image was refused: its float32 weights lost to the rounding by a call that did nothing."""
    torch.manual_seed(0)
    up = loftup.LoftUp(dim=32).train()
    backbone = loftup.get_featurizer("dinov2_tiny")  # (a backbone stays in eval mode)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (up, backbone)]
    calls = [
        {"model": up, "backbone": "dinov2_tiny"},
        {"model": up, "backbone": backbone},
        {"model": upsampler, "backbone": backbone},  # a folder's, cached: the backbone passed
    ]
    for kw in calls:
        with pytest.raises(loftup.LoftUpError, match=said):
            loftup.upsample(image, size=size, dtype="float16", **kw)
        for module, state in zip((up, backbone), before):
            now = module.state_dict()
            assert all(now[k].dtype == v.dtype and torch.equal(now[k], v) for k, v in state.items())
        assert up.training, kw  # not put in eval mode either
