"""``loftup download ORG/NAME`` of a repo of one's own, refreshed from the hub (here a local
mirror, :func:`conftest.local_hub`): what it asks the hub, and what the cache reads after a
refresh that did not finish."""

from __future__ import annotations

import json
from unittest.mock import ANY

import pytest
import torch

from hub_helpers import _own_upsampler, _use_mirror
from loftup import load_upsampler
from loftup.cli import main
from loftup.downloads import download_names

CONFIG = "/someone/{}/resolve/main/config.json"


def _files_asked(local_hub) -> list[tuple[str, str]]:
    """The requests for files of repos (not huggingface_hub's own, of the hub's API) that the
    mirrors answered, in order: (method, path)."""
    return [(method, path) for method, path in local_hub.requests if "/resolve/" in path]


def _asked(local_hub, path: str) -> list[str]:
    """The methods of the requests the mirrors answered for ``path``, in order."""
    return [method for method, asked in _files_asked(local_hub) if asked == path]


def test_download_asks_the_hub_for_config_json_once(tmp_path, monkeypatch, local_hub):
    """Its kind, whether it is an upsampler's, and the folder's files were three requests for
    config.json (HEAD, each, and the GET); it is asked once and what was read passed on."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    backbone = {
        ("someone/bb", "config.json"): json.dumps({"model_type": "dinov2"}).encode(),
        ("someone/bb", "model.safetensors"): (folder / "model.safetensors").read_bytes(),
    }
    _use_mirror(monkeypatch, local_hub({**files, **backbone}), tmp_path / "hub")
    for repo in ("up", "bb"):
        assert main(["download", f"someone/{repo}"]) == 0
        assert _asked(local_hub, CONFIG.format(repo)) == ["HEAD", "GET"], repo
        weights = f"/someone/{repo}/resolve/main/model.safetensors"
        assert _asked(local_hub, weights) == ["HEAD", "GET"], repo
    local_hub.requests.clear()
    for repo in ("up", "bb"):  # again: what is cached is checked, once a file
        assert main(["download", f"someone/{repo}"]) == 0
    assert sorted(_files_asked(local_hub)) == [
        ("HEAD", f"/someone/{repo}/resolve/main/{name}")
        for repo in ("bb", "up")
        for name in ("config.json", "model.safetensors")
    ]


@pytest.mark.parametrize("cut", ["config.json", "model.safetensors"])
def test_ctrl_c_in_a_refresh_leaves_the_commit_cached_before(tmp_path, monkeypatch, local_hub, cut):
    """Ctrl-C while a newer commit of one's own repo downloads (the ref already moved to it
    when its first file's download began): the interrupt goes on up, and the cache reads the
    commit it had, whose files load offline as before."""
    import huggingface_hub.file_download as fd

    first, folder1, (lr, image) = _own_upsampler(tmp_path)
    _, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    names = ("model.safetensors", "config.json")
    old, new = "1" * 40, "2" * 40
    for folder, commit in ((folder1, old), (folder2, new)):
        files = {("someone/my-up", n): (folder / n).read_bytes() for n in names}
        _use_mirror(monkeypatch, local_hub(files, commit=commit), tmp_path / "hub")
        if commit == old:
            assert list(download_names(["someone/my-up"])) == [("someone/my-up", ANY)]
    http_get = fd.http_get

    def interrupted(url, temp_file, **kw):  # the hub's bytes, then Ctrl-C partway through
        if url.endswith(f"/{cut}"):
            temp_file.write(b"{" if cut.endswith(".json") else b"\0" * 8)
            raise KeyboardInterrupt
        return http_get(url, temp_file, **kw)

    monkeypatch.setattr(fd, "http_get", interrupted)
    ref = tmp_path / "hub" / "models--someone--my-up" / "refs" / "main"
    with pytest.raises(KeyboardInterrupt):
        list(download_names(["someone/my-up"]))
    assert ref.read_text() == old
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/my-up")(lr, image), first(lr, image))


def test_download_at_a_commit_it_has_asks_the_hub_nothing(tmp_path, monkeypatch, local_hub, capsys):
    """A commit's files never change: `loftup download ORG/NAME@COMMIT` of one cached reads
    the cache, as the README says, and asks the hub nothing (were it asked, a hub that no
    longer has that commit would have the copy kept with a warning)."""
    from hub_builders import make_hf_cache

    _, folder, _ = _own_upsampler(tmp_path)
    files = {n: folder / n for n in ("model.safetensors", "config.json")}
    snap = make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    _use_mirror(monkeypatch, local_hub({}), tmp_path / "hub")  # online; the commit is gone
    assert main(["download", f"someone/my-up@{snap.name}"]) == 0
    assert _files_asked(local_hub) == []
    assert capsys.readouterr().err == ""


def test_a_push_between_config_and_weights_gives_one_commits_folder(
    tmp_path, monkeypatch, local_hub
):
    """config.json is asked for once, then the weights: where the owner pushed again between
    the two, the weights come from the newer commit, and its own config.json is fetched beside
    them (by the commit's hash), so the folder is one save's, not weights without a record."""
    import huggingface_hub.file_download as fd

    _, folder1, _ = _own_upsampler(tmp_path)
    _, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    names = ("model.safetensors", "config.json")
    pushes = {}
    for folder, commit in ((folder1, "1" * 40), (folder2, "2" * 40)):
        files = {("someone/up", n): (folder / n).read_bytes() for n in names}
        pushes[commit] = local_hub(files, commit=commit)
    _use_mirror(monkeypatch, pushes["1" * 40], tmp_path / "hub")
    http_get = fd.http_get

    def pushed_meanwhile(url, temp_file, **kw):
        http_get(url, temp_file, **kw)
        if url.endswith("/config.json"):  # the owner pushes as its download ends
            _use_mirror(monkeypatch, pushes["2" * 40], tmp_path / "hub")

    monkeypatch.setattr(fd, "http_get", pushed_meanwhile)
    ((_, got),) = download_names(["someone/up"])
    assert got.name == "2" * 40
    for name in names:
        assert (got / name).read_bytes() == (folder2 / name).read_bytes(), name
    assert ("GET", f"/someone/up/resolve/{'2' * 40}/config.json") in local_hub.requests
    assert load_upsampler(got).config.num_heads == 4


@pytest.mark.parametrize("answer", ["deleted", "private", "gated"])
def test_a_repo_gone_or_private_on_the_hub_is_said_once_and_its_cached_copy_used(
    tmp_path, monkeypatch, local_hub, capsys, answer
):
    """`loftup download ORG/NAME` of a cached repo that the hub now refuses (deleted: 404
    RepoNotFound; private or deleted, asked without a login: 401 RepoNotFound; gated: 401
    GatedRepo) succeeded without a word: huggingface_hub returns the cached copy for those
    answers. The copy is still used, and said once, in one line; the hub was asked once a
    file, as for a repo it serves; with the hub out of reach nothing is said."""
    from loftup.hub import refresh

    monkeypatch.setattr(refresh, "_REFUSED", set())
    first, folder, (lr, image) = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    ((_, snapshot),) = download_names(["someone/up"])
    refused = {
        "deleted": local_hub({}),
        "private": local_hub({}, private=("someone/up",)),
        "gated": local_hub(files, gated=("someone/up",)),
    }[answer]
    _use_mirror(monkeypatch, refused, tmp_path / "hub")
    local_hub.requests.clear()
    capsys.readouterr()
    assert main(["download", "someone/up"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: hub repo 'someone/up' {why} (the hub answered {code}): the copy cached "
        f"before is used, {snapshot}; {fix} (HF_TOKEN or `hf auth login`) to refresh it"
        for why, code, fix in [
            {
                "deleted": (GONE, "404 RepoNotFound", "for a private repo, log in"),
                "private": (GONE, "401 RepoNotFound", "for a private repo, log in"),
                "gated": (
                    GATED,
                    "401 GatedRepo",
                    f"accept its terms at {refused}/someone/up and log in",
                ),  # fmt: skip
            }[answer]
        ]
    ]
    assert sorted(_files_asked(local_hub)) == [
        ("HEAD", "/someone/up/resolve/main/config.json"),
        ("HEAD", "/someone/up/resolve/main/model.safetensors"),
    ]
    with torch.no_grad():
        assert torch.equal(load_upsampler("someone/up")(lr, image), first(lr, image))
    refresh._REFUSED.clear()
    _use_mirror(monkeypatch, "http://127.0.0.1:9", tmp_path / "hub")  # nothing answers there
    assert main(["download", "someone/up"]) == 0
    assert capsys.readouterr().err == ""


def test_a_rejected_token_is_not_said_to_be_a_refused_repo(tmp_path):
    """huggingface_hub before 1.0 raised a 401 "Invalid credentials in Authorization header"
    (an expired or wrong HF_TOKEN) as RepositoryNotFoundError: the refresh said the repo was
    gone or private and kept the old copy. It is the login's fault, and raised as such (the
    error built here as 0.24 builds it)."""
    import importlib

    import huggingface_hub.errors as errors
    from huggingface_hub.utils import RepositoryNotFoundError

    from loftup.hub import refresh

    def answer(said: str):
        url = "https://huggingface.co/a/b/resolve/main/config.json"
        if errors.Response.__module__.startswith("requests"):  # huggingface_hub before 1.0
            response = errors.Response()
            response.status_code, response.url = 401, url
            response.headers["X-Error-Message"] = said
            return response
        http = importlib.import_module(errors.Response.__module__.split(".")[0])  # httpx's
        request = http.Request("HEAD", url)
        return errors.Response(401, headers={"X-Error-Message": said}, request=request)

    rejected = answer("Invalid credentials in Authorization header")
    assert not refresh._say_refused(
        RepositoryNotFoundError("401", response=rejected), "a/b", tmp_path
    )
    refused = answer("Access restricted.")
    with pytest.warns(UserWarning, match="'a/b' is gone, or private to this login"):
        assert refresh._say_refused(
            RepositoryNotFoundError("401", response=refused), "a/b", tmp_path
        )


def test_a_refresh_waits_for_the_hub_as_hf_hub_etag_timeout_says(
    tmp_path, monkeypatch, local_hub, capsys
):
    """The refresh's own first request waits HF_HUB_ETAG_TIMEOUT for the hub's answer, as
    hf_hub_download's does (huggingface_hub before 1.0 gave it a fixed 10 s, so a slower hub's
    newer commit was missed where that variable allowed more). Here it allows less than the
    hub takes: one request a file, given up after that long, and the cached commit is kept
    without a word (10 s would have waited for the answer, then asked again). huggingface_hub
    before 1.0 asks again itself after a timeout, 5 times, as its hf_hub_download does."""
    import huggingface_hub
    from huggingface_hub import constants

    _, folder1, _ = _own_upsampler(tmp_path)
    _, folder2, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    names = ("model.safetensors", "config.json")
    for folder, commit, slow in ((folder1, "1" * 40, 0.0), (folder2, "2" * 40, 1.5)):
        files = {("someone/up", n): (folder / n).read_bytes() for n in names}
        _use_mirror(monkeypatch, local_hub(files, commit=commit, slow=slow), tmp_path / "hub")
        if not slow:
            ((_, first),) = download_names(["someone/up"])
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 0.3)
    local_hub.requests.clear()
    capsys.readouterr()
    assert main(["download", "someone/up"]) == 0
    assert capsys.readouterr().err == ""
    tries = 1 if int(huggingface_hub.__version__.split(".")[0]) >= 1 else 6
    assert _asked(local_hub, "/someone/up/resolve/main/config.json") == ["HEAD"] * tries
    assert "1" * 40 in str(first)


GONE = "is gone, or private to this login"

GATED = "is gated and this login may not read it"
