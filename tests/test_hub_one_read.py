"""A load reads what it needs once: a weights file is opened once (its head told what it is,
then the same open file loaded, its header's record with it)."""

from __future__ import annotations

import builtins
import io
import os

import pytest
import torch

from hub_helpers import _own_upsampler
from loftup import load_upsampler


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
