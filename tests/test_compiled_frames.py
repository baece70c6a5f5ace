"""loftup.compiled's frames in batches (upsample_frames) on the CPU: each frame's features are
the model's for the frame alone, and what cannot be run is named before any batch."""

from __future__ import annotations

import pytest
import torch

from loftup import LoftUp
from loftup.compiled import upsample_frames
from model_helpers import perturb
from test_compiled import _inputs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    """test_compiled.py's model, for its inputs (``_inputs``: 16-d features)."""
    torch.manual_seed(0)
    return perturb(LoftUp(dim=16, num_heads=2, n_freqs=4))


def test_frames_in_batches_equal_each_frame_alone(small):
    """Five frames in batches of two (the last batch holds one): each frame's features are
    those of the frame upsampled alone, in order."""
    lr, frames = _inputs(batch=5, seed=4)
    out = list(upsample_frames(small, zip(lr, frames), batch_size=2))
    assert len(out) == 5
    with torch.inference_mode():
        for i, got in enumerate(out):
            want = small(lr[i : i + 1], frames[i : i + 1])[0]
            assert got.shape == (16, 30, 26)
            assert (got - want).abs().max().item() <= 1e-5
    # a sequence that changes size part-way (frames 2 and 3 half-size) starts new batches
    small_frames = torch.nn.functional.interpolate(frames, scale_factor=0.5, mode="bilinear")
    mixed = [frames[0], frames[1], small_frames[2], small_frames[3], frames[4]]
    out = list(upsample_frames(small, zip(lr, mixed), batch_size=4))
    with torch.inference_mode():
        for i, got in enumerate(out):
            want = small(lr[i : i + 1], mixed[i][None])[0]
            assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"batch_size": 0}, r"batch_size must be a whole number >= 1, got 0$"),
        ({"batch_size": 2.5}, r"batch_size must be a whole number >= 1, got 2\.5$"),
        ({"callback": print}, r"takes no callback=; for tiles of one batch call loftup\.tiling"),
        ({"out": torch.empty(1)}, r"takes no out=; "),
    ],
)
def test_frames_settings_that_cannot_be_used_are_named(small, kwargs, words):
    """batch_size 0 or 2.5 held every frame of the sequence in one batch (its memory, and no
    feature until the end), a callback= made the first batch fail with "'NoneType' object has
    no attribute 'unbind'" after computing it, an out= wrote every batch into one tensor."""
    from loftup import LoftUpError

    lr, frames = _inputs(batch=3)
    with pytest.raises(LoftUpError, match=words):
        next(upsample_frames(small, zip(lr, frames), **kwargs))


def test_frames_are_checked_as_the_models_inputs(small):
    """upsample_frames ran unchecked: a grayscale frame gave features without a word, wrong
    channels or a batched pair failed inside a layer, and a model in training mode gave
    eval-mode features; each is now named in one line, with the fix."""
    from loftup import LoftUpError

    lr, frames = _inputs(batch=2)
    bad = {
        "image must have 3 channels": [(lr[0], frames[0, :1])],
        "lr_feats has 15 channels but this upsampler expects C=16": [(lr[0, 1:], frames[0])],
        r"lr_feats is on meta, the upsampler on cpu; move": [(lr[0].to("meta"), frames[0])],
        r"takes pairs \(lr_feats \(C, h, w\), frame \(3, H, W\)\) of one frame each, got "
        r"\(1, 16, 5, 5\) and \(1, 3, 30, 26\); for a batch": [(lr[:1], frames[:1])],
        # not pairs: frames alone, or triples, were "too many values to unpack (expected 2)"
        r"takes pairs .*, got a tensor \(3, 30, 26\); pass zip\(lr_feats, frames\)": frames,
        r"takes pairs .*, got 3 items; pass zip": zip(lr, frames, "ab"),
    }
    for words, pairs in bad.items():
        with pytest.raises(LoftUpError, match=words):
            list(upsample_frames(small, pairs))
    small.train()
    try:
        with pytest.raises(LoftUpError, match=r"training mode .*; call model.eval\(\) first$"):
            list(upsample_frames(small, zip(lr, frames)))
    finally:
        small.eval()
    assert len(list(upsample_frames(small, zip(lr, frames)))) == 2
