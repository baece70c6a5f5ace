"""An upsampler of one's own on the hub (``ORG/NAME``, save_pretrained's files): loaded by hub
id from the cache, refused where the repo is another kind, refreshed by ``loftup download``,
and said whole where its files are missing offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache, _own_upsampler, _two_commits, _use_mirror
from loftup import CheckpointError, UnknownNameError, WeightsNotFoundError, load_upsampler


def test_an_upsampler_of_ones_own_loads_by_hub_id_from_the_cache(tmp_path, monkeypatch):
    """An upsampler saved with save_pretrained and pushed to the hub loads by its id, from the
    cache offline, as the saved one (heads and backbone from its record); a revision by
    ``@REV``; a local folder of the same name wins over the hub id."""
    model, folder, (lr, image) = _own_upsampler(tmp_path)
    other, other_folder, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    # a tag v1 pointing at another commit, holding the other upsampler
    _two_commits(tmp_path / "hub", "someone/my-up", folder, other_folder, "v1")
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    loaded = load_upsampler("someone/my-up")
    assert loaded.config == model.config and loaded.config.num_heads == 2
    assert (loaded.backbone, loaded.source) == ("dinov2_tiny", "someone/my-up")
    at_v1 = load_upsampler("someone/my-up@v1")
    assert at_v1.config.num_heads == 4 and at_v1.source == "someone/my-up@v1"
    # a Path names a file here: not the hub id its text spells (it loaded that repo instead)
    with pytest.raises(WeightsNotFoundError, match="^no such file or folder: someone/my-up; "):
        load_upsampler(Path("someone/my-up"))
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))
        assert torch.equal(at_v1(lr, image), other(lr, image))
    # a folder of that name here is the user's: it wins
    (tmp_path / "someone").mkdir()
    other_folder.rename(tmp_path / "someone" / "my-up")
    local = load_upsampler("someone/my-up")
    assert local.config.num_heads == 4 and local.source == "someone/my-up"
    with torch.no_grad():
        assert torch.equal(local(lr, image), other(lr, image))


def test_a_hub_repo_of_another_kind_is_refused_before_its_weights_download(
    tmp_path, monkeypatch, local_hub
):
    """An id whose repo holds a backbone (or anything with a config.json that is no loftup
    record): its config.json is read first and the repo refused, before its weights (gigabytes
    for a large backbone) are downloaded."""
    from huggingface_hub import try_to_load_from_cache

    config = {"model_type": "dinov2", "hidden_size": 32}
    files = {
        ("someone/bb", "config.json"): json.dumps(config).encode(),
        ("someone/bb", "model.safetensors"): b"x" * 1000,
    }
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/bb")
    assert str(e.value).startswith(
        "hub repo someone/bb holds no upsampler: its config.json is not a loftup config (no "
        '"format": "loftup"), so its weights were not downloaded; '
    )
    assert (
        "a transformers 'dinov2' model, a backbone's weights: pass it as the backbone's "
        "(backbone_weights='someone/bb', CLI --backbone-weights someone/bb)"
    ) in str(e.value)
    cached = try_to_load_from_cache("someone/bb", "model.safetensors", cache_dir=tmp_path / "hub")
    assert not isinstance(cached, str)


def test_download_of_ones_own_repo_fetches_what_its_owner_pushed_since(
    tmp_path, monkeypatch, local_hub, capsys
):
    """Loading an upsampler of one's own by id reads the cache, without asking the hub; `loftup
    download ORG/NAME` asks it, and fetches the newer commit its owner pushed since (it kept
    the cached copy and said it had it). Unreachable, it keeps the copy it has."""
    from loftup.cli import main

    first, folder1, (lr, image) = _own_upsampler(tmp_path)
    second, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)

    def pushed(folder, commit):
        files = {("someone/my-up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
        _use_mirror(monkeypatch, local_hub(files, commit=commit), tmp_path / "hub")

    pushed(folder1, "1" * 40)
    assert main(["download", "someone/my-up"]) == 0
    pushed(folder2, "2" * 40)
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), first(lr, image))
        assert main(["download", "someone/my-up"]) == 0
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), second(lr, image))
    capsys.readouterr()
    # its files gone (the repo answers; of a repo gone, huggingface_hub gives the cached copy)
    gone = {("someone/my-up", "README.md"): b"moved elsewhere"}
    _use_mirror(monkeypatch, local_hub(gone, commit="3" * 40), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0  # the copy it has, said once a file
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in err] == [
        "warning: hub repo 'someone/my-up' did not give 'config.json'",
        "warning: hub repo 'someone/my-up' did not give 'model.safetensors'",
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "someone/my-up"]) == 0  # offline: the copy is all there is
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("weights", ["failing", "missing"])
def test_a_refresh_whose_weights_cannot_be_had_keeps_the_cached_commit_loading(
    tmp_path, monkeypatch, local_hub, capsys, weights
):
    """`loftup download ORG/NAME` of a repo pushed again whose config.json arrives but whose
    weights do not (the hub fails, or the push holds none): the cache's ref moved to the new
    commit with the config and stayed there, so loading by id offline found no weights although
    the earlier commit's files were all cached. The refresh is all or nothing."""
    from loftup.cli import main

    first, folder1, (lr, image) = _own_upsampler(tmp_path)
    _, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    names = ("model.safetensors", "config.json")
    files = {("someone/my-up", n): (folder1 / n).read_bytes() for n in names}
    _use_mirror(monkeypatch, local_hub(files, commit="1" * 40), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0
    files = {("someone/my-up", n): (folder2 / n).read_bytes() for n in names}
    failing = (("someone/my-up", "model.safetensors"),)
    if weights == "missing":  # a push of the config alone
        del files["someone/my-up", "model.safetensors"]
    _use_mirror(monkeypatch, local_hub(files, commit="2" * 40, failing=failing), tmp_path / "hub")
    capsys.readouterr()
    assert main(["download", "someone/my-up"]) == 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), first(lr, image))
    err = capsys.readouterr().err
    assert "'model.safetensors' of hub repo 'someone/my-up' could not be downloaded" in err, err
    assert err.rstrip().endswith(
        f"; loading someone/my-up still reads the files of commit {'1' * 40} cached before"
    ), err


def test_a_backbone_repo_refresh_whose_weights_fail_keeps_the_cached_commit(
    tmp_path, monkeypatch, local_hub
):
    """The same for a backbone's repo of one's own: its config.json of the newer commit came,
    its weights did not, and the cache still gives the weights of the commit it had."""
    from huggingface_hub import try_to_load_from_cache
    from safetensors.torch import save_file

    from loftup.cli import main

    for commit, width in (("1" * 40, 32), ("2" * 40, 64)):
        save_file({"w": torch.zeros(width)}, tmp_path / "w.safetensors")
        files = {
            ("someone/bb", "config.json"): json.dumps(
                {"model_type": "dinov2", "hidden_size": width}
            ).encode(),  # fmt: skip
            ("someone/bb", "model.safetensors"): (tmp_path / "w.safetensors").read_bytes(),
        }
        failing = (("someone/bb", "model.safetensors"),) if width == 64 else ()
        _use_mirror(monkeypatch, local_hub(files, commit=commit, failing=failing), tmp_path / "hub")
        assert main(["download", "someone/bb"]) == (2 if failing else 0)
    for name in ("config.json", "model.safetensors"):
        found = try_to_load_from_cache("someone/bb", name, cache_dir=tmp_path / "hub")
        assert isinstance(found, str) and f"/snapshots/{'1' * 40}/" in found, (name, found)


def test_an_upsampler_by_hub_id_missing_offline_names_the_files_and_the_fix(tmp_path, monkeypatch):
    """Offline with the repo's files not cached: one line naming the repo, the files it needs
    and how to provide them (a download elsewhere, or the local folder), as the released
    checkpoints say it; with the weights cached alone, the config.json is named."""
    _, folder, _ = _own_upsampler(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    for source, missing in (("someone/my-up", "'model.safetensors' of hub repo 'someone/my-up'"),
                            ("someone/my-up@v2", "'model.safetensors' of hub repo 'someone/my-up@v2'")):  # fmt: skip
        with pytest.raises(WeightsNotFoundError) as e:
            load_upsampler(source)
        msg = str(e.value)
        assert "\n" not in msg and missing in msg, msg
        assert msg.startswith(
            f"upsampler {source} (no file or folder {source} in the current folder {os.getcwd()}, "
            "so taken for a hub repo id): "
        )
        assert "is not in the Hugging Face cache (nor is 'config.json', which it needs too)" in msg
        assert "HF_HUB_OFFLINE=1 is set" in msg and f"Run `loftup download {source}`" in msg
        assert msg.endswith(
            "or pass a local path instead: the folder save_pretrained wrote (model.safetensors "
            "+ config.json), load_upsampler('/path/to/folder') or `loftup upsample -m "
            "/path/to/folder`"
        )
    make_hf_cache(
        tmp_path / "hub", "someone/my-up", {"model.safetensors": folder / "model.safetensors"}
    )
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler("someone/my-up")
    assert (
        "file 'config.json' of hub repo 'someone/my-up' is not in the Hugging Face cache and "
        in str(e.value)
    )
    # what is no hub id is still a missing path, or an unknown name
    for path in ("someone/my-up.safetensors", "some one/my-up"):
        with pytest.raises(WeightsNotFoundError, match=f"^no such file or folder: {path}; "):
            load_upsampler(path)
    with pytest.raises(UnknownNameError, match="or the hub id ORG/NAME of one"):
        load_upsampler("my-up")


def test_download_an_upsampler_by_hub_id_then_upsample_offline_from_the_cli(
    tmp_path, local_hub, monkeypatch, capsys
):
    """`loftup download ORG/NAME` of a save_pretrained upsampler fetches its two files (it
    read them as a backbone's, whose alternatives happened to match), and `loftup upsample -m
    ORG/NAME` then runs offline from the cache with the backbone the record names."""
    from PIL import Image

    from loftup.cli import main

    _, folder, _ = _own_upsampler(tmp_path)
    files = {
        ("someone/my-up", n): (folder / n).read_bytes()
        for n in ("model.safetensors", "config.json")
    }
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    assert main(["download", "someone/my-up"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("someone/my-up: ") and line.endswith(
        "snapshots/89abcdef0123456789abcdef0123456789abcdef"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (40, 30), (200, 90, 30)).save(tmp_path / "im.png")
    args = [str(tmp_path / "im.png"), "--size", "28", "--device", "cpu"]
    assert main(["upsample", *args, "-m", "someone/my-up", "-o", str(tmp_path / "hub_out")]) == 0
    assert main(["upsample", *args, "-m", str(folder), "-o", str(tmp_path / "local_out")]) == 0
    got = torch.load(tmp_path / "hub_out" / "im.pt", weights_only=True)
    want = torch.load(tmp_path / "local_out" / "im.pt", weights_only=True)
    assert got.shape == (32, 28, 37) and torch.equal(got, want)
