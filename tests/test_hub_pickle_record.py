"""torch.save's weights (pytorch_model.bin, a training run's model.pt) in a folder beside
save_pretrained's config.json: read with that record only where it is theirs."""

from __future__ import annotations

import shutil

import pytest
import torch

from loftup import LoftUp, load_upsampler
from loftup.errors import CheckpointError


def two_saves(tmp_path):
    """Two saves of different upsamplers: a (2 heads) and b (4 heads)."""
    torch.manual_seed(0)
    a = LoftUp(dim=32, num_heads=2, n_freqs=2).eval()
    a.save_pretrained(tmp_path / "a", backbone="dinov2_tiny")
    torch.manual_seed(1)
    b = LoftUp(dim=32, num_heads=4, n_freqs=2).eval()
    return a, b


def test_another_saves_pickle_beside_config_json_is_refused(tmp_path):
    """b's pytorch_model.bin beside a's config.json loaded with a's 2 heads (outputs off by
    1.68), where model.safetensors in its place is refused as another save's."""
    a, b = two_saves(tmp_path)
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(tmp_path / "a" / "config.json", folder)
    torch.save(b.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="config.json is the record of another save than"):
        load_upsampler(folder)
    torch.save(a.state_dict(), folder / "pytorch_model.bin")  # its own weights: read with it
    got = load_upsampler(folder)
    assert (got.config.num_heads, got.backbone) == (2, "dinov2_tiny")


def test_a_training_checkpoint_whose_record_contradicts_config_json_is_refused(tmp_path):
    """A loftup-train model.pt records its model_config and backbone: beside a config.json that
    says otherwise it was loaded with config.json's heads and backbone, its own unread."""
    a, b = two_saves(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(tmp_path / "a" / "config.json", folder)
    ckpt = {"model": b.state_dict(), "model_config": b.config.to_dict()}
    torch.save({**ckpt, "backbone": "dinov2_vitb14"}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="another save"):
        load_upsampler(folder)  # other weights
    ckpt = {"model": a.state_dict(), "model_config": b.config.to_dict()}  # a's, 4 heads said
    torch.save({**ckpt, "backbone": "dinov2_tiny"}, folder / "model.pt")
    with pytest.raises(CheckpointError, match=r"config.json contradicts the record in .*model.pt"):
        load_upsampler(folder)
    ckpt = {"model": a.state_dict(), "model_config": a.config.to_dict()}
    torch.save({**ckpt, "backbone": "dinov2_vitb14"}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="backbone 'dinov2_vitb14' against 'dinov2_tiny'"):
        load_upsampler(folder)
    (folder / "config.json").unlink()  # the checkpoint alone: its own record
    got = load_upsampler(folder)
    assert (got.config.num_heads, got.backbone) == (2, "dinov2_vitb14")


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_cut_config_json_beside_the_weights_is_said_corrupt(tmp_path, weights):
    """A config.json cut short beside pytorch_model.bin was passed over, and the weights ran
    with 4 heads where they were saved with 2; beside model.safetensors it was said corrupt."""
    a, _ = two_saves(tmp_path)
    folder = tmp_path / "cut"
    folder.mkdir()
    text = (tmp_path / "a" / "config.json").read_bytes()
    (folder / "config.json").write_bytes(text[: len(text) // 2])
    if weights == "model.safetensors":
        shutil.copy(tmp_path / "a" / weights, folder)
    else:
        torch.save(a.state_dict(), folder / weights)
    with pytest.raises(CheckpointError, match=r"cut/config.json is corrupt"):
        load_upsampler(folder)


def test_a_training_checkpoint_whose_backbone_norm_contradicts_config_json_is_refused(tmp_path):
    """A model.pt recording backbone_norm "own" beside a config.json of the same weights that
    says "imagenet" loaded with "imagenet", silently: the backbone fed another input scale."""
    torch.manual_seed(0)
    a = LoftUp(dim=32, num_heads=2, n_freqs=2).eval()
    a.save_pretrained(tmp_path / "a", backbone="dinov2_tiny", backbone_norm="imagenet")
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(tmp_path / "a" / "config.json", folder)
    ckpt = {"model": a.state_dict(), "model_config": a.config.to_dict()}
    torch.save({**ckpt, "backbone": "dinov2_tiny", "backbone_norm": "own"}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="backbone_norm 'own' against 'imagenet'"):
        load_upsampler(folder)
    (folder / "config.json").unlink()  # the checkpoint alone: its own record
    assert load_upsampler(folder).backbone_norm == "own"


def test_a_config_json_in_another_encoding_is_said_corrupt_where_it_is_loftups(tmp_path):
    """A save_pretrained folder whose config.json was written in Latin-1 (edited on Windows)
    raised a raw UnicodeDecodeError; a UTF-16 config.json of another tool beside a plain state
    dict did too, where it loaded before."""
    a, b = two_saves(tmp_path)
    (tmp_path / "a" / "config.json").write_bytes(b'{"format": "loftup", "note": "caf\xe9"}')
    with pytest.raises(CheckpointError, match=r"a/config.json is corrupt \('utf-8' codec"):
        load_upsampler(tmp_path / "a")
    folder = tmp_path / "plain"
    folder.mkdir()
    torch.save(b.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text('{"architectures": ["X"]}', encoding="utf-16")
    assert load_upsampler(folder).config.num_heads == 4


@pytest.mark.parametrize("what", ["empty", "unparsable", "folder"])
def test_a_state_dict_beside_an_unreadable_config_json_of_another_tool_loads(tmp_path, what):
    """A plain state dict (the paper's pytorch_model.bin layout, 4 heads) beside an empty,
    unparsable or folder config.json that is not loftup's was refused as "corrupt ...; write
    the folder again with save_pretrained", where it loaded before: it loads, with a warning
    naming the config.json passed over. One whose text names loftup is still refused, with
    both ways out."""
    _, b = two_saves(tmp_path)
    folder = tmp_path / "plain"
    folder.mkdir()
    torch.save(b.state_dict(), folder / "pytorch_model.bin")
    cfg = folder / "config.json"
    if what == "folder":
        cfg.mkdir()
    else:
        cfg.write_text("" if what == "empty" else '{"architectures": ["X"],')
    with pytest.warns(UserWarning, match=r"plain/config.json .*not a loftup config, passed over"):
        got = load_upsampler(folder)
    assert got.config.num_heads == 4
    if what == "unparsable":
        cfg.write_text('{"format": "loftup", "config": {')
        with pytest.raises(CheckpointError, match="or delete config.json to load pytorch_model"):
            load_upsampler(folder)
