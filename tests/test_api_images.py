"""The images and sizes a FeaturePipeline (and loftup.upsample) takes, what it gives for those
of extreme shape, and how it names those it refuses: channels last, empty, non-pixel, too
elongated or too large, before any work."""

from __future__ import annotations

import pytest
import torch

import loftup
from model_helpers import ROWS_ROUND_BY_COUNT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on shared cores


def test_a_channels_last_batch_is_told_the_permute_that_makes_it_one():
    """A (B, H, W, 3) batch (a NumPy stack made a tensor) got "expected (B, 3, H, W)" with no
    fix as floats, and as uint8 an error about its first image alone; both now name the fix."""
    from loftup.errors import UsageError

    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
    floats = torch.rand(2, 20, 30, 3)
    fix = "got (2, 20, 30, 3); it is channels last: images.permute(0, 3, 1, 2)"
    for images in (floats, (floats * 255).to(torch.uint8)):
        for call, kwargs in ((loftup.upsample, {"model": pipeline}), (pipeline, {})):
            with pytest.raises(UsageError) as told:
                call(images, **kwargs)
            assert str(told.value).endswith(fix) and "\n" not in str(told.value)
    # the fix is right: the batch as permuted runs
    assert pipeline(floats.permute(0, 3, 1, 2))[1].shape == (2, 32, 20, 30)
    with pytest.raises(UsageError, match=r"got \(2, 4, 20, 30\); RGBA: composite it over a "
                       r"background, or drop the alpha: images\[:, :3\]$"):  # fmt: skip
        pipeline(torch.rand(2, 4, 20, 30))  # no channels-last hint: the alpha's


def test_a_pipeline_reads_uint8_images_as_its_error_advises():
    """A pipeline called on uint8 images refused them as 0-255 values, advising to pass them
    "as uint8"; it reads them as upsample does, and says the same as for their [0, 1] floats."""
    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
    pixels = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
    lr_feats, hr_feats = pipeline(pixels)
    expected_lr, expected_hr = pipeline(pixels.float() / 255)
    assert torch.equal(hr_feats, expected_hr) and torch.equal(lr_feats, expected_lr)


@pytest.fixture(scope="module")
def tiny_pipeline():
    torch.manual_seed(0)
    return loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")


@pytest.mark.parametrize(
    "hw, size, out_hw",
    [
        ((2, 2), None, (2, 2)),  # smaller than one patch: resized up for the backbone
        ((13, 13), None, (13, 13)),
        ((30, 40), (1, 40), (1, 40)),  # a 1-pixel-high output
        ((30, 40), (30, 1), (30, 1)),
        ((30, 40), 1, (1, 1)),
        ((30, 40), (1, 1000), (1, 1000)),
        ((10, 70), 2, (2, 14)),
    ],
)
def test_images_and_sizes_of_extreme_shape_give_their_features(tiny_pipeline, hw, size, out_hw):
    """Tiny images, one-pixel-wide and very elongated outputs: features of the size asked,
    finite, and those of the upsampler run on the same inputs by hand."""
    from loftup.featurizers import imagenet_normalize
    from loftup.featurizers.sizes import backbone_input_size, resize_images

    image = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    lr_feats, hr_feats = tiny_pipeline(image, size)
    assert hr_feats.shape == (1, 32, *out_hw) and torch.isfinite(hr_feats).all()
    bb_hw = backbone_input_size(*hw, 14, 224)
    expected_lr = tiny_pipeline.featurizer(imagenet_normalize(resize_images(image, bb_hw)))
    assert torch.equal(lr_feats, expected_lr)
    guide = imagenet_normalize(resize_images(image, out_hw))
    with torch.no_grad():
        expected = tiny_pipeline.upsampler(expected_lr, guide)
    torch.testing.assert_close(hr_feats, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "hw, size, backbone_size, words",
    [
        ((1, 4000), None, 224, "image is 1x4000 px: at backbone_size 224 the backbone would see "
         r"it at 224x896000 px, 1024000 patches of 14 \(at most 65536\); crop it"),
        ((4000, 1), 1, 224, "image is 4000x1 px: at backbone_size 224 .* 896000x224 px"),
        ((30, 40), None, 5000, "at backbone_size 5000 .* 4998x6664 px, 169932 patches .*; "
         "crop it to a less elongated shape "
         r"or pass a smaller backbone_size \(None: the image's own size\)$"),
        ((30, 40), 70000, 224, r"^size 70000 asks for 70000x93333 features of a 30x40 image, "
         r"over 65536 x 65536 px; pass a smaller size \(or None: the image's own\)$"),
        ((30, 40), (70000, 70000), 224, r"^size \(70000, 70000\) asks for 70000x70000 features"),
        ((3, 4000), 10000, None, "size 10000 asks for 10000x13333333 features of a 3x4000 image"),
        ((30, 40), 10**400, 224, r"^size int\(\.\.\.\) is too large for any output; pass a "
         "smaller size$"),  # not an OverflowError from the scaling's float
    ],
)  # fmt: skip
def test_sizes_that_would_not_end_are_refused_before_any_work(hw, size, backbone_size, words):
    """A 1x4000 image at backbone_size 224 was resized to 224x896000 for the backbone (a
    million patches: it ran for hours or ran out of memory), a size of 70000 asked for
    terabytes that only torch's allocator refused, deep inside it. Each is one line naming
    the sizes and the fix, raised before the image is even moved to the device."""
    from loftup.checks import ImageSizeError  # a UsageError a run over many images can skip

    torch.manual_seed(0)
    pipeline = loftup.load_pipeline(
        loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=backbone_size
    )
    with pytest.raises(ImageSizeError, match=words) as told:
        pipeline(torch.rand(1, 3, *hw), size)
    assert "\n" not in str(told.value)


def test_a_backbone_size_no_image_could_be_given_is_refused_where_it_is_passed():
    """backbone_size=10**6 was taken, and refused (or overflowed a float) only when the first
    image came; load_pipeline and upsample name it with its range."""
    from loftup.errors import UsageError

    words = r"^backbone_size is the shorter side .* \(1 to 65536; .*\), got 1000000$"
    with pytest.raises(UsageError, match=words):
        loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=10**6)
    with pytest.raises(UsageError, match=words):
        loftup.upsample(torch.rand(3, 8, 8), model=loftup.LoftUp(dim=32), backbone_size=10**6)


def test_the_image_own_size_is_never_refused_for_its_shape(tiny_pipeline):
    """backbone_size=None (the image's own) and size=None (the image's own) take an elongated
    image as it is: the backbone sees 14x994 px (one row of 71 patches), the output its pixels."""
    pipeline = loftup.load_pipeline(
        tiny_pipeline.upsampler, backbone=tiny_pipeline.featurizer, backbone_size=None
    )
    lr_feats, hr_feats = pipeline(torch.rand(1, 3, 1, 1000))
    assert lr_feats.shape == (1, 32, 1, 71) and hr_feats.shape == (1, 32, 1, 1000)
    assert torch.isfinite(hr_feats).all()


@pytest.mark.parametrize(
    "images, words",
    [
        (torch.rand(0, 3, 30, 40), r"got \(0, 3, 30, 40\): an empty batch; pass at least one image$"),
        (torch.zeros(0, 3, 30, 40, dtype=torch.uint8), "an empty batch; pass at least one"),
        (torch.rand(1, 3, 0, 40), r"got \(1, 3, 0, 40\): an empty image; pass images at least 1 px"),
        (torch.rand(2, 0, 30, 40), r"got \(2, 0, 30, 40\)$"),
        (torch.ones(1, 3, 30, 40, dtype=torch.bool), r"expected uint8, uint16 or floating point "
         r"pixels, got bool; pass 0-255 values as uint8, 0-65535 ones as uint16, or floats in "
         r"\[0, 1\] \(image / 255\)$"),
        (torch.ones(1, 3, 30, 40, dtype=torch.int64), "got int64"),
    ],
)  # fmt: skip
def test_empty_and_non_pixel_batches_are_named(tiny_pipeline, images, words):
    """An empty batch or image said only "B, H, W >= 1"; a bool or 0/1 int64 batch was read as
    black and white pixels without a word (the pipeline reads uint8 and floats). The pipeline
    and upsample say it in the same words and error type (the pipeline's dtype refusal was a
    plain UsageError that left out "(image / 255)")."""
    from loftup.errors import UsageError

    raised = set()
    for call in (tiny_pipeline, lambda x: loftup.upsample(x, model=tiny_pipeline)):
        with pytest.raises(UsageError, match=words) as told:
            call(images)
        assert "\n" not in str(told.value)
        raised.add(type(told.value))
    assert len(raised) == 1, raised


def test_features_can_be_normalised_in_place_and_a_probe_trained_on_them(tiny_pipeline):
    """What a notebook does next with the features: they were inference tensors (the pipeline
    ran under torch.inference_mode), so ``feats /= norm`` and a linear probe's backward raised
    torch's RuntimeError about inference tensors, asking for a clone."""
    image = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    feats = loftup.upsample(image, model=tiny_pipeline, size=16)
    lr_feats, hr_feats = tiny_pipeline(image, 16)
    assert not any(t.is_inference() or t.requires_grad for t in (feats, lr_feats, hr_feats))
    expected = feats / feats.norm(dim=1, keepdim=True)
    feats /= feats.norm(dim=1, keepdim=True)
    assert torch.equal(feats, expected)
    probe = torch.nn.Linear(32, 3)
    probe(feats.permute(0, 2, 3, 1)).square().mean().backward()
    assert probe.weight.grad is not None and probe.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [None, (90, 70)], ids=["own size", "resized"])
def test_the_guidance_image_is_made_in_one_tensor_of_its_size(tiny_pipeline, size):
    """The guide was normalised out of place: two tensors of its size (three with a resize)
    for the one kept, 137 MB each for a 12-megapixel photo, at the peak of an output streamed
    tile by tile. Now one, and the features are the same, bit for bit."""
    from torch.profiler import ProfilerActivity, profile

    from loftup.featurizers import imagenet_normalize
    from loftup.featurizers.sizes import resize_images

    images = torch.rand(1, 3, 117, 97)
    out_hw = size or (117, 97)
    guide_bytes = 3 * out_hw[0] * out_hw[1] * 4
    tiny_pipeline.upsampler.tile_size = 32  # tiles' own tensors smaller than the guide
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            tiny_pipeline(images, size, callback=lambda tile, feats: None)
    finally:
        tiny_pipeline.upsampler.tile_size = None
    steps = ("aten::sub", "aten::div", "aten::_upsample_bilinear2d_aa")  # resize, normalise
    made = [e.name for e in prof.events() if e.cpu_memory_usage == guide_bytes]
    made = [name for name in made if name in steps]
    assert len(made) == 1, made
    lr, hr = tiny_pipeline(images, size)
    with torch.no_grad():
        expected = tiny_pipeline.upsampler(lr, imagenet_normalize(resize_images(images, out_hw)))
    assert torch.equal(hr, expected)


def test_a_pipeline_names_what_is_no_batch_tensor(tiny_pipeline):
    """A 16-bit batch was told to divide by 255 (it is now read as a 16-bit file is: / 65535);
    a NumPy batch (whose shape passed) failed with an AttributeError on .is_floating_point."""
    import numpy as np

    from loftup.errors import UsageError

    deep = torch.randint(0, 65536, (1, 3, 8, 8), dtype=torch.int32)
    got = tiny_pipeline(deep.to(torch.uint16))
    want = tiny_pipeline(deep.float() / 65535)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(UsageError, match=r"got an array of shape \(1, 3, 8, 8\); for a path, "
                       r"a PIL image or an array use loftup.upsample\(image, model=pipeline\)$"):  # fmt: skip
        tiny_pipeline(np.zeros((1, 3, 8, 8), np.float32))


def test_a_grayscale_float_batch_is_read_as_its_uint8_twin_and_its_images_are(tiny_pipeline):
    """upsample read a (B, 1, H, W) uint8 batch and a (1, H, W) float image as RGB, but refused
    a (B, 1, H, W) float batch; it is now read as each of its images."""
    from loftup.errors import UsageError

    gray = torch.rand(2, 1, 10, 15, generator=torch.Generator().manual_seed(2))
    batch = loftup.upsample(gray, model=tiny_pipeline)
    assert batch.shape == (2, 32, 10, 15)
    for one, feats in zip(gray, batch):
        alone = loftup.upsample(one, model=tiny_pipeline)
        if ROWS_ROUND_BY_COUNT:
            torch.testing.assert_close(feats, alone, rtol=0, atol=1e-5)
        else:
            assert torch.equal(feats, alone)
    # a pipeline takes RGB, and says how to make it
    fix = r"got \(2, 1, 10, 15\); grayscale: images.expand\(-1, 3, -1, -1\)$"
    with pytest.raises(UsageError, match=fix):
        tiny_pipeline(gray)
    assert torch.equal(tiny_pipeline(gray.expand(-1, 3, -1, -1))[1], batch)


def test_a_backbone_size_giving_no_more_patches_than_the_image_own_is_taken():
    """A 3600x4800 photo is 257x343 patches of 14 at its own size (None, taken as asked); at
    backbone_size 3600, the same size, it was refused as over MAX_BACKBONE_PATCHES, and so
    was a smaller backbone_size that still gave more than 65536 patches."""
    from loftup.checks import MAX_BACKBONE_PATCHES, backbone_input

    own = backbone_input(3600, 4800, 14, None)
    assert (own[0] // 14) * (own[1] // 14) > MAX_BACKBONE_PATCHES
    assert backbone_input(3600, 4800, 14, 3600) == own
    assert backbone_input(3600, 4800, 14, 3000) == (2996, 4004)  # 214x286 patches
