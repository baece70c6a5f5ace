"""``upsample_folder``'s ``inputs`` of every kind of path: a list is one iterable of them among
others (``Path.glob``'s generator, a set, ``dict.keys()``, ``map``), and bytes are a path as
the file system names it."""

from __future__ import annotations

import os

import pytest

from loftup.errors import UsageError
from loftup.extract import upsample_folder
from upsample_helpers import noise_picture


def test_iterables_of_paths_and_bytes_paths_are_inputs(upsampler, tmp_path):
    """Any iterable of paths but a list or tuple was refused as "images in memory" (a
    Path.glob generator, a set, dict keys, map), and bytes paths, which inputs takes on
    purpose, failed with a bare TypeError; each is read as its paths now. What is no path
    is still refused, the advice for images in memory kept for images."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "ab":
        noise_picture(folder / f"{name}.png")
    a, b = str(folder / "a.png"), str(folder / "b.png")
    for i, (inputs, written) in enumerate(
        (
            (folder.glob("*.png"), ["a.pt", "b.pt"]),
            ({a, b}, ["a.pt", "b.pt"]),
            ({a: 1}.keys(), ["a.pt"]),
            (map(str, [b]), ["b.pt"]),
            (os.fsencode(folder / "*.png"), ["a.pt", "b.pt"]),
            ([os.fsencode(b)], ["b.pt"]),
        )
    ):
        out = tmp_path / f"out{i}"
        kw = dict(model=str(upsampler), backbone_size=28, size=32, progress=False)
        assert upsample_folder(inputs, out, **kw).done == len(written), i
        assert sorted(p.name for p in out.glob("*.pt")) == written, i
    told = (
        r"^inputs takes paths, folders or globs of image files \(one, or a list of them\), got 3$"
    )
    with pytest.raises(UsageError, match=told):
        upsample_folder({a, 3}, tmp_path / "never", model=str(upsampler), progress=False)
    with pytest.raises(UsageError, match=told):
        upsample_folder(3, tmp_path / "never", model=str(upsampler), progress=False)
    assert not (tmp_path / "never").exists()
