"""``loftup.downloads.download_names``: which names fetch what, in which order (the fetching
itself, over the network, is test_hub_mirror.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

import loftup.featurizers.hf
import loftup.hub
from loftup.downloads import download_names
from loftup.errors import UnknownNameError, UsageError


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The names fetched, in order: the hub's downloads stand in by a path named after each."""
    calls: list[str] = []

    def fetch(name):
        calls.append(name)
        return Path("/cache") / name

    monkeypatch.setattr(loftup.hub, "download", fetch)
    monkeypatch.setattr(loftup.featurizers.hf, "download", fetch)
    return calls


def test_an_upsampler_brings_its_backbone_and_the_names_before_a_bad_one_are_fetched(fetched):
    names = download_names(["loftup-dinov2s", "dinov2_vitb14", "./weights"])
    assert next(names) == ("loftup_dinov2s", Path("/cache/loftup_dinov2s"))  # alias resolved
    assert next(names) == ("dinov2_vits14", Path("/cache/dinov2_vits14"))
    assert next(names) == ("dinov2_vitb14", Path("/cache/dinov2_vitb14"))
    with pytest.raises(UsageError, match="'./weights' is a local path: it needs no download"):
        next(names)
    assert fetched == ["loftup_dinov2s", "dinov2_vits14", "dinov2_vitb14"]


def test_without_backbones_and_all(fetched):
    assert [n for n, _ in download_names(["all"], backbones=False)] == list(loftup.hub.RELEASED)
    assert fetched == list(loftup.hub.RELEASED)


def test_all_given_twice_is_all(fetched):
    # it said "'all' goes on its own, not with : run ..." (no other name to list)
    assert [n for n, _ in download_names(["all", "all"], backbones=False)] == list(
        loftup.hub.RELEASED
    )


def test_all_with_other_names_says_all_goes_alone(fetched):
    # it said "unknown name 'all'" after fetching the names before it
    with pytest.raises(
        UsageError, match="'all' goes on its own .*not with 'dinov2_vits14', 'nonexist'"
    ) as e:
        list(download_names(["dinov2_vits14", "all", "nonexist"]))
    assert "unknown name" not in str(e.value)
    assert fetched == []


def test_an_unknown_name_lists_what_is_known(fetched):
    with pytest.raises(
        UnknownNameError, match="neither a released upsampler .*loftup_dinov2s"
    ) as e:
        list(download_names(["nonesuch"]))
    # a hub id is any backbone's repo or SAM's, not SAM's alone (it was "nor SAM (... or a hub
    # id ORG/NAME)")
    assert str(e.value).endswith(
        "SAM (sam_vit_base, sam_vit_large, sam_vit_huge) nor a hub id ORG/NAME (an upsampler's "
        "or a backbone's of your own, or SAM's)"
    )
    assert fetched == []


@pytest.mark.parametrize("name", ["loftup_dinov2s@v1", "dinov2_vits14@main", "sam_vit_base@v2"])
def test_a_revision_of_a_registered_name_says_revisions_are_for_hub_ids(fetched, name):
    """It said "unknown name 'loftup_dinov2s@v1'", as if the name were mistyped."""
    base = name.split("@")[0]
    with pytest.raises(UsageError, match=f"{base} is a registered name, whose files are fixed"):
        list(download_names([name]))
    assert fetched == []
    if base == "loftup_dinov2s":  # and a load says the same
        with pytest.raises(UsageError, match=f"pass {base} without @REV"):
            loftup.load_upsampler(name)


def test_a_hub_id_of_a_released_upsampler_or_backbone_is_fetched_as_its_name(fetched):
    """A backbone's or upsampler's hub id was taken for SAM weights ("SAM (facebook/...)" in
    its messages, and no backbone fetched with an upsampler)."""
    names = ["haiwen/loftup-siglip2", "google/siglip-base-patch16-224"]
    assert [n for n, _ in download_names(names)] == [
        "loftup_siglip2",
        "siglip2_vitb16",
        "siglip_vitb16",
    ]
    assert fetched == ["loftup_siglip2", "siglip2_vitb16", "siglip_vitb16"]


def test_an_upsamplers_hub_id_at_a_revision_is_fetched_and_a_backbones_is_refused(
    tmp_path, monkeypatch
):
    """``ORG/NAME@REVISION`` names an upsampler's repo at a branch, tag or commit (what
    ``load_upsampler`` reads); a backbone's weights load from the main branch only, so a
    revision of one is refused, naming the download that serves."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache
    from loftup import LoftUp

    folder = LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    files = {n: folder / n for n in ("model.safetensors", "config.json")}
    snap = make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    (snap.parents[1] / "refs" / "v1").write_text(snap.name)  # a tag of the same commit
    bb = make_hf_cache(tmp_path / "hub", "someone/bb", {"config.json": b'{"model_type": "dinov2"}'})
    (bb.parents[1] / "refs" / "v1").write_text(bb.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what the cache holds is all there is
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert list(download_names(["someone/my-up@v1"])) == [("someone/my-up@v1", snap)]
    with pytest.raises(UsageError) as e:
        list(download_names(["someone/bb@v1"]))
    assert str(e.value) == (
        "someone/bb@v1: a revision is for an upsampler's hub repo (save_pretrained's files), "
        "and someone/bb holds a 'dinov2' model; download it as `loftup download someone/bb`"
    )


@pytest.mark.parametrize(
    "name, why",
    [
        ("someone/my-up@", "no revision after '@'"),
        ("some one/x", "Repo id must use alphanumeric chars"),  # huggingface_hub's words
        ("someone/up.safetensors", "a weights file's name"),
        # a revision with '/' after a name without ORG/ was "a weights file's name"
        ("my-up@v1/x", "no ORG/ before the name"),
        ("dinov2_vits14@x/y", "no ORG/ before the name"),
    ],
)
def test_a_name_written_as_a_hub_id_but_none_says_why(fetched, name, why):
    """It was huggingface_hub's HFValidationError, a traceback from the API (the command line
    said the characters were wrong where the revision after '@' was missing), said as the
    command line says it."""
    with pytest.raises(UsageError) as e:
        list(download_names(["dinov2_vits14", name]))
    assert str(e.value).startswith(f"no hub id ORG/NAME: {why}")
    assert str(e.value).endswith(
        f": {name!r} (nor a file or folder here); check the name or the path"
    )
    assert str(e.value).count(repr(name)) == 1 and "\n" not in str(e.value)
    assert fetched == ["dinov2_vits14"]


def test_a_folder_here_is_a_local_path_whatever_its_name(fetched, tmp_path, monkeypatch):
    """'my runs/up' (a folder here) was said to be neither a hub id nor a folder that exists,
    and 'runs/up' was fetched as hub repo runs/up, where a load reads the folder first."""
    monkeypatch.chdir(tmp_path)
    for name in ("my runs/up", "runs/up"):
        (tmp_path / name).mkdir(parents=True)
        with pytest.raises(UsageError, match=f"^{name!r} is a local path: it needs no download"):
            list(download_names([name]))
    assert fetched == []
    # a registered name is fetched whatever folder of its name is here (an -o folder named
    # after the model; it was refused as a local path); a released upsampler's name is read
    # from such a folder by a load run here, which is said
    for name in ("dinov2_vits14", "loftup_dinov2s"):
        (tmp_path / name).mkdir()
    with pytest.warns(UserWarning, match="a load of loftup_dinov2s run here reads that folder"):
        got = download_names(["dinov2_vits14", "loftup_dinov2s"])
        got = [n for n, _ in got]
    assert got == [
        "dinov2_vits14",
        "loftup_dinov2s",
        "dinov2_vits14",
    ]


@pytest.mark.parametrize("backbone", ["dinov2_vits14", "dinov2_tiny", None])
def test_an_upsampler_of_ones_own_brings_the_backbone_it_records(
    tmp_path, monkeypatch, fetched, backbone
):
    """As a released upsampler brings its backbone: `loftup download ORG/NAME` of an upsampler
    fetched it alone, and the machine it was copied to found no backbone to run it with. One
    that needs no download (dinov2_tiny), or none recorded, is not asked for."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache
    from loftup import LoftUp

    model = LoftUp(dim=384 if backbone == "dinov2_vits14" else 32, depth=1, num_heads=2, n_freqs=4)
    folder = model.save_pretrained(tmp_path / "up", backbone=backbone)
    files = {n: folder / n for n in ("model.safetensors", "config.json")}
    snap = make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    got = list(download_names(["someone/my-up"]))
    brought = [(backbone, Path("/cache") / backbone)] if backbone == "dinov2_vits14" else []
    assert got == [("someone/my-up", snap), *brought]
    assert list(download_names(["someone/my-up"], backbones=False)) == [("someone/my-up", snap)]
    assert fetched == [backbone] * len(brought)


def test_a_hub_id_offline_and_not_cached_says_either_kinds_folder(tmp_path, monkeypatch):
    """Before its config.json, what a repo holds is not known: the folder to pass instead was
    said as a backbone's alone (--backbone-weights) to whoever downloads their upsampler."""
    from huggingface_hub import constants

    from loftup.errors import WeightsNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as e:
        list(download_names(["someone/my-up"]))
    assert str(e.value).endswith(
        "or pass a local path instead: the folder save_pretrained wrote, for an upsampler "
        "(load_upsampler('/path/to/folder'), -m /path/to/folder), or, for a backbone, a folder "
        "in the Hugging Face layout (get_featurizer(name, weights='/path/to/folder'), "
        "--backbone-weights /path/to/folder)"
    )


def test_a_backbone_that_needs_no_files_is_passed_over_with_a_warning(fetched, capsys):
    """`loftup download dinov2_tiny` failed ("has no hub weights to download", exit 2) and the
    names after it were not fetched; its weights are seeded (scenes_vit_p8's ship with the
    package): it runs offline as it is, which a warning says, and the others are fetched."""
    from loftup.cli import main

    assert main(["download", "dinov2_tiny", "scenes_vit_p8", "dinov2_vits14"]) == 0
    assert fetched == ["dinov2_vits14"]
    out = capsys.readouterr()
    assert out.out == "dinov2_vits14: /cache/dinov2_vits14\n"
    assert [line.split(" (")[0] for line in out.err.splitlines()] == [
        "warning: backbone dinov2_tiny needs no download",
        "warning: backbone scenes_vit_p8 needs no download",
    ]
    assert out.err.count("): it runs offline as it is") == 2
