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


def test_a_set_of_inputs_gives_the_same_jobs_in_every_process(tmp_path):
    """A set's order is its process's hash seed's, another on each torchrun rank, and the
    first input to reach a file names it (a folder and a link to it): the jobs, which each
    rank shares out by their order, were sorted otherwise on each rank (some images computed
    twice, some never). Listed in processes of two hash seeds whose sets put the link and the
    folder in either order, they are one list."""
    import subprocess
    import sys

    (tmp_path / "photos").mkdir()
    (tmp_path / "other").mkdir()
    for name in ("photos/a.png", "photos/b.png", "other/ab.png"):
        noise_picture(tmp_path / name)
    (tmp_path / "link").symlink_to("photos")
    specs = {str(tmp_path / n) for n in ("link", "photos", "other")}

    def run(code: str, seed: int, **env) -> str:
        env = {**os.environ, "PYTHONHASHSEED": str(seed), **env}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    # two seeds whose sets of these paths put the link first in one, the folder in the other
    # (a bare Python each: these take moments, a process that imports torch seconds)
    link = str(tmp_path / "link")
    order = f"s = list({specs!r}); print(s.index({link!r}) < s.index({link[:-4] + 'photos'!r}))"
    seeds = {}
    for seed in range(64):
        seeds.setdefault(run(order, seed), seed)
        if len(seeds) == 2:
            break
    assert len(seeds) == 2, seeds
    code = (
        "import sys\nfrom loftup.extract.inputs import collect_inputs\n"
        "from loftup.extract.run_options import input_specs\n"
        f"jobs, _ = collect_inputs(input_specs({specs!r}))\n"
        "print([(str(j.given), j.stem) for j in jobs])"
    )
    import loftup

    source = os.path.dirname(os.path.dirname(loftup.__file__))  # this loftup, not another
    listed = {run(code, seed, PYTHONPATH=source) for seed in seeds.values()}
    assert len(listed) == 1, listed
    assert "photos" not in listed.pop()  # named by the link, first in sort order
