"""What a weights file's first bytes are said to be where it fails to load: a safetensors file
cut short whose header length's low byte is 0x80 is no pickle; the caller's fix (the Hugging
Face cache's blob, a backbone's hub repo, a hub repo's owner) ends each head's message whole;
torch.save's weights beside a config.json load with that record, given as the folder or the
file; a good file under a name that is no UTF-8 loads; text and empty files said as such."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save as st_save

from hub_builders import make_hf_cache
from hub_helpers import POINTER, _offline_cache, _own_upsampler, _released_cached_said
from loftup import load_upsampler
from loftup.errors import CheckpointError, WeightsNotFoundError
from loftup.hub import read_safetensors, read_weights
from processes import src_env

PAGE = b"<!DOCTYPE html>\n<html><head><title>model.safetensors</title></head></html>\n" * 20
#: How text in a weights file's place is said
TEXT = "is corrupt or not a PyTorch or safetensors file: it is text"


def _header_of_0x80() -> bytes:
    """A safetensors file whose header length is 128 mod 256: its first byte is 0x80."""
    for n in range(300):
        data = st_save({"w": torch.ones(64)}, metadata={"pad": "x" * n})
        if int.from_bytes(data[:8], "little") % 256 == 128:
            return data
    raise AssertionError("no padding gives such a header")


def test_a_cut_safetensors_whose_first_byte_is_0x80_is_said_cut_not_a_pickle(tmp_path):
    """1 header length in 32 starts with 0x80, which the head check took for a pickle: an
    interrupted copy was told to be renamed .pth (which loads nothing)."""
    data = _header_of_0x80()
    path = tmp_path / "model.safetensors"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    assert str(e.value).startswith(f"{path} is corrupt or truncated")
    assert "PyTorch" not in str(e.value)
    path.write_bytes(data)  # whole, it loads
    assert torch.equal(read_weights(path)["w"], torch.ones(64))


@pytest.mark.parametrize("kind", ["page", "torch"])
def test_a_hub_repo_that_holds_a_wrong_file_says_its_owner_is_to_save_again(
    tmp_path, monkeypatch, kind
):
    """A hub id whose model.safetensors is a web page was cut mid-parenthesis at its inner
    "; "; torch.save's file there was told to be renamed .pth (inside the cache) and its blob
    deleted and downloaded again, which fetches the same bytes."""
    model, folder, _ = _own_upsampler(tmp_path)
    sd = tmp_path / "sd.pth"
    torch.save(model.state_dict(), sd)
    weights = PAGE if kind == "page" else sd.read_bytes()
    files = {"config.json": (folder / "config.json").read_bytes(), "model.safetensors": weights}
    make_hf_cache(tmp_path / "hub", "someone/my-up", files, blobs=True)
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/my-up")
    said = str(e.value)
    if kind == "page":
        assert "its /resolve/ link the file itself); " in said
    else:
        assert (
            "is a PyTorch file (a zip archive, as torch.save writes) under a .safetensors" in said
        )
        assert "rename" not in said
    assert said.endswith(
        "; hub repo someone/my-up holds model.safetensors as it is here (a download fetches the "
        "same bytes): its owner is to write the upsampler again with save_pretrained and push "
        "that folder"
    )
    assert "loftup download" not in said


def test_a_released_names_cached_web_page_names_the_blob_to_delete(tmp_path, monkeypatch):
    """A released name whose cached file is a web page lost the cache's fix: the /resolve/
    advice alone, where the README promises the blob to delete."""
    snap, said = _released_cached_said(tmp_path, monkeypatch, PAGE)
    assert said.startswith(f"{snap / 'pytorch_model.bin'} is a web page (HTML)")
    assert "delete " in said and "/blobs/" in said and "`loftup download loftup_dinov2s`" in said
    assert "download the /resolve/ URL" not in said
    from loftup.hub.damaged import damage  # loftup download's "is damaged (WHY)": cut mid-word

    assert damage(snap / "pytorch_model.bin") == said.split("; ")[0]
    assert said.split("; ")[0].endswith("its /resolve/ link the file itself)")


@pytest.mark.parametrize("kind", ["page", "pointer"])
def test_a_cached_file_given_as_a_path_names_the_blob_to_delete(tmp_path, monkeypatch, kind):
    """A snapshot folder or file of the cache given as a path (as loftup info prints it): a
    web page was told "download the /resolve/ URL", a Git LFS pointer "re-download it", not
    the blob to delete and the download that fetches it again, as its released name is."""
    data = PAGE if kind == "page" else POINTER
    snap, by_name = _released_cached_said(tmp_path, monkeypatch, data)
    fix = by_name[by_name.index("; ") :]
    assert "/blobs/" in fix and fix.endswith("`loftup download loftup_dinov2s` to fetch it again")
    for source in (snap, snap / "pytorch_model.bin"):
        with pytest.raises(CheckpointError) as e:
            load_upsampler(source)
        assert str(e.value).endswith(fix), source


def test_a_backbones_web_page_keeps_its_fix(tmp_path):
    """--backbone-weights with a web page as pytorch_model.bin: the backbone's fix was dropped."""
    from loftup.featurizers import get_featurizer

    folder = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(PAGE)
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_tiny", weights=str(folder))
    said = str(e.value)
    assert said.startswith(f"{folder / 'pytorch_model.bin'} is a web page (HTML)")
    assert said.endswith("; write the folder again with save_pretrained")


@pytest.mark.parametrize("name", ["model.pth", "renamed.pt"])
def test_torch_weights_beside_a_config_load_with_it_given_as_a_file(tmp_path, name):
    """The rename a PyTorch file under a .safetensors name is told to make: the folder loaded
    with its config.json (2 heads), the file alone with the paper's 4, another model, unsaid."""
    model, folder, (lr, image) = _own_upsampler(tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / name)
    loaded = load_upsampler(folder / name)
    assert loaded.config.num_heads == 2
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))


def test_a_good_safetensors_under_a_name_that_is_no_utf8_loads(tmp_path):
    """safetensors refuses a path that is no UTF-8 ("caf\\xe9.safetensors"): it was said to be
    corrupt or truncated, re-download it."""
    _, folder, _ = _own_upsampler(tmp_path)
    path = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.safetensors")
    try:
        with open(path, "wb") as f:
            f.write((folder / "model.safetensors").read_bytes())
    except OSError:
        pytest.skip("this file system takes no such name")
    assert read_weights(path).keys() == read_weights(folder / "model.safetensors").keys()
    assert load_upsampler(path).config.num_heads == 2
    from loftup.hub.damaged import damage  # loftup download's check of a cached file

    assert damage(path) is None


def test_empty_files_and_text_are_said_as_such(tmp_path):
    """An empty .safetensors was "corrupt or truncated (header too small)" where an empty .pth
    was "empty"; an error reply in the weights' place "header too large"; a page behind a
    byte order mark, and XML, was no page."""
    cases = {
        "empty": (b"", "is empty (0 bytes): an interrupted copy"),
        "json": (b'{"error":"Entry not found"}', TEXT),
        "xml": (b'<?xml version="1.0"?>\n<Error><Code>AccessDenied</Code>', TEXT),
        "bom": (b"\xef\xbb\xbf" + PAGE, "is a web page (HTML)"),
    }
    for name, (data, said) in cases.items():
        for suffix in (".safetensors", ".pth"):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(data)
            with pytest.raises(CheckpointError) as e:
                read_weights(path)
            assert str(e.value).startswith(f"{path} {said}"), str(e.value)
    with pytest.raises(CheckpointError) as e:
        read_weights(tmp_path / "json.safetensors")
    assert 'and begins \'{"error":"Entry not found"}\'' in str(e.value)


def test_a_device_is_refused_with_a_devices_reason():
    """/dev/null was refused with a FIFO's reasons (waits for a writer, read twice)."""
    with pytest.raises(CheckpointError) as e:
        read_weights("/dev/null")
    assert str(e.value).startswith("/dev/null is not a regular file (a device)")
    assert "FIFO" not in str(e.value) and "pipe" not in str(e.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs or sockets on this system")
def test_a_socket_or_a_link_to_a_fifo_is_refused_as_what_it_is(tmp_path):
    """A socket is said as one with its own reason, and a link as what it leads to (the kind
    named by loftup.listing.special_at, which the output paths and an experiment's files ask
    too); a folder, a plain file or nothing there is no special file."""
    import socket

    from loftup.listing import special_at

    sock = tmp_path / "w.pth"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))  # (the socket's file stays when it is closed)
    with pytest.raises(CheckpointError) as e:
        read_weights(sock)
    assert str(e.value) == (
        f"{sock} is not a regular file (a socket): weights and their records are read from "
        "regular files only (it cannot be read as a file); give the path of the weights file "
        "itself"
    )
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.pth").symlink_to("fifo")
    with pytest.raises(CheckpointError, match=r"link\.pth is not a regular file \(a FIFO or pipe"):
        read_weights(tmp_path / "link.pth")
    (tmp_path / "plain").write_bytes(b"")
    kinds = {n: special_at(tmp_path / n) for n in ("w.pth", "link.pth", "plain", "none", ".")}
    assert kinds == {
        "w.pth": "a socket",
        "link.pth": "a pipe",
        "plain": None,
        "none": None,
        ".": None,
    }


def test_a_missing_safetensors_is_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no such file: .*missing.safetensors; fetch"):
        read_safetensors(tmp_path / "missing.safetensors", "fetch it")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_beside_weights_is_not_waited_on(tmp_path):
    """A corrupt w.pth beside a FIFO named config.json hung (the backbone hint read it); so did
    damage(), which loftup download and a hub id's failed load ask, of a FIFO."""
    _, folder, _ = _own_upsampler(tmp_path)  # and a FIFO in a saved folder's config.json
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    (tmp_path / "w.pth").write_bytes(b"\x00" * 64)
    os.mkfifo(tmp_path / "config.json")
    code = f"""
from loftup import load_upsampler
from loftup.hub.damaged import damage
for source in ({str(tmp_path / "w.pth")!r}, {str(folder)!r}):
    try:
        load_upsampler(source)
    except Exception as e:
        print(type(e).__name__ + ": " + str(e))
print(damage({str(tmp_path / "config.json")!r}))
"""
    try:
        ran = subprocess.run([sys.executable, "-c", code], env=src_env(), capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("a FIFO was waited on")
    lines = ran.stdout.strip().splitlines()
    assert lines[0].startswith(f"CheckpointError: {tmp_path / 'w.pth'} is corrupt"), ran.stderr
    fifo = "is not a regular file (a FIFO"
    assert lines[1].startswith(f"CheckpointError: config file {folder / 'config.json'} {fifo}")
    assert lines[2].startswith(f"{tmp_path / 'config.json'} {fifo}")


def test_a_zip_that_torch_save_did_not_write_is_not_told_to_be_renamed_pth(tmp_path):
    """Any zip archive named .safetensors (a folder zipped for sharing) was "a PyTorch file...
    rename it with a .pth suffix", which then failed as a corrupt PyTorch file: torch.save's
    archive holds NAME/data.pkl; another is said as a zip archive, not weights."""
    import zipfile

    path = tmp_path / "model.safetensors"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/README.txt", "the weights " * 50)
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    said = str(e.value)
    assert said.startswith(f"{path} is a zip archive, not weights (no PyTorch file: "), said
    assert ".pth" not in said


def test_a_pointer_in_a_clone_whose_lfs_rule_is_not_at_its_top_says_git_lfs_pull(tmp_path):
    """Only the clone's top .gitattributes was read: a subfolder's own, or the clone's
    info/attributes (which git itself reads: `git check-attr`), that tracks the file with Git
    LFS was missed, and the pointer told to be downloaded by its /resolve/ URL."""
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)  # no clone git knows: each .gitattributes read
    (clone / "weights").mkdir()
    (clone / ".gitattributes").write_text("*.png binary\n")
    (clone / "weights" / ".gitattributes").write_text("*.pth filter=lfs diff=lfs merge=lfs\n")
    repo = tmp_path / "repo"  # a clone git knows: its info/attributes, which git reads
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("*.pth filter=lfs\n")
    for path in (clone / "weights" / "model.pth", repo / "model.pth"):
        path.write_bytes(POINTER)
        with pytest.raises(CheckpointError) as e:
            read_weights(path)
        assert str(e.value).endswith(
            "`git lfs install` and `git lfs pull` in the clone fetch the files"
        )
