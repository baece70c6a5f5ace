"""What a forward's inputs are told when they are wrong (src/loftup/input_checks.py): the error
names the input at fault and the fix for that input."""

from __future__ import annotations

import pytest
import torch

import loftup
from loftup import LoftUp
from loftup.errors import UsageError
from loftup.input_checks import ForwardInputError


@pytest.fixture(scope="module")
def model():
    return LoftUp(dim=32, depth=1, num_heads=4).eval()


def test_a_nan_pixel_is_blamed_on_the_image_not_on_the_backbone(model):
    """One NaN pixel makes every backbone feature of the image NaN; both inputs were checked,
    features first, so the error blamed the backbone and told the user to change its
    precision, never naming the image."""
    image = torch.randn(1, 3, 28, 28)
    image[0, 0, 3, 3] = float("nan")
    lr = torch.full((1, 32, 2, 2), float("nan"))  # what dinov2_tiny gives for that image
    with pytest.raises(ForwardInputError) as told:
        model(lr, image)
    assert str(told.value).startswith("image contains NaN or Inf values; check how it was read")
    with pytest.raises(ForwardInputError, match="^lr_feats contains NaN or Inf values; check"):
        model(lr, image.nan_to_num())  # a finite image: the features are at fault


def test_wrong_channels_say_channels_last_or_swapped_inputs_with_the_fix(model):
    """Features channels last (B, h, w, C), or the inputs the other way round, were told to
    "use the upsampler trained for your backbone": a fix that does not fix them. Each is said,
    with its fix; features of another width still hear of the upsampler for them."""
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 16, 16)
    told = {
        "channels last": (lr.permute(0, 2, 3, 1), image),
        "swapped": (image, lr),
        "image channels last": (lr, image.permute(0, 2, 3, 1)),
        "other width": (torch.randn(1, 64, 4, 4), image),
    }
    for case, args in told.items():
        with pytest.raises(ForwardInputError) as e:
            model(*args)
        told[case] = str(e.value)
    assert told["channels last"] == (
        "lr_feats has 4 channels but this upsampler expects C=32; they are channels last, "
        "(1, 4, 4, 32): lr_feats.permute(0, 3, 1, 2)"
    )
    assert told["swapped"] == (
        "lr_feats has 3 channels but this upsampler expects C=32, and image has 32: the two "
        "are swapped; pass the features first, then the image: model(lr_feats, image)"
    )
    assert told["image channels last"] == (
        "image must have 3 channels (RGB), got 16; it is channels last, (1, 16, 16, 3): "
        "image.permute(0, 3, 1, 2)"
    )
    assert told["other width"].endswith("expects C=32; use the upsampler trained for your backbone")


def test_what_is_not_a_loftup_is_named_by_each_function_that_takes_one(model, tmp_path):
    """A released name, a pipeline or another module given to the functions that take a LoftUp
    was an AttributeError from inside them ('str' object has no attribute 'head'); each says
    now what it takes, what it got and how to get a LoftUp from that."""
    lr, image = torch.randn(1, 32, 2, 2), torch.randn(1, 3, 10, 10)
    pipeline = loftup.load_pipeline(model, backbone="dinov2_tiny", device="cpu")
    takers = {
        "start_upsample": lambda m: loftup.start_upsample(m, image),
        "graph_upsampler": lambda m: loftup.graph_upsampler(m, lr, image),
        "upsample_to_npy": lambda m: loftup.upsample_to_npy(m, lr, image, tmp_path / "x.npy"),
        "upsample_frames": lambda m: list(loftup.upsample_frames(m, [(lr[0], image[0])])),
        "compile_upsampler": lambda m: loftup.compile_upsampler(m),
    }
    given = [
        (
            "loftup_dinov2s",
            r"got the name or path 'loftup_dinov2s': load it first, model = "
            r"loftup\.load_upsampler\('loftup_dinov2s'\)$",
        ),
        (
            pipeline,
            r"\(loftup\.load_upsampler\(name\)\), got a FeaturePipeline \(for a pipeline "
            r"pass its upsampler: pipeline\.upsampler\)$",
        ),
        (torch.nn.Linear(2, 2), r"\(loftup\.load_upsampler\(name\)\), got Linear\(\.\.\.\)$"),
    ]
    for who, call in takers.items():
        for bad, named in given:
            with pytest.raises(UsageError, match=f"^{who} takes a LoftUp.*{named}"):
                call(bad)
    assert not list(tmp_path.iterdir())  # no file begun
