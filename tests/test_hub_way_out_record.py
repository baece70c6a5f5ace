"""The way out's line keeps what the file records beside the weights: the backbone a LoftUp
was trained on and its input normalisation (a module's attributes, ``loftup train``'s keys),
which a reloaded file lost (the pipeline then fed CLIP's images ImageNet-normalised, silently),
and its config where it is a LoftUpConfig object; the general words are no line of Python."""

from __future__ import annotations

import argparse

import pytest
import torch

from loftup import LoftUp, load_upsampler
from loftup.model_config import LoftUpConfig
from test_hub_way_out import GENERAL, same_upsampler, told


def _whole(m: LoftUp) -> LoftUp:
    m.backbone, m.backbone_norm = "clip_vitb16", "own"
    return m


def _train_layout(m: LoftUp) -> dict:
    return {
        "model": m.state_dict(),
        "model_config": m.config.to_dict(),
        "backbone": "clip_vitb16",
        "backbone_norm": "own",
        "history": {"loss": [argparse.Namespace(value=0.5)]},  # the one pickled object
    }


@pytest.mark.parametrize("saved", [_whole, _train_layout], ids=["module", "train-layout"])
def test_the_line_told_keeps_the_backbone_record(tmp_path, saved):
    """torch.save(model) was told its state dict and config alone; loftup train's layout its
    "model" and "model_config": the file written loaded with no backbone recorded, and the
    pipeline fell back to ImageNet normalisation. Both are kept, where loftup's loaders read
    them."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2, attention_window=3).eval()
    torch.save(saved(upsampler), tmp_path / "up.pt")
    _, line, out = told(tmp_path / "up.pt")
    exec(line, {"torch": torch})
    loaded = load_upsampler(out)
    assert (loaded.backbone, loaded.backbone_norm) == ("clip_vitb16", "own")
    same_upsampler(loaded, upsampler)


def test_a_config_object_is_kept_as_its_dict(tmp_path):
    """loftup train's layout with its model_config a LoftUpConfig object was told the general
    words: the line keeps its dict (what the weights-only load reads), and its file loads."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2, attention_window=3).eval()
    config = LoftUpConfig(**upsampler.config.to_dict())
    torch.save({"model": upsampler.state_dict(), "model_config": config}, tmp_path / "c.pt")
    _, line, out = told(tmp_path / "c.pt")
    assert '["model_config"].to_dict()' in line
    exec(line, {"torch": torch})
    same_upsampler(load_upsampler(out), upsampler)


def test_the_general_words_are_prose_not_a_line_that_fails(tmp_path):
    """They were "in Python: torch.save(<the dict of tensors in ...>, ...)": a SyntaxError to
    one who ran it. They say what to do in words, naming the load and the file to write."""
    torch.save({"weights": {"w": torch.zeros(2)}, "hp": argparse.Namespace()}, tmp_path / "o.pt")
    msg, said, out = told(tmp_path / "o.pt")
    assert "in Python: " not in msg and "<" not in msg
    assert said.startswith(f"{GENERAL}{str(tmp_path / 'o.pt')!r}, map_location=")
    assert out == str(tmp_path / "o.weights.pt")


@pytest.mark.parametrize("record", [False, True], ids=["bare", "model_config"])
def test_the_line_told_keeps_the_model_that_the_load_reads_not_a_state_dict_beside_it(
    tmp_path, record
):
    """A file of pickled objects holding the LoftUp under "model" and another module's weights
    under "state_dict" was told a line that kept "state_dict", whose file was then refused
    ("training checkpoint has no channel norm"): the line keeps "model" (and its record), as
    the load of that file reads it, and what it writes loads as the LoftUp."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    obj = {"model": upsampler.state_dict(), "state_dict": {"embeddings.weight": torch.ones(4)}}
    obj |= {"model_config": upsampler.config.to_dict()} if record else {}
    torch.save({**obj, "args": argparse.Namespace(lr=0.1)}, tmp_path / "c.pt")
    _, line, out = told(tmp_path / "c.pt")
    exec(line, {"torch": torch})
    same_upsampler(load_upsampler(out, num_heads=None if record else 2), upsampler)


def test_the_copy_s_name_fits_the_longest_name_of_its_folder_s_file_system(tmp_path, monkeypatch):
    """The copy's name was cut to 255 bytes whatever the folder's file system takes (143 on
    eCryptfs: the line told failed there with ENAMETOOLONG); it asks the file system now."""
    from loftup.hub.way_out import new_name

    monkeypatch.setattr("os.pathconf", lambda path, name: 143)  # the file system's answer
    out = new_name(tmp_path / f"{'x' * 250}.pt", tmp_path)
    assert out.parent == tmp_path and len(out.name.encode()) <= 143
    assert out.name == f"{'x' * (143 - len('.weights-new.pt'))}.weights.pt"
