"""A Hugging Face cache this user may not search: its own folder (mode 644, or 600: listed,
not searched), a folder above it (the cache not made yet too), or one repo's folder in a
shared cache (another user's download, with umask 077). ``loftup info`` said "cached: no" for
what it never looked at; it lists every checkpoint, marks ``?`` those it cannot check and says
why on one warning line, status 0. Loading names the folder and the variable that sets the
cache (HF_HUB_CACHE where it is set: HF_HOME is then not read). The ``unsearchable`` fixture
(conftest) refuses such folders as root too."""

from __future__ import annotations

import json

import pytest

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache
from loftup.errors import PathPermissionError
from test_unsearchable_inputs import _refused
from test_unsearchable_paths import _says_why

REPOS = ("haiwen/loftup-dinov2s", "haiwen/loftup-clip")
#: Their backbones' hub repos, whose files an offline run reads too
BACKBONE_REPOS = ("facebook/dinov2-small", "openai/clip-vit-base-patch16")


def _cache(hub) -> None:
    """A Hugging Face cache ``hub`` holding loftup_dinov2s and loftup_clip, and their backbones'
    files."""
    for repo in REPOS:
        make_hf_cache(hub, repo, {"pytorch_model.bin": b"weights"})
    for repo in BACKBONE_REPOS:
        make_hf_cache(hub, repo, {"config.json": b"{}", "model.safetensors": b"weights"})


def _read_by(monkeypatch, hub) -> None:
    """This process reads the cache ``hub``, as HF_HUB_CACHE set to it makes it."""
    _offline_cache(monkeypatch, hub)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))


def _info(tmp_path, capsys) -> tuple[dict, dict, str]:
    """``loftup info --json``: the cached column by name, the JSON rows by name, stderr."""
    from loftup.cli import main

    assert main(["info", "--json", str(tmp_path / "info.json")]) == 0
    out, err = capsys.readouterr()
    column = {ln.split()[0]: ln.split()[4] for ln in out.splitlines() if ln.startswith("loftup_")}
    rows = json.loads((tmp_path / "info.json").read_text())
    assert "Traceback" not in err
    return column, {r["name"]: r for r in rows}, err


def test_info_lists_every_checkpoint_of_a_cache_this_user_may_not_search(
    tmp_path, unsearchable, monkeypatch, capsys
):
    """Such a cache, or one in such a folder, made or not yet: every row ``?`` (``cached``
    null in the JSON), and one warning naming the folder and the fix; it was "no" for every
    checkpoint, the cached ones too, and then one error line and no table (status 2)."""
    import loftup
    from loftup.hub import RELEASED

    secret, cache = tmp_path / "secret", tmp_path / "own" / "hub"
    for hub in (secret / "hub", cache):
        _cache(hub)
    unsearchable(secret)
    unsearchable(cache)
    for hub, folder in ((cache, cache), (secret / "hub", secret), (secret / "new", secret)):
        _read_by(monkeypatch, hub)
        column, rows, err = _info(tmp_path, capsys)
        assert list(column) == list(rows) == list(RELEASED)
        assert set(column.values()) == {"?"}, column
        assert all(r["cached"] is None and r["path"] is None for r in rows.values()), rows
        assert len(err.splitlines()) == 1, err
        assert err.startswith("warning: cannot tell whether any of them is cached (?): "), err
        _says_why(err, folder)
        assert "or set HF_HUB_CACHE to a folder of this user's" in err, err
        _says_why(rows["loftup_clip"]["unchecked"], folder)
        _refused(lambda: loftup.load_upsampler("loftup_dinov2s"), folder)


def _info_without(repo_id, tmp_path, unsearchable, monkeypatch, capsys):
    """The cache with the folder of ``repo_id`` (``ORG--NAME``) unsearchable, as this user
    reads it, and ``loftup info``'s column, rows and stderr there."""
    hub = tmp_path / "hub"
    _cache(hub)
    repo = hub / f"models--{repo_id}"
    unsearchable(repo)
    _read_by(monkeypatch, hub)
    return repo, _info(tmp_path, capsys)


def test_a_repo_folder_of_another_user_in_a_shared_cache(
    tmp_path, unsearchable, monkeypatch, capsys
):
    """One repo's folder this user may not search, in a cache they may: its checkpoint was
    "no" in ``loftup info`` and "not in the Hugging Face cache ... Run loftup download" on
    loading (the cache's folder was looked at, not the repo's); the other rows are as
    they were."""
    import loftup

    repo, (column, rows, err) = _info_without(
        "haiwen--loftup-dinov2s", tmp_path, unsearchable, monkeypatch, capsys
    )
    assert column["loftup_dinov2s"] == "?" and rows["loftup_dinov2s"]["cached"] is None
    assert column["loftup_clip"] == "yes" and rows["loftup_clip"]["cached"] is True
    assert column["loftup_siglip"] == "no" and rows["loftup_siglip"]["cached"] is False
    assert rows["loftup_clip"]["unchecked"] is None
    assert len(err.splitlines()) == 1, err
    assert err.startswith("warning: cannot tell whether loftup_dinov2s is cached (?): "), err
    _says_why(err, repo)
    _refused(lambda: loftup.load_upsampler("loftup_dinov2s"), repo)


def test_a_backbone_s_repo_folder_of_another_user_in_a_shared_cache(
    tmp_path, unsearchable, monkeypatch, capsys
):
    """The backbone's folder this user may not search: its upsampler's row is ``?`` (not "yes"
    for the upsampler alone, nor "upsampler only"), said why as the backbone's load says it."""
    from loftup.featurizers.hf_weights import find_weights

    repo, (column, rows, err) = _info_without(
        "openai--clip-vit-base-patch16", tmp_path, unsearchable, monkeypatch, capsys
    )
    clip = rows["loftup_clip"]
    assert column["loftup_clip"] == "?" and clip["cached"] is clip["backbone_cached"] is None
    assert clip["upsampler_cached"] is True and column["loftup_dinov2s"] == "yes"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("warning: cannot tell whether loftup_clip is cached (?): "), err
    _says_why(err, repo)
    _refused(lambda: find_weights("clip_vitb16"), repo)


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"])
def test_the_fix_names_the_variable_that_sets_the_cache(
    tmp_path, unsearchable, monkeypatch, variable
):
    """HF_HUB_CACHE (or the older HUGGINGFACE_HUB_CACHE) overrides HF_HOME: where one is set,
    "set HF_HOME to a folder of this user's" changed nothing."""
    import loftup

    home = tmp_path / "secret" / "hf"
    _cache(home / "hub")
    unsearchable(tmp_path / "secret")
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    _offline_cache(monkeypatch, home / "hub")  # what the variable set
    monkeypatch.setenv(variable, str(home if variable == "HF_HOME" else home / "hub"))
    with pytest.raises(PathPermissionError) as caught:
        loftup.load_upsampler("loftup_dinov2s")
    said = str(caught.value)
    _says_why(said, tmp_path / "secret")
    assert said.endswith(f" or set {variable} to a folder of this user's"), said


def test_a_damaged_ref_file_leaves_the_list_whole(tmp_path, monkeypatch, capsys):
    """One repo's refs/main damaged (bytes that are no commit hash): ``loftup info`` said only
    the error naming it (status 2) and no table; that row is ``?``, the warning line says why
    and its fix, and the other rows are as they were."""
    hub = tmp_path / "hub"
    _cache(hub)
    ref = hub / "models--haiwen--loftup-clip" / "refs" / "main"
    ref.write_bytes(b"\xff\xfe\x00garbage")
    _read_by(monkeypatch, hub)
    column, rows, err = _info(tmp_path, capsys)
    assert column["loftup_clip"] == "?" and rows["loftup_clip"]["cached"] is None
    assert column["loftup_dinov2s"] == "yes" and rows["loftup_dinov2s"]["cached"] is True
    assert column["loftup_siglip"] == "no" and rows["loftup_siglip"]["cached"] is False
    assert len(err.splitlines()) == 1, err
    assert err.startswith("warning: cannot tell whether loftup_clip is cached (?): "), err
    assert f"{ref}, the Hugging Face cache's record of the commit" in err, err
    assert f"{ref}, " in rows["loftup_clip"]["unchecked"]
