"""A commit of a hub repo of one's own given by the start of its hash (``ORG/NAME@a1b2c3d``, as
the hub's web page shows it): the cached snapshot whose commit begins with it, offline and
without asking the hub; two that do are said as such."""

from __future__ import annotations

import pytest
import torch

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache, _own_upsampler, _use_mirror
from loftup import WeightsNotFoundError, load_upsampler
from loftup.cli import main
from loftup.errors import UsageError

#: make_hf_cache's commit
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cached(tmp_path, names=("model.safetensors", "config.json")):
    """An upsampler of one's own cached as hub repo someone/up at COMMIT (``names``: its files
    the cache holds); (model, its case)."""
    model, folder, case = _own_upsampler(tmp_path)
    make_hf_cache(tmp_path / "hub", "someone/up", {n: (folder / n).read_bytes() for n in names})
    return model, case


@pytest.mark.parametrize("start", [COMMIT[:7], COMMIT[:12], COMMIT[:12].upper(), COMMIT.upper()])
def test_a_hash_start_loads_the_cached_commit_offline(tmp_path, monkeypatch, start):
    """`someone/up@0123456` was "not in the Hugging Face cache" offline, which holds the commit
    0123456789ab... (the cache knows a commit by its whole hash), and `loftup download` of it
    failed so."""
    model, (lr, image) = _cached(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with torch.no_grad():
        loaded = load_upsampler(f"someone/up@{start}")
        assert torch.equal(loaded(lr, image), model(lr, image))
    assert main(["download", f"someone/up@{start}"]) == 0


def test_a_hash_start_is_not_asked_of_the_hub_where_the_cache_has_its_commit(
    tmp_path, monkeypatch, local_hub
):
    """Online, the start was asked of the hub (this mirror knows commits by their whole hash,
    and answered that it has no such revision), though the cache held the commit."""
    model, (lr, image) = _cached(tmp_path)
    _use_mirror(monkeypatch, local_hub({}, commit=COMMIT), tmp_path / "hub")
    with torch.no_grad():
        assert torch.equal(load_upsampler(f"someone/up@{COMMIT[:7]}")(lr, image), model(lr, image))
    assert local_hub.requests == []


def test_a_missing_file_of_a_hash_starts_commit_is_said_of_the_whole_commit(tmp_path, monkeypatch):
    """The cache holds the commit's config.json alone: the error named `someone/up@0123456`
    missing both files, as though the commit were not cached at all; it names the commit
    whole, and the one file missing."""
    _cached(tmp_path, names=("config.json",))
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(f"someone/up@{COMMIT[:7]}")
    said = str(e.value)
    assert said.startswith(f"upsampler someone/up@{COMMIT[:7]} (no file or folder")
    assert (
        f"file 'model.safetensors' of hub repo 'someone/up@{COMMIT}' is not in the Hugging Face "
        "cache and HF_HUB_OFFLINE=1 is set" in said
    )
    assert "config.json', which it needs too" not in said
    # another machine's cache lacks the commit, and the hub refuses its start
    assert f"Run `loftup download someone/up@{COMMIT}` on a machine with network" in said


def test_a_download_of_a_hash_start_that_cannot_reach_the_hub_names_the_commit_whole(
    tmp_path, monkeypatch
):
    """`loftup download someone/up@0123456`, whose commit the cache holds without its
    config.json, with the hub out of reach: it said to run the same command on a machine
    with network, whose cache lacks the commit, and whose hub refuses the start."""
    import socket

    from loftup.downloads import download_names
    from loftup.hub import reach

    _cached(tmp_path, names=("model.safetensors",))
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setattr(reach, "REACHABLE", {})
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # nothing listens there
        _use_mirror(monkeypatch, f"http://127.0.0.1:{closed.getsockname()[1]}", tmp_path / "hub")
        with pytest.raises(WeightsNotFoundError) as e:
            list(download_names([f"someone/up@{COMMIT[:7]}"]))
    said = str(e.value)
    assert "the Hugging Face hub cannot be reached" in said
    assert f"Run `loftup download someone/up@{COMMIT}` on a machine with network" in said


@pytest.mark.parametrize("how", ["load", "download"])
def test_an_uncached_hash_start_offline_says_to_give_the_whole_hash(
    tmp_path, monkeypatch, capsys, how
):
    """No cached commit begins with the start: offline, the error said only to run `loftup
    download someone/up@abcdef1` elsewhere (or unset HF_HUB_OFFLINE), which the hub refuses
    (it looks a commit up by its whole hash); it says to give the whole hash, as the hub's
    refusal does online."""
    _cached(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    if how == "load":
        with pytest.raises(WeightsNotFoundError) as e:
            load_upsampler("someone/up@abcdef1")
        said = str(e.value)
        assert "Run `loftup download someone/up@abcdef1` on a machine with network" in said
    else:
        assert main(["download", "someone/up@abcdef1"]) == 2
        said = capsys.readouterr().err
        assert "`env -u HF_HUB_OFFLINE loftup download someone/up@abcdef1`" in said
    assert "where 'abcdef1' is the start of a commit's hash, give the whole hash (40 hex" in said


def test_a_hash_start_of_two_cached_commits_is_said_ambiguous(tmp_path, monkeypatch):
    """Two cached commits begin with the start given: it names both, in full, and asks for
    more of the hash, rather than loading either."""
    _cached(tmp_path)
    other = COMMIT[:7] + "f" * 33
    snapshots = tmp_path / "hub" / "models--someone--up" / "snapshots"
    (snapshots / COMMIT).rename(snapshots / other)
    _cached(tmp_path)  # COMMIT again
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(UsageError) as e:
        load_upsampler(f"someone/up@{COMMIT[:7]}")
    assert str(e.value) == (
        f"revision '{COMMIT[:7]}' of hub repo 'someone/up' is ambiguous: the Hugging Face cache "
        f"holds 2 commits that begin with it ({COMMIT}, {other}); give more of the hash "
        f"(someone/up@{COMMIT}, say)"
    )
    assert load_upsampler(f"someone/up@{other[:8]}") is not None  # one more digit decides


@pytest.mark.parametrize("revision", [COMMIT[:7], "20240115"])
def test_a_hash_start_the_hub_does_not_know_asks_for_the_whole_hash(
    tmp_path, monkeypatch, local_hub, revision
):
    """Not cached, the start is asked of the hub, which looks a commit up by its whole hash
    and answers that it has no such revision: the error said only to check the revision, as
    for a misspelt branch; it says to give the whole hash. Hex digits may be a misspelt tag
    too (a date): that said only to give the whole hash; both are said."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    _use_mirror(monkeypatch, local_hub(files, commit=COMMIT), tmp_path / "hub")
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(f"someone/up@{revision}")
    said = str(e.value)
    assert f"Hub repo 'someone/up' has no branch, tag or commit '{revision}': where it is " in said
    assert "give the whole hash (40 hex digits" in said
    assert "; else check the revision (someone/up alone is its main branch)" in said
    assert ", give the whole hash" not in said.split("; else check the revision")[1]  # once
    assert load_upsampler(f"someone/up@{COMMIT}") is not None  # as it says


def test_a_branch_named_like_a_hash_start_wins_over_the_commit(tmp_path, monkeypatch):
    """A branch or tag the cache knows by a name of hex digits is that branch, as in git, not
    the cached commit whose hash begins so."""
    model, (lr, image) = _cached(tmp_path)  # at COMMIT, which the branch names
    other = "deadbee" + "0" * 33
    _, folder, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    snap = make_hf_cache(tmp_path / "hub", "someone/up", {})
    for name in ("model.safetensors", "config.json"):
        (snap.parent / other).mkdir(exist_ok=True)
        (snap.parent / other / name).write_bytes((folder / name).read_bytes())
    (snap.parent.parent / "refs" / "deadbee").write_text(COMMIT)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/up@deadbee")(lr, image), model(lr, image))
        assert load_upsampler("someone/up@deadbee0").config.num_heads == 4  # no branch so named


def test_print_config_reads_the_architecture_of_a_hash_starts_cached_commit(
    tmp_path, monkeypatch, capsys
):
    """`loftup train --print-config stage=2 init=someone/up@0123456` looked the config up in
    the cache at the start of the hash, found none and printed this config's model keys under
    a comment saying they are not init's."""
    _cached(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    argv = ["train", "--config", "stage2_cpu", "--print-config", f"log.out_dir={tmp_path}"]
    assert main([*argv, f"init=someone/up@{COMMIT[:7]}"]) == 0
    printed = capsys.readouterr().out
    assert "not read here" not in printed
    assert "dim: 32" in printed and "num_heads: 2" in printed


def test_a_tag_of_hex_digits_the_cache_knows_is_not_said_a_hash_start(
    tmp_path, monkeypatch, capsys
):
    """A tag named 20240115 that the cache knows (refs/20240115), its weights not cached:
    offline, the error said "where '20240115' is the start of a commit's hash, give the whole
    hash", of a name the cache holds as a tag."""
    _cached(tmp_path, names=("config.json",))
    (tmp_path / "hub" / "models--someone--up" / "refs" / "20240115").write_text(COMMIT)
    _offline_cache(monkeypatch, tmp_path / "hub")
    assert main(["download", "someone/up@20240115"]) == 2
    said = capsys.readouterr().err
    assert "`env -u HF_HUB_OFFLINE loftup download someone/up@20240115`" in said, said
    assert "start of a commit's hash" not in said, said


@pytest.fixture
def cache_looks(monkeypatch):
    """The ref files read (Path.read_bytes) and snapshot folders listed (Path.iterdir) of the
    Hugging Face cache, in order."""
    from pathlib import Path

    looks, read, listing = [], Path.read_bytes, Path.iterdir
    monkeypatch.setattr(Path, "read_bytes", lambda p: looks.append(p) or read(p))
    monkeypatch.setattr(Path, "iterdir", lambda p: looks.append(p) or listing(p))
    return lambda: [p for p in looks if p.parent.name == "refs" or p.name == "snapshots"]


def test_a_whole_hash_is_taken_as_it_is_without_reading_the_cache(
    tmp_path, monkeypatch, cache_looks
):
    """A whole hash read the cache's refs/<hash> and listed its snapshots (the start's rule
    took 7 to 40 hex digits), to give back the hash it was given; a start is still looked up."""
    from loftup.hub.commits import full_commit

    _cached(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    assert full_commit("someone/up", COMMIT) == COMMIT
    assert cache_looks() == []
    assert full_commit("someone/up", COMMIT[:7]) == COMMIT and cache_looks() != []


def test_an_offline_load_of_a_hash_start_looks_it_up_once(tmp_path, monkeypatch, cache_looks):
    """One offline load of `someone/up@0123456` expanded the revision five times (the load,
    the config's folder and file, the weights' folder and file): refs/0123456 read, then
    refs/<commit> four times, and snapshots/ listed five times. Now the start once: the
    folders take the whole hash as it is, and the files trust it."""
    model, (lr, image) = _cached(tmp_path)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with torch.no_grad():
        assert torch.equal(load_upsampler(f"someone/up@{COMMIT[:7]}")(lr, image), model(lr, image))
    refs = tmp_path / "hub" / "models--someone--up" / "refs"
    assert cache_looks() == [refs / COMMIT[:7], refs.parent / "snapshots"]
