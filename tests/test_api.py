"""loftup.upsample and load_pipeline: what they check, once, and which weights they run."""

from __future__ import annotations

import os

import pytest
import torch

import loftup
import loftup.api
import loftup.pipeline
from model_helpers import ROWS_ROUND_BY_COUNT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on shared cores


def _save(folder, seed: int) -> None:
    """A random upsampler for the tiny backbone in ``folder``, its files and the folder all
    stamped with one time: as two writes within a coarse file system clock's tick."""
    torch.manual_seed(seed)
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    for path in (folder, *folder.iterdir()):
        os.utime(path, ns=(10**18, 10**18))


@pytest.fixture
def image():
    return torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(0))


def test_a_folder_written_again_is_run_with_its_new_weights(tmp_path, image):
    """upsample keeps the last pipeline for the next call: a folder that save_pretrained (or a
    training run) wrote again since, under the same path, gave the old weights' features."""
    folder = tmp_path / "up"
    _save(folder, 0)
    first = loftup.upsample(image, model=folder, backbone_size=28)
    _save(folder, 1)
    second = loftup.upsample(image, model=folder, backbone_size=28)
    fresh = loftup.upsample(image, model=loftup.load_pipeline(folder, backbone_size=28))
    assert not torch.equal(first, second)
    assert torch.equal(second, fresh)


def test_a_relative_path_is_the_folder_it_names_from_where_it_is_used(tmp_path, image, monkeypatch):
    """``upsample(img, "up")`` in two folders names two upsamplers, not the cached first one."""
    for name, seed in (("a", 0), ("b", 1)):
        _save(tmp_path / name / "up", seed)
    monkeypatch.chdir(tmp_path / "a")
    in_a = loftup.upsample(image, model="up", backbone_size=28)
    monkeypatch.chdir(tmp_path / "b")
    in_b = loftup.upsample(image, model="up", backbone_size=28)
    assert not torch.equal(in_a, in_b)
    expected = loftup.upsample(image, model=loftup.load_pipeline("up", backbone_size=28))
    assert torch.equal(in_b, expected)


def test_the_device_is_resolved_once_per_call(tmp_path, image, monkeypatch):
    """upsample and load_pipeline check the device once at their boundary; the loaders under
    them (the upsampler's, the backbone's) are given it resolved (it was asked up to 4 times)."""
    folder = tmp_path / "up"
    _save(folder, 0)
    calls = []
    real = loftup.api.resolve_device

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    from loftup.hub import loading

    # every name the callers look it up by (the featurizers' loader: loftup.checks, at the call)
    for module in (loftup.api, loftup.pipeline, loftup.checks, loading):
        monkeypatch.setattr(module, "resolve_device", counted)
    loftup.load_pipeline(folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]
    calls.clear()
    loftup.upsample(image, model=folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]


def test_a_model_of_the_wrong_kind_is_one_line_saying_where_it_goes(tmp_path, image):
    """A backbone, a pipeline, a tensor passed as ``model``: the error printed the object's
    repr, 30 to 60 lines of modules, and no word of where the thing passed belongs."""
    from loftup.errors import UsageError

    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
    cases = [
        (lambda: loftup.load_pipeline(pipeline.featurizer), "backbone=", "Dinov2Featurizer"),
        (lambda: loftup.upsample(image, model=pipeline.featurizer), "backbone=", "dinov2_tiny"),
        (lambda: loftup.load_pipeline(pipeline), "upsample(image, model=pipeline)", "pipeline"),
        (lambda: loftup.upsample(image, model=torch.zeros(8, 8)), "a LoftUp", "Tensor"),
        (lambda: loftup.load_pipeline(torch.nn.Linear(2, 2)), "a LoftUp", "Linear"),
    ]
    for call, fix, named in cases:
        with pytest.raises(UsageError) as told:
            call()
        message = str(told.value)
        assert "\n" not in message and len(message) < 300, message
        assert fix in message and named in message, message
    # a module or a tensor: what model may be, in the same words as load_upsampler's source
    kinds = (
        "a released upsampler's name (e.g. loftup_dinov2s), a weights file or folder, a hub id "
        "ORG/NAME"
    )
    with pytest.raises(UsageError, match=r"^model is .*, got a Tensor of shape \(8, 8\)$") as told:
        loftup.upsample(image, model=torch.zeros(8, 8))
    assert str(told.value).startswith(f"model is {kinds}, a LoftUp or a FeaturePipeline, got")
    with pytest.raises(UsageError) as told:
        loftup.load_pipeline(torch.nn.Linear(2, 2))
    assert str(told.value) == f"model is {kinds} or a LoftUp, got Linear(...)"


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
        (torch.ones(1, 3, 30, 40, dtype=torch.bool), "expected uint8, uint16 or floating point "
         "pixels, got bool; pass 0-255 values as uint8, 0-65535 ones as uint16"),
        (torch.ones(1, 3, 30, 40, dtype=torch.int64), "got int64"),
    ],
)  # fmt: skip
def test_empty_and_non_pixel_batches_are_named(tiny_pipeline, images, words):
    """An empty batch or image said only "B, H, W >= 1"; a bool or 0/1 int64 batch was read as
    black and white pixels without a word (the pipeline reads uint8 and floats)."""
    from loftup.errors import UsageError

    for call in (tiny_pipeline, lambda x: loftup.upsample(x, model=tiny_pipeline)):
        with pytest.raises(UsageError, match=words) as told:
            call(images)
        assert "\n" not in str(told.value)


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


@pytest.fixture
def mismatch_unwarned(monkeypatch):
    """No pairing warned about yet in this process (the warning is once per pairing)."""
    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())


@pytest.fixture
def own_backbones(monkeypatch):
    """Backbones of a user's own, registered for the test (save_pretrained records only a
    name the load can build): tiny_of_my_own (32-d) and my_64d_backbone."""
    import dataclasses

    from loftup.featurizers import FEATURIZERS

    tiny = FEATURIZERS["dinov2_tiny"]
    for name, dim in (("tiny_of_my_own", 32), ("my_64d_backbone", 64)):
        monkeypatch.setitem(FEATURIZERS, name, dataclasses.replace(tiny, name=name, dim=dim))


def test_an_upsampler_run_on_another_backbone_of_its_width_is_warned_about_once(
    tmp_path, image, mismatch_unwarned, own_backbones
):
    """An upsampler that records the backbone it was trained on, given another of the same
    width (loftup_siglip on siglip2_vitb16): only the width was checked, and the wrong features
    came out without a word. One warning naming both, and how to silence it when intended."""
    import warnings

    from loftup.pipeline import BackboneMismatchWarning

    folder = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="tiny_of_my_own")
    with pytest.warns(BackboneMismatchWarning) as told:
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
    assert len(told) == 1
    message = str(told[0].message)
    assert message.startswith(f"backbone mismatch: the upsampler {folder} was trained on ")
    assert "tiny_of_my_own's features, not dinov2_tiny's" in message and "\n" not in message
    with warnings.catch_warnings():  # once: neither a second pipeline nor upsample says it again
        warnings.simplefilter("error")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
        loftup.upsample(image, model=folder, backbone="dinov2_tiny", backbone_size=28)
    # the advice silences it, as the command line's PYTHONWARNINGS does
    loftup.mismatch._WARNED_MISMATCH.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "backbone mismatch")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")


def test_the_command_line_prints_the_backbone_mismatch_on_one_line(
    tmp_path, capsys, mismatch_unwarned, own_backbones
):
    from PIL import Image

    from loftup.cli import main

    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="tiny_of_my_own")
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "up"), "-o"]
    assert main([*args, str(tmp_path / "out"), "--backbone", "dinov2_tiny"]) == 0
    lines = capsys.readouterr().err.splitlines()
    told = [line for line in lines if "backbone mismatch" in line]
    assert len(told) == 1 and told[0].startswith("warning: backbone mismatch: "), lines
    assert "tiny_of_my_own" in told[0] and "dinov2_tiny" in told[0]


def test_no_backbone_warning_where_it_is_the_one_trained_on_or_unknown(
    tmp_path, mismatch_unwarned, own_backbones
):
    """The backbone the upsampler records, and any backbone for one that records none (a bare
    weights file, a LoftUp built in code), or a Featurizer of an unregistered name: no word."""
    import warnings

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    bare = tmp_path / "bare.safetensors"  # the weights alone, without save_pretrained's record
    save_file(load_file(folder / "model.safetensors"), bare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
        # (the bare file's heads are said read with the default 4: not a backbone's warning)
        warnings.filterwarnings("ignore", ".* without a record of its attention heads")
        pipeline = loftup.load_pipeline(bare, backbone="dinov2_tiny")
        assert pipeline.upsampler.backbone is None  # the case: nothing recorded
        loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
        own = pipeline.featurizer
        own.name = "my_module"
        trained = loftup.LoftUp(dim=32)
        trained.backbone = "dinov2_tiny"
        loftup.load_pipeline(trained, backbone=own)
    # a registered name of another backbone of its width, the same Featurizer: told
    own.name = "dinov2_tiny"
    trained.backbone = "tiny_of_my_own"
    with pytest.warns(UserWarning, match="^backbone mismatch: the upsampler was trained on "):
        loftup.load_pipeline(trained, backbone=own)


def test_a_backbone_of_another_width_names_the_one_trained_on(tmp_path, own_backbones):
    """The width error's fix, "pass the backbone it was trained with", names it when known."""
    folder = tmp_path / "up"
    loftup.LoftUp(dim=64).save_pretrained(folder, backbone="my_64d_backbone")
    with pytest.raises(loftup.LoftUpError) as told:
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
    assert str(told.value).endswith("pass the backbone it was trained with, my_64d_backbone")


def test_a_backbone_size_giving_no_more_patches_than_the_image_own_is_taken():
    """A 3600x4800 photo is 257x343 patches of 14 at its own size (None, taken as asked); at
    backbone_size 3600, the same size, it was refused as over MAX_BACKBONE_PATCHES, and so
    was a smaller backbone_size that still gave more than 65536 patches."""
    from loftup.checks import MAX_BACKBONE_PATCHES, backbone_input

    own = backbone_input(3600, 4800, 14, None)
    assert (own[0] // 14) * (own[1] // 14) > MAX_BACKBONE_PATCHES
    assert backbone_input(3600, 4800, 14, 3600) == own
    assert backbone_input(3600, 4800, 14, 3000) == (2996, 4004)  # 214x286 patches


@pytest.mark.slow  # a 224 x 224 x 384 output on one thread: about 16 s here
def test_readme_first_example_runs_offline_from_the_cache(tmp_path, monkeypatch, reference_dir):
    """The block a newcomer copies first (README, *Use*), verbatim: ``loftup_dinov2s`` found
    in the Hugging Face cache with HF_HUB_OFFLINE=1 (random weights in the released layout,
    the reference fixture's), then a forward of the shapes the block states."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache
    from processes import REPO
    from reference_files import REFERENCE_STATE

    text = (REPO / "README.md").read_text()
    code = text.split("\n## Use\n")[1].split("```python\n")[1].split("```")[0]
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    scope = {}
    exec(compile(code, "README.md (Use)", "exec"), scope)
    assert scope["model"].backbone == "dinov2_vits14" and not scope["model"].training
    assert scope["hr_feats"].shape == (1, 384, 224, 224)
    assert torch.isfinite(scope["hr_feats"]).all()
