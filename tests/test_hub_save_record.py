"""``save_pretrained``'s record (config.json, and its copy in the weights' header): what it
refuses to record (metadata JSON cannot hold, a backbone the load cannot build, a blank one),
said before anything is written, and what it records. Its folder: test_hub_save.py."""

from __future__ import annotations

import datetime

import pytest
import torch

from loftup import LoftUp
from loftup.errors import UsageError


@pytest.mark.parametrize(
    "kw, said",
    [
        (
            {"metadata": {"run": {"when": datetime.date(2026, 1, 2)}}},
            "metadata['run']['when'] is a date, which config.json cannot hold: pass strings, "
            "numbers, booleans, None, lists and dicts",
        ),
        (  # NaN and infinities were written as null, silently
            {"metadata": {"best_miou": 0.5, "runs": [1.0, float("-inf")]}},
            "metadata['runs'][1] is -inf (JSON has no NaN or infinity: None or a string instead)",
        ),
        ({"metadata": {"best_miou": float("nan")}}, "metadata['best_miou'] is nan (JSON has no "),
        ({"backbone": 5}, "backbone is a backbone's name (dinov2_vits14, say) or None, got 5"),
        (  # the featurizer in place of its name: its repr runs over lines
            {"backbone": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())},
            "backbone is a backbone's name (dinov2_vits14, say) or None, got Sequential(...)",
        ),
        ({"backbone_norm": "rgb"}, "backbone_norm must be one of imagenet, own"),
    ],
)
def test_what_config_json_cannot_record_is_refused_before_anything_is_written(tmp_path, kw, said):
    """It wrote the weights, then failed on config.json (a TypeError traceback for metadata
    JSON cannot hold), leaving a folder of one save's weights and another's record or none; a
    backbone that is not a name was written, and the load refused the folder."""
    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    first = model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    with pytest.raises(UsageError) as e:
        LoftUp(dim=32, depth=1, num_heads=4, n_freqs=4).save_pretrained(tmp_path / "up", **kw)
    assert said in str(e.value) and "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_metadata_json_holds_round_trips(tmp_path):
    """What JSON holds is written as it is (a number as a key, as JSON writes it, a string)."""
    import json

    meta = {"steps": 3, "lr": 1e-3, "tags": ["a", None, True], 7: {"ok": 1.5}}
    folder = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(
        tmp_path / "up", metadata=meta
    )
    got = json.loads((folder / "config.json").read_text())["metadata"]
    assert got == {"steps": 3, "lr": 1e-3, "tags": ["a", None, True], "7": {"ok": 1.5}}


@pytest.mark.parametrize(
    "backbone, said",
    [
        ("dinov2_vits", "unknown backbone 'dinov2_vits' (did you mean dinov2_vits14 or "),
        ("dinov2-vits14", "unknown backbone 'dinov2-vits14' (did you mean dinov2_vits14?)"),
        ("DINOv2_ViTS14", "unknown backbone 'DINOv2_ViTS14' (did you mean dinov2_vits14?)"),
        ("my_backbone", "unknown backbone 'my_backbone'; known backbones are: "),
        (
            "facebook/dinov2-small",
            "backbone 'facebook/dinov2-small' is the hub id of the weights of dinov2_vits14; "
            "record the backbone's name (dinov2_vits14)",
        ),
        (  # a revision: the hint was lost, "unknown backbone" alone
            "facebook/dinov2-small@main",
            "backbone 'facebook/dinov2-small@main' is the hub id of the weights of "
            "dinov2_vits14; record the backbone's name (dinov2_vits14): its weights are found "
            "from it (from facebook/dinov2-small's main branch",
        ),
        (  # a fine-tuned model's hub id: told where such weights go
            "me/dinov2-small-ft",
            "backbone 'me/dinov2-small-ft' is a hub id, which names weights, not a backbone: "
            "record the registered backbone of its architecture (dinov2_vits14, say), and give "
            "these weights at load, backbone_weights='me/dinov2-small-ft'",
        ),
    ],
)
def test_a_backbone_the_load_cannot_build_is_refused_before_anything_is_written(
    tmp_path, backbone, said
):
    """Any string was recorded as the backbone, and the folder's load (perhaps after a push to
    the hub) refused it: said at the save, as the load says it, and nothing is written."""
    from loftup.errors import UnknownNameError

    model = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    with pytest.raises(UnknownNameError) as e:
        model.save_pretrained(tmp_path / "up", backbone=backbone)
    assert said in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "up").exists()
    model.backbone = backbone  # as a loaded upsampler records it: saved as its own
    with pytest.raises(UnknownNameError):
        model.save_pretrained(tmp_path / "up")
    assert not (tmp_path / "up").exists()


@pytest.mark.parametrize("dim, example", [(32, "dinov2_tiny"), (64, "scenes_vit_p8")])
def test_a_blank_backbone_is_given_an_example_of_the_upsampler_s_width(tmp_path, dim, example):
    """save_pretrained(backbone="") was given dinov2_vits14 as the example, whatever the
    upsampler's width: followed, the save refused it as of another width (384-d)."""
    model = LoftUp(dim=dim, depth=1, num_heads=2, n_freqs=4)
    for blank in ("", " "):
        with pytest.raises(UsageError) as e:
            model.save_pretrained(tmp_path, backbone=blank)
        assert str(e.value) == (  # as the pipeline and the backbones word it
            "the backbone is empty or blank (an unset variable or an empty string?): pass a "
            f"backbone's name (e.g. backbone='{example}'), or backbone=None to record none"
        )
    assert model.save_pretrained(tmp_path, backbone=example) == tmp_path  # which is recorded


def test_every_backbone_the_load_builds_is_recorded(tmp_path, monkeypatch):
    """A registered name, an alias and a backbone of the user's own registered before the save
    are recorded, and the folder loads with the backbone it records."""
    import dataclasses

    import loftup
    from loftup.featurizers import ALIASES, FEATURIZERS

    tiny = FEATURIZERS["dinov2_tiny"]
    monkeypatch.setitem(FEATURIZERS, "my_tiny", dataclasses.replace(tiny, name="my_tiny"))
    monkeypatch.setitem(ALIASES, "tiny", "dinov2_tiny")
    for backbone in ("dinov2_tiny", "tiny", "my_tiny"):
        folder = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(
            tmp_path / backbone, backbone=backbone
        )
        pipeline = loftup.load_pipeline(folder, backbone_size=28)
        assert pipeline.upsampler.backbone == backbone
        assert pipeline.featurizer.dim == 32  # built from the recorded name
