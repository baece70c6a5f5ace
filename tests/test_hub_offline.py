"""Offline (``HF_HUB_OFFLINE=1``): released checkpoints from the Hugging Face cache, and, where
it lacks them, one line naming the repo, the file and how to pass a local path."""

from __future__ import annotations

import os

import pytest

from hub_builders import make_hf_cache
from loftup.errors import LoftUpError
from loftup.hub import RELEASED, released_table
from processes import cli_script, run_scripts
from reference_files import REFERENCE_STATE


def test_released_name_from_local_hf_cache_offline(tmp_path, reference_cases, monkeypatch, capsys):
    """In this process: the cache's place and the offline switch set as huggingface_hub reads
    them (the test below starts a process, where they are read at import); a checkpoint the
    cache lacks is refused for the switch, nothing downloaded."""
    import huggingface_hub
    import torch
    from huggingface_hub import constants

    import loftup
    from loftup.cli import main

    def never(*args, **kwargs):
        raise AssertionError("offline: nothing may be downloaded")

    make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    with pytest.raises(LoftUpError, match="HF_HUB_OFFLINE=1 is set") as e:
        loftup.load_upsampler("loftup_clip")  # not cached
    assert "haiwen/loftup-clip" in str(e.value)
    m = loftup.load_upsampler("loftup_dinov2s")
    with torch.no_grad():
        out = m(reference_cases["square.lr_feats"], reference_cases["square.image"])
    assert m.backbone == "dinov2_vits14"
    assert (out - reference_cases["square.output"]).abs().max().item() <= 1e-4
    capsys.readouterr()
    assert main(["info"]) == 0
    info = capsys.readouterr().out
    line = next(ln for ln in info.splitlines() if ln.startswith("loftup_dinov2s "))
    assert " upsampler only " in line  # its backbone's files are not cached
    other = next(ln for ln in info.splitlines() if ln.startswith("loftup_clip "))
    assert " no " in other


def test_offline_without_cache_names_repo_file_and_local_path(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    load = "import loftup; loftup.load_upsampler('loftup_clip')"
    done = run_scripts({"load": load, "download": cli_script(["download", "loftup_clip"])}, env)
    res = done["load"]
    assert res.returncode != 0
    msg = res.stderr.strip().splitlines()[-1]
    assert "haiwen/loftup-clip" in msg and "pytorch_model.bin" in msg and "local path" in msg
    # both ways of passing the file: Python and the command line
    assert "load_upsampler('/path/to/pytorch_model.bin')" in msg
    assert "loftup upsample -m /path/to/pytorch_model.bin --backbone clip_vitb16" in msg
    res = done["download"]
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "haiwen/loftup-clip" in res.stderr


def test_download_with_hf_hub_offline_says_to_unset_it(monkeypatch, capsys):
    import huggingface_hub

    from loftup.cli import main

    def never(*args, **kwargs):
        raise AssertionError("offline: nothing may be downloaded")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    for name, repo in (("loftup_clip", "haiwen/loftup-clip"), ("dinov2_vits14", "dinov2-small")):
        assert main(["download", name, "--no-backbone"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "HF_HUB_OFFLINE=1 is set" in err and "Unset it to download" in err
        assert f"env -u HF_HUB_OFFLINE loftup download {name}" in err and repo in err
        assert "on a machine with network" not in err
        assert "copy the Hugging Face cache (~/.cache/huggingface/hub by default) of a " in err


def test_the_released_table_says_which_checkpoint_is_cached_and_where(tmp_path, monkeypatch):
    """What `loftup info` prints and writes as JSON: every released checkpoint in the
    registry's order, and the cached file's path for the one the cache holds."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": b"x"})
    backbone = ("config.json", "model.safetensors")
    rows = released_table()
    assert [r["name"] for r in rows] == list(RELEASED)
    clip = next(r for r in rows if r["name"] == "loftup_clip")
    assert clip == {
        "name": "loftup_clip",
        "backbone": "clip_vitb16",
        "dim": 512,
        "grid": "14x14",
        "hub": "haiwen/loftup-clip/pytorch_model.bin",
        "cached": False,  # its backbone's files are not cached
        "upsampler_cached": True,
        "backbone_cached": False,
        "path": str(snap / "pytorch_model.bin"),
        "backbone_hub": "openai/clip-vit-base-patch16",
        "backbone_files": [f"openai/clip-vit-base-patch16/{n}" for n in backbone],
        "missing": [f"openai/clip-vit-base-patch16/{n}" for n in backbone],
        "unchecked": None,
    }
    others = [r for r in rows if r is not clip]
    assert not any(r["upsampler_cached"] or r["path"] for r in others)


def test_the_released_table_looks_at_each_repo_s_cache_folder_once(tmp_path, monkeypatch):
    """Each row checked the repo's folder of the cache twice (the table, then the lookup of
    its file), a walk of the path each: now once, and its backbone's repo's once."""
    from huggingface_hub import constants

    from loftup.hub import RELEASED, released_table, remote

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-clip", {"pytorch_model.bin": b"x"})
    problem, looked = remote.cache_problem, []
    monkeypatch.setattr(remote, "cache_problem", lambda r: looked.append(r) or problem(r))
    rows = released_table()
    assert [r["upsampler_cached"] for r in rows] == [n == "loftup_clip" for n in RELEASED]
    assert looked == [
        repo for r in rows for repo in (r["hub"].rsplit("/", 1)[0], r["backbone_hub"])
    ]


def test_sam_weights_come_from_a_folder_the_cache_or_a_one_line_error(tmp_path):
    """data.sam_weights: a short name or hub id is read from the Hugging Face cache file by
    file, offline too; missing, the error names the file and `loftup download sam_vit_base`
    (transformers alone retried for minutes, and each image was then 'unreadable')."""
    from loftup.data.sam import SAM_FILES, resolve_sam
    from loftup.errors import WeightsNotFoundError

    files = {group[0]: b"{}" for group in SAM_FILES}
    snap = make_hf_cache(tmp_path / "hub", "facebook/sam-vit-base", files)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    code = "from loftup.data.sam import resolve_sam; print(resolve_sam('sam_vit_base'))"
    done = run_scripts(
        {"resolve": code, "download": cli_script(["download", "sam_vit_large"])}, env
    )
    res = done["resolve"]
    assert res.returncode == 0 and res.stdout.strip() == str(snap), res.stderr
    res = done["download"]
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "'config.json' of hub repo 'facebook/sam-vit-large'" in res.stderr
    assert "HF_HUB_OFFLINE=1" in res.stderr and "data.sam_weights=/path/to/folder" in res.stderr
    folder = tmp_path / "sam"
    folder.mkdir()
    for name in ("config.json", "pytorch_model.bin"):  # a .bin, as older hub repos hold
        (folder / name).write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="no preprocessor_config.json or processor_c"):
        resolve_sam(str(folder))
    (folder / "processor_config.json").write_text("{}")  # as transformers 5 writes it
    assert resolve_sam(str(folder)) == folder
    with pytest.raises(WeightsNotFoundError, match="no such folder"):
        resolve_sam(str(tmp_path / "nothere"))


@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_the_released_table_says_why_a_file_whose_blobs_are_out_of_sight_is_unchecked():
    """A cached file whose blobs/ this user may not search (another user's, of mode 700, in a
    shared cache) was listed "cached: no": `loftup download` would fetch it into the same
    folder. Its row reads unchecked, with blobs/ and the chmod that lets this user in."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from huggingface_hub import constants

    from as_nobody import as_nobody
    from loftup.errors import LoftUpError

    def row() -> None:  # as_nobody passes on what a LoftUpError says
        (said,) = [r for r in released_table() if r["name"] == "loftup_dinov2s"]
        raise LoftUpError(f"cached={said['cached']} unchecked={said['unchecked']}")

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        snap = make_hf_cache(base, "haiwen/loftup-dinov2s", {"pytorch_model.bin": b"x"}, blobs=True)
        blobs = snap.parent.parent / "blobs"
        with pytest.MonkeyPatch.context() as m:
            m.setattr(constants, "HF_HUB_CACHE", str(base))
            assert [
                r["upsampler_cached"] for r in released_table() if r["name"] == "loftup_dinov2s"
            ] == [True]
            os.chmod(blobs, 0o700)
            said = as_nobody(row)
        assert said.startswith(f"cached=None unchecked={snap / 'pytorch_model.bin'}: a link to ")
        assert said.endswith(f"have root make it searchable (chmod o+x {blobs})"), said
    finally:
        shutil.rmtree(base)
