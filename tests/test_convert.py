"""Building a LoftUp from a state dict (loftup.convert): what a file that does not fit is told."""

from __future__ import annotations

import pytest
import torch

from loftup import CheckpointError, LoftUp, LoftUpConfig
from loftup.convert import (
    NOT_LOFTUP_FIX,
    build_from_state,
    in_own_layout,
    native_to_reference,
    to_native,
)


@pytest.fixture(scope="module")
def hub_layout() -> dict:
    return native_to_reference(LoftUp(dim=8, num_heads=2, n_freqs=2).state_dict())


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda s: s.pop("upsampler.final_conv.0.bias"),
            r"missing weight 'head\.conv\.bias' of shape \(8,\) \('upsampler\.final_conv\.0\.bias' "
            r"in the paper's layout\), so the file holds part of a LoftUp",
        ),
        (
            lambda s: s.update({"upsampler.first_conv.1.bias": torch.zeros(3)}),
            r"weight 'stem\.conv1\.bias' \('upsampler\.first_conv\.1\.bias' in the paper's "
            r"layout\) has shape \(3,\), expected \(28,\) for C=8",
        ),
    ],
    ids=["missing", "shape"],
)
def test_a_weight_that_does_not_fit_is_named_as_the_file_has_it_with_the_fix(
    hub_layout, change, words
):
    """A hub-layout file missing a weight, or with one of another shape, was told the weight's
    name in loftup's layout alone ('head.conv.bias'), which the file does not hold, and
    nothing to do; now both names, and the fix."""
    state = dict(hub_layout)
    change(state)
    native, config = to_native(state, "w.bin")
    with pytest.raises(CheckpointError, match=rf"^w\.bin: {words}; save it again, or pass ") as e:
        build_from_state(native, config, "w.bin")
    assert str(e.value).endswith(NOT_LOFTUP_FIX) and "\n" not in str(e.value)


def test_a_weight_of_no_layer_and_no_dict_are_told_the_fix(hub_layout):
    native, _ = to_native(hub_layout, "w.bin")
    config = LoftUpConfig(dim=8, num_heads=2, n_freqs=2)  # as a saved config records it
    with pytest.raises(CheckpointError, match=r"'blocks\.2\.norm_q\.weight' \('upsampler\.ca_"):
        build_from_state({**native, "blocks.2.norm_q.weight": torch.ones(28)}, config, "w.bin")
    with pytest.raises(CheckpointError, match=rf"got list; {NOT_LOFTUP_FIX}$"):
        to_native([1, 2], "w.bin")
    with pytest.raises(CheckpointError, match=r"'extra' fits no layer .*; save it again, or "):
        build_from_state({**native, "extra": torch.ones(1)}, None, "w.bin")


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
@pytest.mark.parametrize("layout", ["native", "hub", "training"])
def test_a_compiled_or_ddp_modules_state_dict_loads(tmp_path, prefix, layout):
    """torch.compile's module names each weight _orig_mod.*, DDP's module.*: a state dict
    saved from either was "no weight 'channel_norm.weight', so this is not a LoftUp
    checkpoint" (save_pretrained unwraps both, a torch.save of the state dict did not)."""
    from loftup import load_upsampler

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    state = native_to_reference(state) if layout == "hub" else state
    wrapped = {prefix + k: v for k, v in state.items()}
    torch.save({"model": wrapped} if layout == "training" else wrapped, tmp_path / "w.pt")
    got = load_upsampler(tmp_path / "w.pt", num_heads=2)
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(got(lr, image), model(lr, image))


def test_a_hub_layout_state_dict_wrapped_as_a_training_checkpoint_loads(hub_layout):
    """{"state_dict": <hub layout>} was refused as "training checkpoint has no channel norm
    (expected keys 'model.1.norm.weight/bias')", channelnorm.norm.* there but dropped; a
    training checkpoint with neither form is told both names, and two forms that differ
    (which one trained it?) are refused, not one taken without a word."""
    native, _ = to_native({"state_dict": hub_layout}, "w.pt")
    plain = to_native(hub_layout, "w.bin")[0]
    assert native.keys() == plain.keys() and all(native[k] is plain[k] for k in plain)
    # under the other holders too (PyTorch's tutorial's key): it was taken for loftup's layout
    # and told "no weight 'channel_norm.weight'"; the paper's 4 heads, so no heads warning
    for key in ("model_state_dict", "model"):
        held, _ = to_native({key: hub_layout, "epoch": 1}, "w.pt")
        assert held.keys() == plain.keys() and all(held[k] is plain[k] for k in plain)
        assert not in_own_layout({key: hub_layout, "epoch": 1})
    bare = {k: v for k, v in hub_layout.items() if not k.startswith("channelnorm.")}
    with pytest.raises(CheckpointError, match=r"'model\.1\.norm\.weight/bias' in the training "):
        to_native({"state_dict": bare}, "w.pt")
    with pytest.raises(CheckpointError, match=r"'channelnorm\.norm\.weight/bias' in the hub "):
        to_native({"state_dict": bare}, "w.pt")
    both = {**hub_layout, "model.1.norm.weight": hub_layout["channelnorm.norm.weight"] + 1}
    with pytest.raises(CheckpointError, match=r"is there twice, as 'model\.1\.norm\.weight' and"):
        to_native({"state_dict": both}, "w.pt")
    both["model.1.norm.weight"] = hub_layout["channelnorm.norm.weight"].clone()  # the same: one
    assert torch.equal(
        to_native({"state_dict": both}, "w.pt")[0]["channel_norm.weight"],
        native["channel_norm.weight"],
    )


def _first_block_cut(state: dict, depth_1: bool = False) -> None:
    """The first block's FFN cut to take tokens 24 wide; ``depth_1``: the second block gone."""
    fc1 = "upsampler.ca_transformer.layers.0.1.net.1.weight"
    state[fc1] = state[fc1][:, :24].clone()
    for key in [k for k in state if depth_1 and ".ca_transformer.layers.1." in k]:
        del state[key]


@pytest.mark.parametrize(
    "change, words",
    [
        (
            lambda s: s.pop("channelnorm.norm.weight"),
            r"missing weight 'channel_norm\.weight' \('channelnorm\.norm\.weight' in the "
            r"paper's layout\), so the file holds part of a LoftUp",
        ),
        (
            lambda s: s.update({"upsampler.lr_pe.biases": torch.zeros(2, 5, 2)}),
            r"weight 'grid_encoder\.phases' \('upsampler\.lr_pe\.biases' in the paper's "
            r"layout\) has shape \(2, 5, 2\), expected \(2, 2, grid_freqs\)",
        ),
        (
            lambda s: s.update({"upsampler.lr_pe.biases": torch.zeros(4, 5)}),
            r"weight 'grid_encoder\.phases' \('upsampler\.lr_pe\.biases' in the paper's "
            r"layout\) has shape \(4, 5\), expected \(2, 2, grid_freqs\)",
        ),
        (
            lambda s: s.update(
                {f"channelnorm.norm.{p}": torch.ones(16) for p in ("weight", "bias")}
            ),
            r"weight 'channel_norm\.weight' \('channelnorm\.norm\.weight' in the paper's layout\) "
            r"says C=16, the blocks' token width says C=8 \(28 = C \+ 4 x 5\), as does the head's "
            r"'head\.conv\.weight' \('upsampler\.final_conv\.0\.weight' in the paper's layout\): "
            r"the channel norm is another upsampler's \(the file mixes two upsamplers' weights\)",
        ),
        (
            lambda s: s.update(
                {"upsampler.lr_pe.biases": s["upsampler.lr_pe.biases"][..., :4].clone()}
            ),
            r"weight 'grid_encoder\.phases' \('upsampler\.lr_pe\.biases' in the paper's layout\) "
            r"holds 4 grid frequencies, where the channel norm and the head \(C=8\) and the "
            r"blocks' token width \(28 = C \+ 4 x grid_freqs\) say 5: the grid phases are damaged",
        ),
        (
            lambda s: s.update(
                {
                    **{f"channelnorm.norm.{p}": torch.ones(16) for p in ("weight", "bias")},
                    "upsampler.final_conv.0.weight": torch.ones(12, 28, 1, 1),
                }
            ),
            r"weight 'channel_norm\.weight' \(.*\) says C=16, the blocks' token width says C=8 "
            r"\(28 = C \+ 4 x 5\), the head's "
            r"'head\.conv\.weight' \(.*\) C=12: the file mixes upsamplers' weights",
        ),
        (
            _first_block_cut,
            r"weight 'blocks\.0\.ffn\.fc1\.weight' \(.*\) takes tokens 24 wide, where the channel "
            r"norm and the head \(C=8\), the grid phases \(5 frequencies\) and the head's and the "
            r"next block's inputs say 28 \(C \+ 4 x grid_freqs\): that weight is damaged",
        ),
        (
            lambda s: s.update({"channelnorm.norm.weight": torch.ones(12)}),
            r"weight 'channel_norm\.weight' \(.*\) holds 12 channels, where its bias, the head's "
            r"'head\.conv\.weight' \(.*\) and the blocks' token width \(28 = C \+ 4 x 5\) say "
            r"C=8: that weight is damaged",
        ),
        (
            lambda s: _first_block_cut(s, depth_1=True),
            r"weight 'blocks\.0\.ffn\.fc1\.weight' \(.*\) takes tokens 24 wide, where the channel "
            r"norm and the head \(C=8\), the grid phases \(5 frequencies\) and the head's input "
            r"say 28 \(C \+ 4 x grid_freqs\): that weight is damaged",
        ),
        (
            lambda s: s.update(
                {"upsampler.fourier_feat.1.biases": s["upsampler.fourier_feat.1.biases"][..., :1]}
            ),
            r"weight 'image_encoder\.phases' \(.*\) holds 1 image frequencies, where the stem's "
            r"norm and first conv take 23 channels \(3 \+ 2 x 5 x n_freqs\) and so say 2: the "
            r"image phases are damaged",
        ),
    ],
    ids=[
        "no-channel-norm",
        "grid-phases-transposed",
        "grid-phases-2d",
        "channel-norm-width",
        "grid-freqs",
        "no-two-agree",
        "first-block-width",
        "channel-norm-weight-alone",
        "first-block-width-depth-1",
        "image-phases",
    ],
)
def test_a_weight_the_config_is_read_from_is_named_as_the_file_has_it(hub_layout, change, words):
    """A hub-layout file missing only channelnorm.norm.weight was "not a LoftUp checkpoint",
    under loftup's name alone; grid phases of shape (2, 5, 2) (transposed) were told
    "expected (2, 2, 2)", a shape read from the wrong axis, as the fix; a channel norm of
    another width had the stem's first weight blamed, "expected (404, ...) for C=768". Now the
    weight is named in both layouts, with the shape the paper's code stores; where widths
    disagree, the head's C decides which weight is odd (grid phases cut to 4 frequencies were
    said as a channel norm of C=388 from another upsampler). A channel norm's weight cut alone
    (its bias of the head's C) was "another upsampler's"; a model of depth 1 cited "the next
    block's inputs"; image phases cut to 3 frequencies had the stem's norm blamed."""
    state = dict(hub_layout)
    change(state)
    native, _ = to_native(state, "w.bin")
    with pytest.raises(CheckpointError, match=rf"^w\.bin: {words}; save it again, or pass "):
        build_from_state(native, None, "w.bin")
    with pytest.raises(CheckpointError, match=r"no weight 'channel_norm\.weight' \('channelnorm"):
        build_from_state({"encoder.weight": torch.ones(2)}, None, "w.bin")  # none: not LoftUp's


@pytest.mark.parametrize("prefix", ["", "module.", "model.", "upsampler."])
def test_loftups_own_state_dict_wrapped_as_a_training_checkpoint_loads(tmp_path, prefix):
    """torch.save({"state_dict": model.state_dict()}) of a LoftUp was refused as "training
    checkpoint has no channel norm (expected 'model.1.norm...' or 'channelnorm.norm...')",
    its channel_norm.* there: it loads, and computes what the unwrapped file does; so does a
    LightningModule's, holding the LoftUp as self.model or self.upsampler (refused so too).
    One with a weight missing is told that weight, not a missing channel norm."""
    from loftup import load_upsampler

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    plain = load_upsampler(tmp_path / "plain.pt", num_heads=2)
    wrapped = load_upsampler(tmp_path / "wrapped.pt", num_heads=2)
    assert wrapped.config == plain.config
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(wrapped(lr, image), plain(lr, image))
        assert torch.equal(wrapped(lr, image), model(lr, image))
    del state[prefix + "head.conv.bias"]
    torch.save({"state_dict": state}, tmp_path / "part.pt")
    with pytest.raises(CheckpointError, match=r"missing weight 'head\.conv\.bias'") as e:
        load_upsampler(tmp_path / "part.pt", num_heads=2)
    assert "channel norm" not in str(e.value)


@pytest.mark.parametrize("holder", ["bare", "state_dict", "model_state_dict"])
def test_a_key_that_is_no_name_beside_a_loftup_under_a_modules_name_is_left_out(holder):
    """A number among the keys beside a LoftUp's weights under a module's name (upsampler.*)
    was an AttributeError traceback ('int' object has no attribute 'startswith'): it is left
    out, as the other modules' weights are, and the LoftUp loads; a file of such keys and no
    LoftUp is a CheckpointError, as before."""
    model = LoftUp(dim=8, num_heads=2, n_freqs=2)
    held = {**{"upsampler." + k: v for k, v in model.state_dict().items()}, 7: torch.zeros(1)}
    state, _ = to_native(held if holder == "bare" else {holder: held}, "w.ckpt")
    assert state.keys() == model.state_dict().keys()
    build_from_state(state, LoftUpConfig(dim=8, num_heads=2, n_freqs=2), "w.ckpt")
    for other in ({7: torch.zeros(1), "w": torch.zeros(1)}, {"backbone.w": torch.zeros(1), 7: 1}):
        with pytest.raises(CheckpointError, match="^w.ckpt: "):
            to_native(other if holder == "bare" else {holder: other}, "w.ckpt")


def test_the_papers_layout_under_loftup_trains_model_is_read_with_its_model_config(tmp_path):
    """The paper's hub layout under loftup train's "model" beside its "model_config" (2 heads)
    was read with the paper's 4, silently, its record dropped (before it was read as the
    paper's layout there, it was refused): the record decides the heads, as it does for
    loftup's own layout there, and the model computes what it was saved from."""
    from loftup import load_upsampler

    torch.manual_seed(0)
    model = LoftUp(dim=16, num_heads=2, n_freqs=4, depth=1).eval()
    ckpt = {
        "model": native_to_reference(model.state_dict()),
        "model_config": model.config.to_dict(),
    }
    torch.save(ckpt, tmp_path / "run.pt")
    got = load_upsampler(tmp_path / "run.pt")
    assert got.config == model.config
    lr, image = torch.randn(1, 16, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(got(lr, image), model(lr, image))
