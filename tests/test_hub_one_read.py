"""A load reads what it needs once: a weights file is opened once (its head told what it is,
then the same open file loaded, its header's record with it), its pickle walked once (for the
check of its members' sizes and all a refusal says), and a hub load by branch reads the cache's
ref file (``refs/main``) once, the commit it names passed on to every lookup."""

from __future__ import annotations

import builtins
import io
import os

import pytest
import torch

from hub_helpers import _offline_cache, _own_upsampler, _two_commits
from loftup import LoftUp, load_upsampler
from loftup.hub.pickle_walk import Walk
from test_hub_way_out import told


def _count_opens(monkeypatch, path) -> list:
    """A list that grows by one at each opening of ``path`` in this process: by Python's open
    (an ``open``, pathlib, zipfile), or handed by name to safetensors or torch.load, which open
    it in their own code. The openers are wrapped only to count: each does what it did."""
    import safetensors
    import safetensors.torch

    target = os.path.realpath(path)
    seen = []

    def names_it(arg) -> bool:
        return isinstance(arg, (str, os.PathLike)) and os.path.realpath(arg) == target

    def counting(opener):
        def wrapped(file, *args, **kw):
            if names_it(file):
                seen.append(opener.__name__)
            return opener(file, *args, **kw)

        return wrapped

    monkeypatch.setattr(builtins, "open", counting(builtins.open))
    monkeypatch.setattr(io, "open", counting(io.open))
    monkeypatch.setattr(safetensors, "safe_open", counting(safetensors.safe_open))
    monkeypatch.setattr(safetensors.torch, "load_file", counting(safetensors.torch.load_file))
    monkeypatch.setattr(torch, "load", counting(torch.load))
    return seen


@pytest.mark.parametrize("kind", ["folder", "safetensors", "pth"])
def test_a_weights_file_is_opened_once_a_load(tmp_path, monkeypatch, kind):
    """A load of a weights file opened it 4 (safetensors) to 7 (.pth) times: a Git LFS pointer
    check, a format check, a zip check, then the load, and the header's record read again;
    once now, with the same weights (and, for save_pretrained's file, its record: from
    config.json beside it, or from its header alone)."""
    model, folder, (lr, image) = _own_upsampler(tmp_path)
    path = folder / "model.safetensors"  # config.json beside it: the folder's record
    if kind == "safetensors":  # alone: its header's record gives the 2 heads
        path = tmp_path / "alone.safetensors"
        path.write_bytes((folder / "model.safetensors").read_bytes())
    elif kind == "pth":
        path = tmp_path / "model.pth"
        torch.save(model.state_dict(), path)  # a zip archive, checked member by member
    seen = _count_opens(monkeypatch, path)
    loaded = load_upsampler(path, num_heads=2 if kind == "pth" else None)
    assert len(seen) == 1, seen
    assert loaded.config == model.config
    if kind != "pth":
        assert loaded.backbone == "dinov2_tiny"
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), model(lr, image))


@pytest.mark.parametrize("given, ref", [("", "main"), ("@main", "main"), ("@dev", "dev")])
def test_a_hub_load_by_branch_reads_the_cache_ref_once(tmp_path, monkeypatch, given, ref):
    """A hub load by branch (or main) read the cache's ref file 7 times (loftup's lookups, then
    huggingface_hub's for each file); once now, the commit it names passed on. The branch
    ``dev`` names another commit than main: its upsampler is the one loaded."""
    model, folder, (lr, image) = _own_upsampler(tmp_path)
    other, other_folder, _ = _own_upsampler(tmp_path, heads=4, seed=1)
    repo = _two_commits(tmp_path / "hub", "someone/my-up", folder, other_folder, "dev")
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)  # no folder someone/ here: the hub id is the hub's
    seen = _count_opens(monkeypatch, repo / "refs" / ref)
    loaded = load_upsampler(f"someone/my-up{given}")
    assert len(seen) == 1, seen
    want = other if ref == "dev" else model
    assert loaded.config == want.config
    with torch.no_grad():
        assert torch.equal(loaded(lr, image), want(lr, image))


def _count_walks(monkeypatch) -> list:
    """A list of the walks of a pickle made in this process (each :class:`Walk` that was asked
    for an object: one a file, however many pickles it holds), its :meth:`~Walk.next` wrapped
    only to count: each does what it did."""
    walks = []
    next_object = Walk.next

    def counting(self):
        if not any(w is self for w in walks):
            walks.append(self)
        return next_object(self)

    monkeypatch.setattr(Walk, "next", counting)
    return walks


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "old"])
def test_a_refused_files_pickle_is_walked_once(tmp_path, monkeypatch, zipped, protocol):
    """A LoftUp saved whole, refused for its objects, had its pickle walked 3 times (a zip
    archive's: its members' sizes checked, then its protocol read and its way out told, each
    walking it again; the old format's twice); once now, the way out told from that walk."""
    upsampler = LoftUp(dim=8, n_freqs=2)
    path = tmp_path / "whole.pt"
    torch.save(upsampler, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
    walks = _count_walks(monkeypatch)
    _, line, _ = told(path)
    assert len(walks) == 1, walks
    assert '.state_dict(), "model_config": m.config.to_dict(), ' in line


def test_a_good_loads_pickle_is_walked_once(tmp_path, monkeypatch):
    """A good zip archive's pickle is walked once, for the check of its members' sizes (which
    a load makes, and a refusal after it would read)."""
    upsampler = LoftUp(dim=8, n_freqs=2, num_heads=2).eval()
    path = tmp_path / "w.pth"
    torch.save(upsampler.state_dict(), path)
    walks = _count_walks(monkeypatch)
    loaded = load_upsampler(path, num_heads=2)
    assert len(walks) == 1, walks
    assert torch.equal(loaded.stem.conv1.weight, upsampler.stem.conv1.weight)
