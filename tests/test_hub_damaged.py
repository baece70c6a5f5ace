"""A damaged file in the Hugging Face cache (cut short, of bad weights, another checkpoint under a
released name): named, with the blob to delete or the download that fetches it again."""

from __future__ import annotations

import functools
import os

import pytest
import torch

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache, _own_upsampler, _use_mirror
from loftup import CheckpointError, LoftUp, WeightsNotFoundError, load_upsampler
from reference_files import REFERENCE_STATE


def test_a_truncated_backbone_safetensors_is_named(tmp_path, capsys):
    from loftup.cli import main
    from loftup.featurizers import get_featurizer

    folder = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=str(folder))
    assert str(e.value).startswith(f"{weights} is truncated or corrupt")
    assert "write the folder again with save_pretrained" in str(e.value)
    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    (tmp_path / "a.png").write_bytes(b"png")
    capsys.readouterr()  # transformers' bar while saving
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "up"), "-o"]
    args += [str(tmp_path / "o"), "--backbone", "dinov2_tiny", "--backbone-weights", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{weights} is truncated or corrupt" in err


def test_a_damaged_download_in_the_cache_says_to_delete_its_blob(tmp_path, monkeypatch):
    """A truncated file in the Hugging Face cache (a copied ~/.cache cut short) was answered
    with "re-download it" or "`loftup download NAME` fills the cache": that command finds the
    file cached and fetches nothing, and deleting the snapshot's link only relinks the damaged
    blob. The line names the blob to delete; once it is gone the file counts as missing."""
    from huggingface_hub import constants

    from loftup import get_featurizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tiny = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(tiny)
    cases = (
        ("haiwen/loftup-dinov2s", "pytorch_model.bin", REFERENCE_STATE, "loftup_dinov2s"),
        ("facebook/dinov2-small", "model.safetensors", tiny / "model.safetensors", "dinov2_vits14"),
    )
    for repo, filename, source, name in cases:
        snap = make_hf_cache(tmp_path / "hub", repo, {"config.json": tiny / "config.json"})
        blob = snap.parents[1] / "blobs" / "0123abcd"  # the hub's layout: a link to a blob
        blob.parent.mkdir()
        blob.write_bytes(source.read_bytes()[:500])
        (snap / filename).symlink_to(blob)
        load = functools.partial(
            load_upsampler if name.startswith("loftup") else get_featurizer, name
        )
        with pytest.raises(CheckpointError) as e:
            load()
        msg = str(e.value)
        assert f"damaged download in the Hugging Face cache: delete {blob} and run " in msg
        assert f"`loftup download {name}`" in msg and "\n" not in msg
        blob.unlink()  # as told: now missing, so `loftup download` would fetch it
        with pytest.raises(WeightsNotFoundError, match=f"'{filename}' of hub repo '{repo}' is not"):
            load()
    folder = tmp_path / "mine"  # a damaged file outside the cache: no word of the cache
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=folder)
    assert "Hugging Face cache: delete" not in str(e.value)


def test_download_fetches_a_damaged_cached_file_again(tmp_path, local_hub, monkeypatch):
    """`loftup download` found a cached file and said it had it, damaged or not (a copied
    cache cut short): it now checks what it finds and fetches a damaged copy again; offline it
    says the copy is damaged and which blob to delete."""
    import hashlib

    from loftup.hub import download

    good = REFERENCE_STATE.read_bytes()
    endpoint = local_hub({("haiwen/loftup-clip", "pytorch_model.bin"): good})
    commit = "89abcdef0123456789abcdef0123456789abcdef"  # the mirror's: the same snapshot
    repo = tmp_path / "hub" / "models--haiwen--loftup-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    blob = repo / "blobs" / hashlib.sha256(good).hexdigest()  # named by its ETag, as the hub's
    blob.write_bytes(good[:2000])
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "pytorch_model.bin").symlink_to(blob)
    _use_mirror(monkeypatch, endpoint, tmp_path / "hub", HF_HUB_OFFLINE="1")
    with pytest.raises(WeightsNotFoundError) as e:
        download("loftup_clip")
    msg = str(e.value)
    assert "the cached copy of file 'pytorch_model.bin' of hub repo 'haiwen/loftup-clip' is " in msg
    assert "is damaged (" in msg and "truncated" in msg and "HF_HUB_OFFLINE=1 is set" in msg
    assert f"delete {blob} and run `loftup download loftup_clip`" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert download("loftup_clip").read_bytes() == good
    assert load_upsampler(download("loftup_clip")).dim == 384  # and it loads (the reference state)


def test_a_released_name_whose_cached_file_is_another_checkpoint_is_refused(tmp_path, monkeypatch):
    """A file of another width cached under a released name (copied into the wrong repo's
    folder) loaded as that name, and failed only at its backbone ("expects 384-d features:
    pass the backbone it was trained with, clip_vitb16", which was the one passed)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": REFERENCE_STATE}
    )
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_clip")
    file = snap / "pytorch_model.bin"
    assert str(e.value) == (
        f"{file} holds a 384-d upsampler, but loftup_clip is 512-d (for clip_vitb16's "
        "features): it is another checkpoint's file; it is a damaged download in the Hugging "
        f"Face cache: delete {file} and run `loftup download loftup_clip` to fetch it again"
    )
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    assert load_upsampler("loftup_dinov2s").dim == 384  # its own width: loads


@pytest.mark.parametrize("bad", ["nan", "int"])
def test_a_released_names_cached_file_of_bad_weights_says_to_fetch_it_again(
    tmp_path, monkeypatch, bad
):
    """NaN or integer weights in the file cached under a released name were told to "use an
    earlier checkpoint" or to "pass the file save_pretrained wrote, or a released name" (it
    was one): the fix is the cached file's, deleted and downloaded again."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    state = torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] * float("nan") if bad == "nan" else state[key].long()
    torch.save(state, tmp_path / "bad.bin")
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": tmp_path / "bad.bin"}
    )
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    msg = str(e.value)
    said = "hold NaN or infinite values" if bad == "nan" else "is stored as torch.int64"
    assert msg.startswith("loftup_dinov2s: ") and said in msg and "\n" not in msg, msg
    blob = (snap / "pytorch_model.bin").resolve()
    assert msg.endswith(f"delete {blob} and run `loftup download loftup_dinov2s` to fetch it again")
    assert "earlier checkpoint" not in msg and "or a released name" not in msg


@pytest.mark.parametrize("cut", ["model.safetensors", "config.json"])
def test_an_upsampler_by_hub_id_cut_short_in_the_cache_says_which_blob_to_delete(
    tmp_path, monkeypatch, cut
):
    """A file of a hub id's upsampler cut short in the cache (an interrupted copy of the cache)
    was told the fix of a local folder ("write the folder again with save_pretrained"): it is
    the cached copy that must go, then `loftup download ORG/NAME` fetches it again."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    files[cut] = files[cut][:40]
    snap = make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/my-up")
    msg = str(e.value)
    assert msg.startswith(str(snap / cut)) and "\n" not in msg, msg
    assert msg.endswith(
        f"it is a damaged download in the Hugging Face cache: delete {snap / cut} and run "
        "`loftup download someone/my-up` to fetch it again"
    )


@pytest.mark.parametrize("revision", [None, "v1", "abcdef1"])
def test_a_ref_file_of_the_cache_that_holds_no_text_is_named_with_its_fix(
    tmp_path, monkeypatch, revision
):
    """The cache's refs/<branch> (the commit a branch, a tag or a hash's start names) holding
    bytes that are no text, a disk's damage: a load raised huggingface_hub's (or loftup's)
    bare UnicodeDecodeError, a traceback; it names the file and the fix. Offline, that is to
    write back the cached commit: its advice to delete the file left the cached files unfound
    ("not in the Hugging Face cache ... Run loftup download")."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    snap = make_hf_cache(tmp_path / "hub", "someone/up", files)
    ref = snap.parents[1] / "refs" / (revision or "main")
    ref.write_bytes(b"\xff\xfe\x00damaged")
    _offline_cache(monkeypatch, tmp_path / "hub")
    name = "someone/up" if revision is None else f"someone/up@{revision}"
    with pytest.raises(CheckpointError) as e:
        load_upsampler(name)
    assert str(e.value).startswith(
        f"{ref}, the Hugging Face cache's record of the commit that '{revision or 'main'}' of "
        "hub repo 'someone/up' names, is damaged (it holds no text, not a commit's hash): "
        f"write back the commit it named, {snap.name}, the only commit whose files the cache "
        f"holds (`printf %s {snap.name} > {ref}`); or delete it, and the next download "
    ), str(e.value)
    ref.write_text(snap.name)  # as printf writes it
    assert load_upsampler(name) is not None


def test_a_damaged_ref_of_a_repo_of_several_cached_commits_names_them_newest_first(
    tmp_path, monkeypatch
):
    """Two commits cached: the fix names both, newest first, and writes back the newest."""
    import os

    old = make_hf_cache(tmp_path / "hub", "someone/up", {"a.bin": b"old"})
    new = old.with_name("f" * 40)
    new.mkdir()
    os.utime(old, (0, 0))  # the older commit's folder
    ref = old.parents[1] / "refs" / "main"
    ref.write_bytes(b"")
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/up")
    assert (
        f"write back the commit it named, one of those whose files the cache holds, newest "
        f"first: {new.name}, {old.name} (`printf %s {new.name} > {ref}`)" in str(e.value)
    ), str(e.value)


@pytest.mark.parametrize(
    "held, said",
    [
        (b"", "nothing"),
        (b"\x00" * 40, repr("\x00" * 40)),
        (b"0123456789abcdef", "'0123456789abcdef'"),  # cut short
        (
            b"0123456789abcdef0123456789abcdef01234567\n",
            "'0123456789abcdef0123456789abcdef01234567\\n'",
        ),
    ],
    ids=["empty", "NUL bytes", "cut short", "a newline"],
)
def test_a_ref_file_that_holds_no_commit_hash_is_named_with_its_fix(
    tmp_path, monkeypatch, held, said
):
    """refs/main empty, of NUL bytes, a hash cut short or followed by a newline (all text):
    huggingface_hub's lookup finds no commit by it, and a load offline said the checkpoint
    was "not in the Hugging Face cache", its files there; the file is named as damaged."""
    from loftup.hub.remote import cached_path

    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": b"w"})
    ref = snap.parents[1] / "refs" / "main"
    ref.write_bytes(held)
    _offline_cache(monkeypatch, tmp_path / "hub")
    for load in (lambda: load_upsampler("loftup_clip"), lambda: cached_path("loftup_clip")):
        with pytest.raises(CheckpointError) as e:
            load()
        assert str(e.value).startswith(
            f"{ref}, the Hugging Face cache's record of the commit that 'main' of hub repo "
            f"'haiwen/loftup-clip' names, is damaged (it holds {said}, not a commit's hash): "
        ), str(e.value)


def test_a_deleted_blob_s_link_given_as_a_file_says_to_download_it_again(tmp_path, monkeypatch):
    """The damaged download's fix deletes its blob; the snapshot's file that `loftup info` and
    that fix print, given as the path, was then "no such file or folder... check the path":
    it is said, as its folder is, as a blob missing from the cache, with the released name."""
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": b"x"}, blobs=True
    )
    _offline_cache(monkeypatch, tmp_path / "hub")
    file = snap / "pytorch_model.bin"
    file.resolve().unlink()
    for source in (file, snap):
        with pytest.raises(WeightsNotFoundError) as e:
            load_upsampler(source)
        assert str(e.value) == (
            f"{file} is a link to {os.readlink(file)}, a blob missing from the Hugging Face "
            "cache (deleted, as a damaged download's fix says, or a cache cleaned in part): "
            "run `loftup download loftup_dinov2s` to fetch it again"
        )
