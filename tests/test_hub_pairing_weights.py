"""An upsampler trained on weights of its backbone's architecture other than its own, at the
backbone's own width (fine-tuned ones): its record says so, and its load without them warns."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import loftup
from loftup import LoftUp
from test_hub_pairing import _small_dinov2


def test_weights_of_the_backbones_own_width_are_recorded_and_asked_for(tmp_path):
    """save_pretrained(backbone="dinov2_tiny", backbone_weights=fine_tuned) of a 32-d upsampler
    (dinov2_tiny's width) dropped the weights without a word: the record said nothing of them,
    and its load (load_pipeline, loftup upsample -m) ran dinov2_tiny's own weights, silently,
    features the upsampler was not trained on. The record says so, as at another width; the
    load without them warns, naming backbone_weights=; with them, or a model saved without
    them, it is silent; a model loaded from the record keeps it when saved again."""
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    tuned = _small_dinov2(tmp_path / "tuned", 32)
    folder = model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny", backbone_weights=tuned)
    assert json.loads((folder / "config.json").read_text())["backbone_weights_dim"] == 32
    with pytest.warns(loftup.BackboneMismatchWarning) as told:
        assert loftup.load_pipeline(folder).featurizer.dim == 32
    said = str(told[0].message)
    assert len(told) == 1 and told[0].filename == __file__, [str(w.message) for w in told]
    assert "was trained on weights of dinov2_tiny's architecture other than its own" in said
    assert "pass them, backbone_weights=PATH (CLI --backbone-weights PATH)" in said, said
    plain = model.save_pretrained(tmp_path / "plain", backbone="dinov2_tiny")
    assert "backbone_weights_dim" not in json.loads((plain / "config.json").read_text())
    again = loftup.load_upsampler(folder).save_pretrained(tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["backbone_weights_dim"] == 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loftup.load_pipeline(again, backbone_weights=tuned)
        loftup.load_pipeline(plain)
    ran = loftup.load_pipeline(again, backbone_weights=tuned).featurizer
    with torch.no_grad():  # the weights given are the ones that run
        image = torch.rand(1, 3, 28, 28)
        tuned_model = loftup.get_featurizer("dinov2_tiny", weights=tuned).eval()
        assert torch.equal(ran(image), tuned_model(image))


def test_the_backbones_own_weights_given_by_their_hub_id_are_no_other_weights(tmp_path):
    """backbone_weights= naming the backbone's own weights (its default hub id, as a training
    config may spell them out) records nothing, in save_pretrained's record or read from a
    loftup train checkpoint (which recorded them, and its load warned that they were other
    weights): its load, which runs them, has nothing to ask."""
    model = LoftUp(dim=384, depth=1, num_heads=2, n_freqs=4)
    own = loftup.featurizers.resolve("dinov2_vits14").default_weights
    folder = model.save_pretrained(tmp_path / "up", backbone="dinov2_vits14", backbone_weights=own)
    assert "backbone_weights_dim" not in json.loads((folder / "config.json").read_text())
    other = model.save_pretrained(
        tmp_path / "ft", backbone="dinov2_vits14", backbone_weights="me/ft"
    )
    assert json.loads((other / "config.json").read_text())["backbone_weights_dim"] == 384
    # loftup train's checkpoint.pt of a run told them so, as its final/ records it
    for weights, recorded in ((own, None), ("me/ft", 384)):
        ckpt = {
            "format": "loftup-train", "model": model.state_dict(),
            "model_config": model.config.to_dict(), "backbone": "dinov2_vits14",
            "config": {"backbone_weights": weights},
        }  # fmt: skip
        torch.save(ckpt, tmp_path / "checkpoint.pt")
        assert loftup.load_upsampler(tmp_path / "checkpoint.pt").backbone_weights_dim == recorded


def test_weights_given_without_a_backbone_to_record_are_refused(tmp_path):
    """save_pretrained(backbone_weights=...) of an upsampler recording no backbone, and given
    none, wrote a folder that said nothing of them (its load then asked for a backbone alone):
    refused, naming the argument to add, and nothing is written; with it they are recorded."""
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    with pytest.raises(loftup.errors.UsageError) as e:
        model.save_pretrained(tmp_path / "up", backbone_weights="me/ft")
    assert "save_pretrained(backbone_weights='me/ft') names the weights of a backbone, " in str(
        e.value
    )
    assert str(e.value).endswith("(backbone='dinov2_tiny', say)") and not (tmp_path / "up").exists()
    model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny", backbone_weights="me/ft")
    assert json.loads((tmp_path / "up" / "config.json").read_text())["backbone_weights_dim"] == 32


@pytest.mark.parametrize("weights", [3, True, "", "  ", b"me/ft"])
def test_weights_that_name_nothing_are_refused(tmp_path, weights):
    """backbone_weights=3 (or True, a blank string, bytes) was taken as weights given: recorded
    as trained on other weights, whose load then asked for them. Refused, nothing written."""
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    with pytest.raises(loftup.errors.UsageError) as e:
        model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny", backbone_weights=weights)
    assert str(e.value).startswith("save_pretrained's backbone_weights names the weights ")
    assert f"got {weights!r}; or leave it out" in str(e.value) and not (tmp_path / "up").exists()


def test_the_backbones_own_weights_in_a_hub_cache_snapshot_are_no_other_weights(tmp_path):
    """backbone_weights= a snapshot of the backbone's own hub repo in a Hugging Face cache
    (models--facebook--dinov2-small/snapshots/COMMIT: the local files an offline machine is
    told to give, --backbone-weights) was recorded as other weights, by save_pretrained and
    loftup train's export: every load of its final/ without them warned that it runs weights
    other than it was trained on, which were those. Nothing is recorded (read from a run's
    checkpoint on a machine without that folder too); a fine-tuned copy's folder, or another
    repo's snapshot, still is."""
    model = LoftUp(dim=384, depth=1, num_heads=2, n_freqs=4)
    commit = "0123456789abcdef0123456789abcdef01234567"
    own = tmp_path / "hub" / "models--facebook--dinov2-small" / "snapshots" / commit
    other = tmp_path / "hub" / "models--me--dinov2-small-ft" / "snapshots" / commit
    for folder in (own, other, tmp_path / "ft"):
        folder.mkdir(parents=True)
    for weights, recorded in ((own, None), (other, 384), (tmp_path / "ft", 384)):
        folder = model.save_pretrained(
            tmp_path / "up", backbone="dinov2_vits14", backbone_weights=weights
        )
        config = json.loads((folder / "config.json").read_text())
        assert config.get("backbone_weights_dim") == recorded, weights
        ckpt = {
            "format": "loftup-train", "model": model.state_dict(),
            "model_config": model.config.to_dict(), "backbone": "dinov2_vits14",
            "config": {"backbone_weights": str(weights)},
        }  # fmt: skip
        torch.save(ckpt, tmp_path / "checkpoint.pt")
        assert loftup.load_upsampler(tmp_path / "checkpoint.pt").backbone_weights_dim == recorded
    # a run's checkpoint read on another machine, where the snapshot it ran on is not
    ckpt["config"] = {"backbone_weights": "/elsewhere/" + str(own.relative_to(tmp_path))}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert loftup.load_upsampler(tmp_path / "checkpoint.pt").backbone_weights_dim is None
