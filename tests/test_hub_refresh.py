"""``loftup download ORG/NAME`` of a repo of one's own, refreshed from the hub (here a local
mirror, :func:`conftest.local_hub`): what it asks the hub, and what the cache reads after a
refresh that did not finish."""

from __future__ import annotations

import json

from loftup.cli import main
from test_hub import _own_upsampler, _use_mirror

CONFIG = "/someone/{}/resolve/main/config.json"


def _asked(local_hub, path: str) -> list[str]:
    """The methods of the requests the mirrors answered for ``path``, in order."""
    return [method for method, asked in local_hub.requests if asked == path]


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
    assert sorted(local_hub.requests) == [
        ("HEAD", f"/someone/{repo}/resolve/main/{name}")
        for repo in ("bb", "up")
        for name in ("config.json", "model.safetensors")
    ]
