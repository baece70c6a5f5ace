"""Hub repos whose files the cache holds in part, or damaged: each repo's folder is one
commit's, and the fix for a damaged file fetches the repo it came from (here from a local
mirror, :func:`conftest.local_hub`)."""

from __future__ import annotations

import pytest
import torch

from hub_builders import make_hf_cache
from hub_helpers import _use_mirror
from loftup.featurizers import get_featurizer

OLD, NEW = "0123456789abcdef0123456789abcdef01234567", "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def tiny_backbone(tmp_path) -> dict[str, bytes]:
    """A backbone's files in the Hugging Face layout: {name: bytes}."""
    folder = tmp_path / "bb"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_file_cached_at_an_older_commit_is_fetched_again_beside_the_new_ones(
    tmp_path, monkeypatch, local_hub, tiny_backbone
):
    """The cache holds a backbone repo's config.json alone, at the commit main was at then;
    main has moved since. The weights come from the new commit and config.json is fetched
    again beside them: the backbone loads, and loads offline after (the folder was the old
    commit's, without weights, and the cache then had main at a commit without config.json)."""
    make_hf_cache(tmp_path / "hub", "someone/bb", {"config.json": tiny_backbone["config.json"]})
    files = {("someone/bb", n): data for n, data in tiny_backbone.items()}
    _use_mirror(monkeypatch, local_hub(files, commit=NEW), tmp_path / "hub")
    x = torch.linspace(-1, 1, 3 * 28 * 28).reshape(1, 3, 28, 28)
    with torch.no_grad():
        want = get_featurizer("dinov2_tiny")(x)
        assert torch.equal(get_featurizer("dinov2_tiny", weights="someone/bb")(x), want)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert torch.equal(get_featurizer("dinov2_tiny", weights="someone/bb")(x), want)
    snap = tmp_path / "hub" / "models--someone--bb" / "snapshots" / NEW
    assert sorted(p.name for p in snap.iterdir()) == sorted(tiny_backbone)


def test_a_file_that_cannot_be_fetched_again_at_the_others_commit_is_said_so(
    tmp_path, monkeypatch, local_hub, tiny_backbone
):
    """Where fetching the older commit's config.json again at the new commit fails (the hub's
    500), the error said it was not in the cache, of repo 'someone/bb@89abcdef...': it is
    cached, and that hash was never the user's."""
    from loftup.errors import WeightsNotFoundError

    make_hf_cache(tmp_path / "hub", "someone/bb", {"config.json": tiny_backbone["config.json"]})
    files = {("someone/bb", n): data for n, data in tiny_backbone.items()}
    failing = (("someone/bb", "config.json"),)
    _use_mirror(monkeypatch, local_hub(files, commit=NEW, failing=failing), tmp_path / "hub")
    with pytest.raises(WeightsNotFoundError) as e:
        get_featurizer("dinov2_tiny", weights="someone/bb")
    said = str(e.value)
    assert (
        "file 'config.json' of hub repo 'someone/bb' is cached at another commit than the "
        f"repo's other files, and could not be fetched again at theirs (at commit {NEW[:12]}, what "
        "'main' names now): the download failed (" in said
    )
    assert "Run `loftup download someone/bb` again later" in said and f"@{NEW}" not in said


def test_a_damaged_file_of_a_backbone_repo_of_ones_own_is_fetched_from_that_repo(
    tmp_path, monkeypatch, local_hub, tiny_backbone
):
    """A cut model.safetensors in the cache's copy of the backbone repo passed as weights: the
    fix names that repo's download (`loftup download dinov2_tiny` fetched the official repo,
    leaving this one damaged); followed, the backbone loads."""
    from loftup.cli import main
    from loftup.errors import CheckpointError

    cut = {**tiny_backbone, "model.safetensors": tiny_backbone["model.safetensors"][:-100]}
    make_hf_cache(tmp_path / "hub", "someone/bb", cut)
    files = {("someone/bb", n): data for n, data in tiny_backbone.items()}
    _use_mirror(monkeypatch, local_hub(files, commit=OLD), tmp_path / "hub")
    with pytest.raises(CheckpointError) as caught:
        get_featurizer("dinov2_tiny", weights="someone/bb")
    said = str(caught.value)
    blob = tmp_path / "hub" / "models--someone--bb" / "snapshots" / OLD / "model.safetensors"
    assert said.endswith(f"delete {blob} and run `loftup download someone/bb` to fetch it again")
    blob.unlink()
    assert main(["download", "someone/bb"]) == 0
    x = torch.linspace(-1, 1, 3 * 28 * 28).reshape(1, 3, 28, 28)
    with torch.no_grad():
        want = get_featurizer("dinov2_tiny")(x)
        assert torch.equal(get_featurizer("dinov2_tiny", weights="someone/bb")(x), want)


def _flipped(data: bytes) -> bytes:
    """``data`` with one byte of its last tensor's values changed: the same length, so the
    safetensors header still reads."""
    changed = bytearray(data)
    changed[-40] ^= 0x55
    return bytes(changed)


def test_weights_changed_in_place_are_said_damaged(tmp_path):
    """A byte changed in save_pretrained's weights (a bad disk or copy) loaded as though
    nothing were wrong: the digest its header records is compared with the weights read."""
    from loftup import CheckpointError, LoftUp, load_upsampler

    folder = LoftUp(dim=8, num_heads=2, n_freqs=2).save_pretrained(tmp_path / "saved")
    weights = folder / "model.safetensors"
    weights.write_bytes(_flipped(weights.read_bytes()))
    for source in (folder, weights):
        with pytest.raises(CheckpointError, match=r"model\.safetensors is damaged: its weights"):
            load_upsampler(source)
    (folder / "config.json").unlink()  # the header's record alone
    with pytest.raises(CheckpointError, match=r"model\.safetensors is damaged: its weights"):
        load_upsampler(folder)


def test_a_downloaded_file_changed_since_is_fetched_again(tmp_path, monkeypatch, local_hub):
    """A cached blob (named by its sha256) whose bytes changed since the download, its length
    the same: the load names the blob to delete and the download; `loftup download` alone
    fetches it again (it kept the changed copy, whose header reads)."""
    import hashlib
    import os

    from loftup import CheckpointError, LoftUp, load_upsampler
    from loftup.cli import main

    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    folder = model.save_pretrained(tmp_path / "saved")
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    snap = make_hf_cache(tmp_path / "hub", "someone/up", {"config.json": files["config.json"]})
    blob = snap.parent.parent / "blobs" / hashlib.sha256(files["model.safetensors"]).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(_flipped(files["model.safetensors"]))
    os.symlink(os.path.relpath(blob, snap), snap / "model.safetensors")
    mirror = {("someone/up", n): data for n, data in files.items()}
    _use_mirror(monkeypatch, local_hub(mirror, commit=OLD), tmp_path / "hub", HF_HUB_OFFLINE="1")
    with pytest.raises(CheckpointError) as caught:
        load_upsampler("someone/up")
    assert f"delete {blob} and run `loftup download someone/up`" in str(caught.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert main(["download", "someone/up"]) == 0
    assert blob.read_bytes() == files["model.safetensors"]
    lr, image = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/up")(lr, image), model(lr, image))


def test_a_backbone_snapshot_copied_without_its_blobs_is_said_so(tmp_path, tiny_backbone):
    """A backbone's folder whose files link to nothing (`cp -r` of a cache snapshot) was said to
    have no config.json, as though a file were missing from the repo."""
    import shutil

    from loftup.errors import WeightsNotFoundError

    snap = make_hf_cache(tmp_path / "hub", "someone/bb", {})
    (snap.parent.parent / "blobs").mkdir()
    for name, data in tiny_backbone.items():
        (snap.parent.parent / "blobs" / name).write_bytes(data)
        (snap / name).symlink_to(f"../../blobs/{name}")
    shutil.copytree(snap, tmp_path / "copied", symlinks=True)  # cp -r
    with pytest.raises(WeightsNotFoundError, match=r"copied without the blobs .* `cp -rL`"):
        get_featurizer("dinov2_tiny", weights=str(tmp_path / "copied"))


def test_a_sharded_repo_resharded_since_its_index_was_cached_gives_the_new_shards(
    tmp_path, monkeypatch, local_hub
):
    """The cache holds a repo's shard index and its first shard at commit OLD (two shards);
    the owner has resharded it into three at NEW since. config.json, not cached, comes from NEW
    after the index, so the folder is NEW's: its index is fetched again there, and the shards
    it names with it (the old index's were asked for, at NEW, where the hub has none of them)."""
    import json

    from loftup.hub.commits import hub_folder

    def index(n: int) -> bytes:
        names = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
        return json.dumps({"weight_map": {f"w{i}": name for i, name in enumerate(names)}}).encode()

    old_shard = "model-00001-of-00002.safetensors"
    cached = {"model.safetensors.index.json": index(2), old_shard: b"old"}
    make_hf_cache(tmp_path / "hub", "someone/sharded", cached)
    new = {"config.json": b"{}", "model.safetensors.index.json": index(3)}
    new |= {f"model-{i:05d}-of-00003.safetensors": b"new%d" % i for i in (1, 2, 3)}
    files = {("someone/sharded", n): data for n, data in new.items()}
    _use_mirror(monkeypatch, local_hub(files, commit=NEW), tmp_path / "hub")
    folder = hub_folder(
        "someone/sharded", ["model.safetensors", "config.json"], what="x", local_hint="a folder"
    )
    assert folder.name == NEW
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == new


CASES = ["online", "offline", "gone", "downloading", "damaged", "their_commit"]


@pytest.mark.parametrize("case", CASES)
def test_a_shard_that_cannot_be_had_names_the_repo_as_the_user_did(
    tmp_path, monkeypatch, local_hub, case
):
    """The shards an index names are fetched at the index's commit: one the hub lacks (or, offline,
    one not cached) was said of hub repo 'someone/sharded@<40 hex digits>', a revision the user
    never gave. It is said of 'someone/sharded', with the commit (12 digits) and the branch
    that names it: for `loftup download` offline and a damaged shard too. A commit the user
    named is theirs ("what '0123...' names now" was said of it). A commit the hub no longer has
    (a force-push; "no branch, tag or commit None" was said) is the cache's stale ref: the fix
    given, followed, fetches what main names now."""
    import json

    from safetensors.torch import save

    from loftup.errors import WeightsNotFoundError
    from loftup.hub.commits import hub_folder

    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    index = json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}).encode()
    one = b"one" if case == "damaged" else save({"a": torch.zeros(2)})
    repo = {"config.json": b"{}", "model.safetensors.index.json": index, shards[0]: one}
    commit = NEW if case == "online" else OLD  # the mirror's, or make_hf_cache's
    kw = {"what": "x", "local_hint": "a", "downloading": case in ("downloading", "damaged")}
    kw |= {"revision": OLD} if case == "their_commit" else {}
    if case in ("online", "gone"):
        files = {("someone/sharded", n): data for n, data in repo.items()}
        files |= {("someone/sharded", shards[1]): b"two"} if case == "gone" else {}
        _use_mirror(monkeypatch, local_hub(files, commit=NEW), tmp_path / "hub")
    else:
        _use_mirror(monkeypatch, "http://127.0.0.1:9", tmp_path / "hub", HF_HUB_OFFLINE="1")
    if case != "online":
        make_hf_cache(tmp_path / "hub", "someone/sharded", repo)
    with pytest.raises(WeightsNotFoundError) as e:
        hub_folder("someone/sharded", ["model.safetensors", "config.json"], **kw)
    said = str(e.value)
    at = f"of hub repo 'someone/sharded' (at commit {commit[:12]}, what 'main' names now) "
    start = {
        "downloading": f"x: cannot download file {shards[1]!r} {at[:-1]}: HF_HUB_OFFLINE=1",
        "damaged": f"x: the cached copy of file {shards[0]!r} {at}is damaged",
        "their_commit": f"x: file {shards[1]!r} of hub repo 'someone/sharded@{OLD}' is not in the",
    }.get(case, f"x: file {shards[1]!r} {at}is not in the Hugging Face cache and ")
    assert said.startswith(start)
    if case != "damaged":  # which names the cached file's path
        assert said.count(commit) == (case == "their_commit")  # nor "at '<commit>'"
    assert "names now" not in said if case == "their_commit" else True
    if case == "gone":
        ref = tmp_path / "hub" / "models--someone--sharded" / "refs" / "main"
        assert (
            f"Commit {OLD[:12]}, which the Hugging Face cache's 'main' names, is no longer on "
            f"the hub (its history was rewritten): delete {ref} and run `loftup download x` to "
            "fetch what 'main' names now, or pass" in said
        )
        ref.unlink()
        folder = hub_folder("someone/sharded", ["model.safetensors", "config.json"], **kw)
        assert folder.name == NEW and (folder / shards[1]).read_bytes() == b"two"
