"""A weights file that is not what a load can read, said as what it is: a FIFO or a pipe (a
FIFO's open waited forever), a file this user may not read (its chmod), a web page or a
PyTorch file under a ``.safetensors`` name (not "corrupt ... re-download it"); and a good
``.pth`` loaded under torch's global ``mmap`` setting, which refuses an open handle."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from file_modes import WHOSE, refuse, where_modes_apply
from hub_builders import make_hf_cache
from hub_helpers import _own_upsampler
from loftup import load_upsampler
from loftup.errors import CheckpointError
from loftup.hub import read_weights
from loftup.train.checkpoint import load_checkpoint, save_checkpoint
from processes import run_scripts

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")

#: What a FIFO or pipe in a weights file's place is said to be
NOT_REGULAR = "is not a regular file (a FIFO or pipe, as <(...) gives)"


@needs_fifo
def test_a_fifo_as_weights_is_refused_not_waited_on(tmp_path):
    """A FIFO in a weights file's place: a folder's model.safetensors (beside config.json, or
    alone) hung forever (open waits for a writer), a lone .pth was said to be "no such file",
    a training checkpoint resumed from hung. Each is said now, in a fresh Python that a
    regression would hang (killed by the timeout: the test failed, not hung), one for the four
    (a start each took 2 s)."""
    _, folder, _ = _own_upsampler(tmp_path)
    (folder / "model.safetensors").unlink()
    alone = tmp_path / "alone"  # no config.json: its header's record was to be read
    alone.mkdir()
    fifos = {
        "folder": (folder / "model.safetensors", f"load_upsampler({str(folder)!r})"),
        "alone": (alone / "model.safetensors", f"load_upsampler({str(alone)!r})"),
        "file": (tmp_path / "fifo.pth", f"load_upsampler({str(tmp_path / 'fifo.pth')!r})"),
        "resume": (tmp_path / "checkpoint.pt", f"load_checkpoint({str(tmp_path)!r} + '/checkpoint.pt')"),
    }  # fmt: skip
    scripts = {}
    for entry, (fifo, call) in fifos.items():
        os.mkfifo(fifo)
        scripts[entry] = f"""
from loftup import load_upsampler
from loftup.train.checkpoint import load_checkpoint
try:
    {call}
    print("none")
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
"""
    try:
        ran = run_scripts(scripts, timeout=120)
    except subprocess.TimeoutExpired as e:  # the last <<<entry>>> begun is the one waiting
        pytest.fail(f"a load waited on its FIFO; what the process said: {e.stdout!r}")
    for entry, (fifo, _) in fifos.items():
        what = "training checkpoint " if entry == "resume" else ""
        said = ran[entry].stdout.strip()
        assert said.startswith(f"CheckpointError: {what}{fifo} {NOT_REGULAR}"), (entry, said)
        assert "copy them into a file and give its path" in said, entry


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd on this system")
def test_a_pipe_given_as_a_path_is_said_in_one_line(tmp_path):
    """``python one.py <(cat good.pth)`` hands read_weights /dev/fd/N, a pipe: its load rewound
    the open pipe, io.UnsupportedOperation's traceback; a one-line CheckpointError now."""
    torch.save({"w": torch.ones(3)}, tmp_path / "good.pth")
    r, w = os.pipe()
    try:
        os.write(w, (tmp_path / "good.pth").read_bytes())  # small: the pipe's buffer holds it
        os.close(w)
        with pytest.raises(CheckpointError, match=r"^/dev/fd/\d+ is not a regular file \(a FIFO"):
            read_weights(f"/dev/fd/{r}")
    finally:
        os.close(r)


def test_a_good_pth_loads_under_torchs_global_mmap_setting(tmp_path):
    """With ``torch.utils.serialization.config.load.mmap = True`` torch.load refuses an open
    handle ("f must be a file path"): every .pth was "corrupt or truncated; re-download it",
    a training checkpoint to be resumed "move this file away (training starts afresh)"."""
    from loftup.featurizers.hf_loading import _name_damaged_pickle

    model, _, (lr, image) = _own_upsampler(tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    save_checkpoint(tmp_path / "checkpoint.pt", {"step": 7, "w": torch.ones(2)})
    # the config's own patch: monkeypatch's undo deleted the setting, and every torch.load after
    # it in the session failed ("config.load.mmap does not exist")
    # (torch >= 2.5: torch 2.4 has no such setting, so nothing to check there)
    serialization = pytest.importorskip("torch.utils.serialization.config")

    with serialization.patch({"load.mmap": True}):
        loaded = load_upsampler(tmp_path / "model.pth", num_heads=2)
        assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 7
        _name_damaged_pickle([tmp_path / "model.pth"], "dinov2_tiny")  # a good pickle: nothing said
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))


def test_a_web_page_saved_as_weights_is_named_with_the_url_to_take(tmp_path):
    """A hub /blob/ link downloads the file's web page: saved as .safetensors it was "corrupt
    or truncated (... header too large); re-download it", and the same link gave the same
    page again; as .pth "neither a zip archive nor a pickle". Said now as a page, with the
    /resolve/ URL."""
    page = b"<!DOCTYPE html>\n<html><head><title>model.safetensors</title></head></html>\n"
    for name in ("model.safetensors", "model.pth"):
        (tmp_path / name).write_bytes(page * 20)
        with pytest.raises(CheckpointError) as e:
            load_upsampler(tmp_path / name)
        said = str(e.value)
        assert said.startswith(
            f"{tmp_path / name} is a web page (HTML) titled 'model.safetensors', not a weights file"
        )
        assert "download the /resolve/ URL" in said and "re-download" not in said


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "pickle"])
def test_a_pytorch_file_under_a_safetensors_name_says_to_rename_it(tmp_path, zipped):
    """torch.save's file (a zip archive, or an old-style pickle) named .safetensors was
    "corrupt or truncated (header too large); re-download it": it is said as a PyTorch file,
    and the rename it is told to make loads it."""
    model, _, (lr, image) = _own_upsampler(tmp_path)
    path = tmp_path / "model.safetensors"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path, num_heads=2)
    kind = "a zip archive, as torch.save writes" if zipped else "a pickle"
    assert str(e.value).startswith(f"{path} is a PyTorch file ({kind}) under a .safetensors name")
    assert "rename it with a .pth suffix" in str(e.value)
    loaded = load_upsampler(path.rename(path.with_suffix(".pth")), num_heads=2)
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))


def test_a_cut_pytorch_file_under_a_safetensors_name_is_not_told_to_be_renamed(tmp_path):
    """torch.save's zip archive cut short, named .safetensors, was told "rename it with a .pth
    suffix, which loads it as one", after which it failed as corrupt: said cut short."""
    model, _, _ = _own_upsampler(tmp_path)
    whole = tmp_path / "whole.pth"
    torch.save(model.state_dict(), whole)
    path = tmp_path / "model.safetensors"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path, num_heads=2)
    assert str(e.value).startswith(
        f"{path} is a PyTorch file (a zip archive, as torch.save writes) under a .safetensors "
        "name, cut short (its zip archive has no end); re-download it"
    )
    assert "rename" not in str(e.value)


@pytest.mark.parametrize("whose", WHOSE)
def test_weights_this_user_may_not_read_say_so_and_the_chmod(tmp_path, whose):
    """A .safetensors this user may not read was safetensors' "No such file or directory" with
    a PermissionError chained to it, a .pth (or a training checkpoint) a bare "[Errno 13]":
    each is one PathPermissionError with the file's mode and the fix, nothing chained."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = [tmp_path / "alone.safetensors", tmp_path / "model.pth", tmp_path / "checkpoint.pt"]
    files[0].write_bytes((folder / "model.safetensors").read_bytes())
    torch.save({"w": torch.ones(2)}, files[1])
    save_checkpoint(files[2], {"step": 1})
    owners = [refuse(f, whose) for f in files]
    said = where_modes_apply(f"""
from loftup import load_upsampler
from loftup.hub import read_weights
from loftup.train.checkpoint import load_checkpoint
files = {[str(f) for f in files]!r}
result = []
for call in [lambda: read_weights(files[0]), lambda: load_upsampler(files[0]),
             lambda: read_weights(files[1]), lambda: load_checkpoint(files[2])]:
    try:
        call()
        result.append("none")
    except Exception as e:
        chained = e.__cause__ is not None or (e.__context__ and not e.__suppress_context__)
        result.append(type(e).__name__ + ": " + str(e) + (" [chained]" if chained else ""))
""")
    kinds = ["weights file"] * 3 + ["training checkpoint"]
    for text, path, owner, kind in zip(
        said, [files[0], *files], [owners[0], *owners], kinds, strict=True
    ):
        assert text.startswith(f"PathPermissionError: cannot read {kind} {path}: permission denied")
        fix = f"chmod u+r {path}" if owner is None else f"chmod o+r {path}), or run as {owner}"
        assert fix in text and "[chained]" not in text and "No such file" not in text, text


@pytest.mark.parametrize("whose", WHOSE)
def test_a_cached_file_this_user_may_not_read_is_told_the_chmod_of_its_blob(
    tmp_path, monkeypatch, whose
):
    """In the Hugging Face cache a file is a snapshot's link to a blob, whose mode is the
    file's: a hub id's model.safetensors and a released name's pytorch_model.bin were told to
    chmod the link (which `ls -l` shows as lrwxrwxrwx, the mode said being another's); the
    chmod names the blob now, the link said as one."""
    model, folder, _ = _own_upsampler(tmp_path)
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    files = {n: folder / n for n in ("config.json", "model.safetensors")}
    own = make_hf_cache(tmp_path / "hub", "someone/my-up", files, blobs=True)
    released = {"pytorch_model.bin": tmp_path / "sd.pth"}
    released = make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", released, blobs=True)
    links = [own / "model.safetensors", released / "pytorch_model.bin"]
    blobs = [link.resolve() for link in links]
    owners = [refuse(blob, whose) for blob in blobs]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)  # no folder someone/ here: the hub id is the hub's
    said = where_modes_apply("""
from file_modes import told
from loftup import load_upsampler
result = [told(lambda: load_upsampler(name)) for name in ("someone/my-up", "loftup_dinov2s")]
""")
    for text, link, blob, owner in zip(said, links, blobs, owners, strict=True):
        assert blob.parent.name == "blobs" and link.is_symlink()
        assert text.startswith(
            f"PathPermissionError: cannot read weights file {link} (a link to {blob}): "
            "permission denied"
        ), text
        fix = f"chmod u+r {blob}" if owner is None else f"chmod o+r {blob}), or run as {owner}"
        assert text.endswith(fix), text


@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_a_cache_whose_blobs_cannot_be_searched_names_that_folder_and_its_chmod(monkeypatch):
    """Another user's blobs/ of mode 700 in a shared cache (the blob itself readable): the
    snapshot folder gave a raw PermissionError, the released name "is not in the Hugging Face
    cache... Run loftup download", the snapshot's file "or remove the link", which would break
    the cache. Each names blobs/ and the chmod for this user's class, which then lets it in."""
    from as_nobody import as_nobody, chmod_advised

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        files = {"pytorch_model.bin": b"x"}
        snap = make_hf_cache(base, "haiwen/loftup-dinov2s", files, blobs=True)
        blobs = snap.parent.parent / "blobs"
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(base))
        sources = ("loftup_dinov2s", snap, snap / "pytorch_model.bin")
        for source in sources:  # as root first: what a load imports, imported (nobody may not)
            with pytest.raises(CheckpointError, match="is corrupt or not a PyTorch"):
                load_upsampler(source)
        os.chmod(blobs, 0o700)
        for source in sources:
            said = as_nobody(lambda source=source: load_upsampler(source))
            assert said.startswith(f"{snap / 'pytorch_model.bin'}: a link to ../../blobs/"), said
            assert said.endswith(
                f"may not search it); have root make it searchable (chmod o+x {blobs})"
            )
        chmod_advised(said)
        assert "is corrupt or not a PyTorch" in as_nobody(lambda: load_upsampler(snap))
    finally:
        shutil.rmtree(base)
