"""Where a backbone's weights come from (a local folder, the Hugging Face cache, offline or not):
each way they are not there, or are not what is asked for, is one line naming the file, the
repo and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from loftup import WeightsNotFoundError, get_featurizer
from loftup.errors import CheckpointError
from loftup.featurizers.hf import download
from test_featurizers import VISION, _save

pytestmark = pytest.mark.usefixtures("hf_offline")


def test_official_name_found_in_the_hf_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from transformers import Dinov2Config, Dinov2Model

    from hub_builders import make_hf_cache

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28)
    folder = _save(Dinov2Model(cfg), tmp_path / "m")
    files = {p.name: p for p in folder.iterdir()}
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", files)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    feat = get_featurizer("dinov2_vits14")  # the default hub id, resolved from the cache
    assert feat.dim == 32 and feat.model.config.num_hidden_layers == 1
    assert (download("dinov2_vits14") / "model.safetensors").is_file()
    with pytest.raises(WeightsNotFoundError, match="no hub weights"):
        download("dinov2_tiny")


def test_a_damaged_cached_backbone_says_which_blob_to_delete(tmp_path, monkeypatch):
    """A cache copied from another machine (the offline recipe) with a cut config.json, or the
    files of another model, told the user to "pass the matching folder" or "write the folder
    again with save_pretrained": nobody passed that folder, and the fix is to delete the
    cached file and fetch it again."""
    from huggingface_hub import constants
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from hub_builders import make_hf_cache

    tiny = _save(get_featurizer("dinov2_tiny").model, tmp_path / "tiny")
    clip = CLIPVisionConfig(**VISION, patch_size=16, image_size=32, projection_dim=16)
    other = _save(CLIPVisionModelWithProjection(clip), tmp_path / "clip")
    config, weights = tiny / "config.json", tiny / "model.safetensors"
    for i, (files, bad, said) in enumerate(
        (
            ({"config.json": config.read_bytes()[:40]}, "config.json", "is corrupt ("),
            ({"config.json": b"[]"}, "config.json", "holds a JSON list"),
            ({"config.json": other / "config.json"}, "config.json", "'clip_vision_model' model"),
            ({"model.safetensors": other / "model.safetensors"}, "model.safetensors", "missing"),
        )
    ):
        hub = tmp_path / "hub" / str(i)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
        both = {"config.json": config, "model.safetensors": weights, **files}
        snap = make_hf_cache(hub, "facebook/dinov2-small", both)
        with pytest.raises(CheckpointError) as e:
            get_featurizer("dinov2_vits14")
        msg = str(e.value)
        assert msg.startswith(str(snap)) and said in msg and "\n" not in msg, msg
        fix = f"damaged download in the Hugging Face cache: delete {(snap / bad).resolve()} and "
        assert fix + "run `loftup download dinov2_vits14` to fetch it again" in msg, msg


def test_offline_without_weights_names_repo_and_local_option():
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vitb14")
    msg = str(e.value)
    assert "facebook/dinov2-base" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--backbone-weights" in msg and "weights=" in msg and "\n" not in msg
    assert "`loftup train backbone_weights=/path/to/folder`" in msg  # the training key too


def test_every_released_name_and_backbone_missing_offline_is_one_line_naming_its_file():
    """Offline with an empty cache, each released upsampler and each backbone with hub weights
    fails at once with one line naming its hub repo, the missing file and both ways out."""
    from huggingface_hub import constants

    from loftup import load_upsampler
    from loftup.featurizers import FEATURIZERS
    from loftup.hub import RELEASED

    wants = [(lambda c=c: load_upsampler(c.name), c.repo_id, c.filename) for c in RELEASED.values()]
    wants += [
        (lambda n=n: get_featurizer(n), spec.default_weights, "config.json")
        for n, spec in FEATURIZERS.items()
        if spec.default_weights
    ]
    assert len(wants) == 7 + 15  # DINOv2 8, DINOv3 3, CLIP, SigLIP, SigLIP 2 (and NaFlex)
    for load, repo, filename in wants:
        with pytest.raises(WeightsNotFoundError) as e:
            load()
        msg = str(e.value)
        assert f"file {filename!r} of hub repo {repo!r} is not in the Hugging Face cache" in msg
        assert "HF_HUB_OFFLINE=1 is set" in msg and "`loftup download " in msg
        assert "/path/to/" in msg and "\n" not in msg
        # where this process reads the cache (a copy put elsewhere is not found)
        assert f"(~/.cache/huggingface/hub by default) to {constants.HF_HUB_CACHE}, or" in msg
        if filename == "config.json":  # the weights are missing too: said at once
            assert "(nor is 'model.safetensors' or 'pytorch_model.bin', which it needs too)" in msg


def test_offline_with_only_the_config_cached_names_the_weights_alone(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hub_builders import make_hf_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", {"config.json": b"{}"})
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14")
    msg = str(e.value)
    assert "file 'model.safetensors' of hub repo 'facebook/dinov2-small' is not in the " in msg
    assert "nor is" not in msg and "'config.json'" not in msg.split("Run")[0]


def test_a_gated_backbone_missing_offline_says_how_to_get_access():
    """DINOv3's repos are gated: offline, the advice to run `loftup download` elsewhere failed
    there too (401) until the terms were accepted and the user logged in; it says so first."""
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    for call in (lambda: get_featurizer("dinov3_vits16"), lambda: download("dinov3_vits16")):
        with pytest.raises(WeightsNotFoundError) as e:
            call()
        msg = str(e.value)
        assert f"(the repo is gated: accept its terms at https://huggingface.co/{repo} " in msg
        assert "HF_TOKEN" in msg and "`hf auth login`" in msg and "\n" not in msg
    assert "env -u HF_HUB_OFFLINE loftup download dinov3_vits16` (the repo is gated" in msg
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14")
    # "repo is gated": the message names the cache folder, whose path (this test's) has "gated"
    assert "repo is gated" not in str(e.value) and "HF_TOKEN" not in str(e.value)


def test_offline_weights_from_another_repo_say_how_to_fetch_that_repo(monkeypatch):
    """Offline, weights="facebook/dinov2-base" for dinov2_vits14 said "Run `loftup download
    dinov2_vits14`", which fetches facebook/dinov2-small, not the repo asked for; then a
    snapshot_download of the whole repo (every format of its weights), where `loftup download
    ORG/NAME` fetches what is loaded."""
    from loftup.errors import WeightsNotFoundError
    from loftup.featurizers.hf import resolve_weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    default = "facebook/dinov2-small"
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("someone/dinov2-tuned", default, "dinov2_vits14")
    msg = str(e.value)
    assert "Run `loftup download someone/dinov2-tuned` on a machine with network" in msg
    assert "loftup download dinov2_vits14" not in msg and "snapshot_download" not in msg
    with pytest.raises(WeightsNotFoundError, match="Run `loftup download dinov2_vits14`"):
        resolve_weights(None, "someone/not-cached", "dinov2_vits14")


def test_bad_local_folders_are_named(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    with pytest.raises(WeightsNotFoundError, match="nothere does not exist"):
        get_featurizer("dinov2_vits14", weights=tmp_path / "nothere")
    # a relative Path was looked up as a hub repo ("file 'config.json' of hub repo
    # 'models/dinov2' is not in the Hugging Face cache", online a download): a Path is local
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14", weights=Path("models/dinov2"))
    assert str(e.value) == (
        "backbone weights for dinov2_vits14: models/dinov2 does not exist; pass a folder in "
        "the Hugging Face layout (config.json + model.safetensors) or a hub id"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="no config.json") as e:
        get_featurizer("dinov2_vits14", weights=tmp_path / "empty")
    assert "cache" not in str(e.value)
    # the cache's folder of a repo, not a snapshot of it: said so, with the two ways to pass it
    repo = tmp_path / "hub" / "models--facebook--dinov2-small"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    for folder in (repo, repo / "snapshots"):
        with pytest.raises(WeightsNotFoundError) as e:
            get_featurizer("dinov2_vits14", weights=folder)
        assert str(e.value).endswith(
            "; it is the Hugging Face cache's folder of hub repo facebook/dinov2-small, whose "
            "files are in its snapshots/COMMIT folders: pass the hub id facebook/dinov2-small "
            "(read from the cache), or one of them"
        )
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28)
    folder = _save(Dinov2Model(cfg), tmp_path / "dino")
    with pytest.raises(CheckpointError, match="holds a 'dinov2' model.*clip_vitb16"):
        get_featurizer("clip_vitb16", weights=folder)
    # a config.json that transformers rejects (edited by hand: 12 layers' out_features kept
    # with one layer): the folder, the backbone and transformers' reason, not a traceback
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "out_features": ["stage12"]}))
    with pytest.raises(CheckpointError, match=r"dino cannot be loaded as backbone dinov2_vits14 "
                       r"\(ValueError: out_features must be a subset"):  # fmt: skip
        get_featurizer("dinov2_vits14", weights=folder)
    # a field of the wrong type (a number written as text): transformers 5's check of it is
    # no ValueError and was a traceback of several lines
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": "32"}))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    msg = str(e.value)
    assert msg.startswith(f"{folder} cannot be loaded as backbone dinov2_vits14 (")
    assert "'hidden_size'" in msg and "check its config.json" in msg and "\n" not in msg
    # a config.json whose sizes are not the weights' (edited by hand): which weight, both
    # shapes and the fix, not transformers' "look at the above report" (which is silenced)
    (folder / "config.json").write_text(json.dumps({**config, "mlp_ratio": 2}))
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    msg = str(e.value)
    assert "config.json does not describe its weights: encoder.layer.0.mlp.fc1.bias is" in msg
    assert "(128,) in the file, (64,) by the config" in msg and "save_pretrained" in msg
    (folder / "config.json").write_text("[1]")  # valid JSON, but not a config
    with pytest.raises(CheckpointError, match="config.json holds a JSON list.*save_pretrained"):
        get_featurizer("dinov2_vits14", weights=folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    msg = str(e.value)  # what is missing and where to get it, in one line
    assert "needs model.safetensors" in msg and "facebook/dinov2-small" in msg
    assert "\n" not in msg


def test_backbone_weights_that_are_no_folder_nor_hub_id_are_one_line(tmp_path, monkeypatch,
                                                                     capsys):  # fmt: skip
    """Weights that are no folder here and no valid hub id came out of get_featurizer as
    huggingface_hub's HFValidationError (naming neither the backbone nor a fix), and so did a
    revision, ORG/NAME@REVISION (a backbone's weights are read from the main branch, as
    `loftup download` says); an empty string was Path(""), the current folder, loaded as the
    backbone whatever it held. Each is one line naming the backbone and the fix."""
    from PIL import Image

    from loftup import LoftUp
    from loftup.cli import main
    from loftup.errors import UsageError

    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights="my w/x")
    msg = str(e.value)
    assert msg.startswith("backbone weights for dinov2_tiny: 'my w/x' is neither a folder here "
                          "nor a hub id (Repo id must use")  # fmt: skip
    assert msg.endswith("); pass a folder in the Hugging Face layout (config.json + "
                        "model.safetensors) or a hub id ORG/NAME") and "\n" not in msg  # fmt: skip
    # a backbone's name (`--backbone-weights dinov2_vitb14`, meant as --backbone) was looked up
    # as hub repo 'dinov2_vitb14': "run `loftup download dinov2_vitb14`" fetched another repo
    for weights, said in (
        ("facebook/dinov2-small@main", "facebook/dinov2-small@main names a revision, but a "
         "backbone's weights are read from its hub repo's main branch; pass "
         "facebook/dinov2-small, or a folder in the Hugging Face layout (config.json + "
         "model.safetensors) of that revision"),
        ("dinov2_vitb14", "dinov2_vitb14 is a backbone's name, not its weights; pass it as the "
         "backbone (backbone=, CLI --backbone), without weights for the official ones "
         "(facebook/dinov2-base), or pass a folder in the Hugging Face layout or a hub id"),
        ("dinov2_vits14", "dinov2_vits14 is a backbone's name, not its weights; leave them out "
         "for the official ones (facebook/dinov2-small), or pass a folder in the Hugging Face "
         "layout or a hub id"),
    ):  # fmt: skip
        with pytest.raises(UsageError) as e:
            get_featurizer("dinov2_vits14", weights=weights)
        assert str(e.value) == f"backbone weights for dinov2_vits14: {said}"
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path)  # a backbone folder here
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "dinov2_vitb14")
    monkeypatch.chdir(tmp_path)
    assert get_featurizer("dinov2_tiny", weights="dinov2_vitb14").dim == 32  # the folder here
    for empty in ("", " "):
        with pytest.raises(UsageError, match="dinov2_tiny are empty or blank; pass a folder"):
            get_featurizer("dinov2_tiny", weights=empty)
    Image.new("RGB", (16, 16)).save("x.png")  # the command line says the same, in one line
    LoftUp(dim=32).save_pretrained("up", backbone="dinov2_tiny")
    argv = ["upsample", "x.png", "-m", "up", "-o", "out", "--backbone-weights", "my w/x"]
    capsys.readouterr()  # save_pretrained's progress bar
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backbone weights for dinov2_tiny: 'my w/x' is neither a ")
    assert "\n" not in err


@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_a_config_or_shard_index_this_user_may_not_read_is_said_with_its_chmod():
    """Another user's backbone folder whose config.json (or shard index) is of mode 600: a
    bare PermissionError traceback ("[Errno 13] Permission denied"), where an unreadable
    model.safetensors was said with its owner and chmod. Now so are both."""
    import shutil
    import tempfile

    from transformers import Dinov2Config, Dinov2Model

    from as_nobody import as_nobody

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
        model = Dinov2Model(cfg)
        model.save_pretrained(base / "whole")
        model.save_pretrained(base / "shards", max_shard_size="20KB")
        get_featurizer("dinov2_vits14", weights=base / "whole")  # (what the child imports)
        for folder, name in (("whole", "config.json"), ("shards", "model.safetensors.index.json")):
            for path in (base / folder).iterdir():
                path.chmod(0o644)
            os.chmod(base / folder, 0o755)
            (base / folder / name).chmod(0o600)
            said = as_nobody(lambda f=folder: get_featurizer("dinov2_vits14", weights=base / f))
            what = "backbone config" if name == "config.json" else "shard index"
            assert said.startswith(f"cannot read {what} {base / folder / name}: permission "), said
            assert f"(chmod o+r {base / folder / name})" in said and "\n" not in said
    finally:
        shutil.rmtree(base)
