"""``loftup info``'s ``cached``: "yes" only where an offline run finds all it reads, the
upsampler and its backbone's files, as the backbone's load asks for them. It said "yes" for a
cache holding the upsampler alone, and the first offline run then failed on the backbone's
config.json."""

from __future__ import annotations

import json

import pytest

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache
from loftup.errors import WeightsNotFoundError
from loftup.featurizers.hf_weights import find_weights


def _info(tmp_path, capsys) -> tuple[dict, dict, str]:
    """``loftup info --json``: the table's lines by name, the JSON rows by name, the note."""
    from loftup.cli import main

    assert main(["info", "--json", str(tmp_path / "info.json")]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("loftup_")}
    rows = {r["name"]: r for r in json.loads((tmp_path / "info.json").read_text())}
    note = [ln for ln in out.splitlines() if ln.startswith("an offline run needs")]
    return lines, rows, "".join(note)


def test_info_says_yes_only_where_the_backbone_s_files_are_cached_too(
    tmp_path, monkeypatch, capsys
):
    hub = tmp_path / "hub"
    _offline_cache(monkeypatch, hub)
    make_hf_cache(hub, "haiwen/loftup-dinov2s", {"pytorch_model.bin": b"x"})
    lines, rows, note = _info(tmp_path, capsys)
    row = rows["loftup_dinov2s"]
    assert "  upsampler only  " in lines["loftup_dinov2s"]
    assert row["cached"] is False and row["upsampler_cached"] is True
    assert row["backbone_cached"] is False and row["backbone_hub"] == "facebook/dinov2-small"
    needed = ["facebook/dinov2-small/config.json", "facebook/dinov2-small/model.safetensors"]
    assert row["backbone_files"] == row["missing"] == needed
    assert "facebook/dinov2-small: config.json, model.safetensors" in lines["loftup_dinov2s"]
    assert "`loftup download loftup_dinov2s`" in note
    # what info names missing is what the backbone's load reads and misses offline
    with pytest.raises(WeightsNotFoundError, match="'config.json' of hub repo 'facebook/dino"):
        find_weights("dinov2_vits14")

    # the backbone's weights in shards, one of them not cached: still missing, by name
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    backbone = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-1.safetensors": b"x",
    }
    make_hf_cache(hub, "facebook/dinov2-small", backbone)
    make_hf_cache(hub, "openai/clip-vit-base-patch16", {"config.json": b"{}", "model.safetensors": b"x"})  # fmt: skip
    lines, rows, note = _info(tmp_path, capsys)
    row = rows["loftup_dinov2s"]
    assert "  upsampler only  " in lines["loftup_dinov2s"]
    assert row["missing"] == ["facebook/dinov2-small/model-2.safetensors"]
    with pytest.raises(WeightsNotFoundError, match="'model-2.safetensors' of hub repo"):
        find_weights("dinov2_vits14")
    clip = rows["loftup_clip"]  # the backbone alone
    assert "  backbone only  " in lines["loftup_clip"] and clip["cached"] is False
    assert clip["missing"] == ["haiwen/loftup-clip/pytorch_model.bin"]
    assert "`loftup download loftup_dinov2s loftup_clip`" in note

    make_hf_cache(hub, "facebook/dinov2-small", {"model-2.safetensors": b"x"})
    lines, rows, note = _info(tmp_path, capsys)
    row = rows["loftup_dinov2s"]
    assert "  yes  " in lines["loftup_dinov2s"] and row["cached"] is True and not row["missing"]
    assert row["backbone_files"] == [
        f"facebook/dinov2-small/{n}"
        for n in ("config.json", "model.safetensors.index.json")
        + ("model-1.safetensors", "model-2.safetensors")
    ]
    find_weights("dinov2_vits14")  # found offline, as info says
    assert "  no  " in lines["loftup_siglip"] and rows["loftup_siglip"]["cached"] is False
    assert "loftup_dinov2s" not in note and "loftup_siglip" not in note
