"""loftup.extract.inputs: how the inputs of ``loftup upsample`` are listed (more in
tests/test_extract.py and tests/test_upsample_inputs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loftup.extract import collect_inputs
from loftup.listing import passed_over


def _tree(root: Path) -> None:
    """Folders of one name in two places, a folder reached by two names, a link to a file
    beside it and one to a file elsewhere, and a linked sub-folder."""
    for rel in ("a/cam/x.png", "a/cam/y.png", "b/cam/z.png", "data/x.png", "data/w.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (root / "datalink").symlink_to("data")
    (root / "data" / "latest.png").symlink_to("w.png")
    (root / "links").mkdir()
    (root / "links" / "x.png").symlink_to("../data/x.png")
    (root / "links" / "far.png").symlink_to("../b/cam/z.png")
    (root / "links" / "cam").symlink_to("../a/cam")


def test_each_job_is_its_file_and_a_file_by_one_name_is_one_job(tmp_path, monkeypatch):
    """A listing resolves each folder once, not each file: a folder's real folder is that of
    the folder as listed, so folders of one name in two places stay apart, and one folder by
    two names is one; each job is the file its input names, links followed."""
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative inputs, as typed
    jobs, missing = collect_inputs(["a", "b", "datalink", "links", "data"])
    assert missing == []
    for job in jobs:
        assert job.path == Path(job.given).resolve() and job.path.is_file(), job
    real = tmp_path.resolve()
    assert [(j.stem, str(j.given), j.path.relative_to(real).as_posix()) for j in jobs] == [
        ("cam/x", "a/cam/x.png", "a/cam/x.png"),
        ("cam/y", "a/cam/y.png", "a/cam/y.png"),
        ("cam/z", "b/cam/z.png", "b/cam/z.png"),
        ("latest", "datalink/latest.png", "data/w.png"),  # a name of its own, as given first
        ("w", "datalink/w.png", "data/w.png"),
        ("x", "datalink/x.png", "data/x.png"),  # data/x.png and links/x.png: one file, one name
        ("far", "links/far.png", "b/cam/z.png"),
    ]


def test_a_listing_resolves_each_folder_once_not_each_file(tmp_path, monkeypatch):
    """Each file's folder was resolved for each file, and the file again (200k files in 4
    folders: 17 s of CPU to list them, 10 s with a folder resolved once): a folder is
    resolved once, and a file only where it is a link."""
    for folder, n in (("data", 20), ("cam", 10)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            (tmp_path / folder / f"{folder}{i:02d}.png").write_bytes(b"")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "x.png").symlink_to(tmp_path / "data" / "data00.png")
    calls = []
    resolve = Path.resolve

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return resolve(path, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", counted)
    jobs, _ = collect_inputs([str(tmp_path / f) for f in ("data", "cam", "links")])
    assert len(jobs) == 31
    assert sorted(calls) == sorted(
        [str(tmp_path / f) for f in ("data", "cam", "links")]
        + [str(tmp_path.resolve() / "links" / "x.png")]
    )


def test_a_folder_whose_link_is_moved_is_listed_where_it_points_now(tmp_path):
    """The real folders of one listing are not kept for the next: a link moved between two
    listings (``latest`` -> ``day1``, then ``day2``) gives the files of the folder it names."""
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "x.png").write_bytes(b"")
    latest = tmp_path / "latest"
    latest.symlink_to("day1")
    assert [j.path.parent.name for j in collect_inputs([str(latest)])[0]] == ["day1"]
    latest.unlink()
    latest.symlink_to("day2")
    assert [j.path.parent.name for j in collect_inputs([str(latest)])[0]] == ["day2"]


def _loops(root: Path, *links: tuple[str, str]) -> None:
    """t/x.png, t/a/y.png, and ``links`` (name under t, target)."""
    (root / "t" / "a").mkdir(parents=True)
    (root / "t" / "x.png").write_bytes(b"")
    (root / "t" / "a" / "y.png").write_bytes(b"")
    for name, target in links:
        (root / "t" / name).symlink_to(target)


def test_a_recursive_glob_goes_round_a_loop_of_links_once(tmp_path):
    """A ``**`` glob went into a link back up (t/self -> .) as deep as the system resolves
    links: t/x.png was named t/self/self/.../x.png, 40 folders deep. Each real folder is
    gone into once, by its shortest name."""
    _loops(tmp_path, ("self", "."))
    for spec in ("t/**/*.png", "t/**"):
        jobs, missing = collect_inputs([str(tmp_path / spec)])
        assert [j.given.relative_to(tmp_path) for j in jobs] == [Path("t/a/y.png"), Path("t/x.png")]
        assert [j.stem for j in jobs] == ["y", "x"] and missing == []
    # a folder reached by two names: the shorter kept (Python's glob named it both ways)
    (tmp_path / "t" / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "t" / "a" / "b" / "c" / "z.png").write_bytes(b"")
    (tmp_path / "t" / "c").symlink_to("a/b/c")
    jobs, _ = collect_inputs([str(tmp_path / "t" / "**" / "z.png")])
    assert [j.given.relative_to(tmp_path) for j in jobs] == [Path("t/c/z.png")]


def test_a_recursive_glob_over_two_loops_of_links_ends(tmp_path):
    """Two loops (t/self -> ., t/a/up -> ..) doubled the names at each of 40 levels: the glob
    never ended. Run apart, so that a hang fails the test instead of stopping it."""
    _loops(tmp_path, ("self", "."), ("a/up", ".."))
    code = (
        "import sys; from loftup.extract import collect_inputs; "
        "jobs, missing = collect_inputs([sys.argv[1]]); "
        "print(sorted(str(j.given) for j in jobs), missing)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    spec = str(tmp_path / "t" / "**" / "*.png")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, spec], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"collect_inputs([{spec!r}]) still running after 60 s")
    assert done.returncode == 0, done.stderr
    want = [str(tmp_path / "t" / "a" / "y.png"), str(tmp_path / "t" / "x.png")]
    assert done.stdout.strip() == f"{want} []"


def test_a_link_into_a_folder_this_user_may_not_search_says_so(tmp_path, unsearchable):
    """A link to an image in another user's folder of mode 700 was "a link to ..., which does
    not exist (moved or deleted?)" where training listed it, and a PermissionError traceback
    from loftup upsample, given the link, its folder or a glob; the image is there, unseen."""
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.png").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "b.png").write_bytes(b"")
    link = tmp_path / "photos" / "a.png"
    link.symlink_to(tmp_path / "secret" / "a.png")
    unsearchable(tmp_path / "secret")
    secret = tmp_path / "secret"
    said = (
        f"a link to {secret / 'a.png'}, which this user may not look at (permission denied: "
        f"{secret} cannot be searched); have {secret} made searchable for this user (chmod "
        "a+x, by its owner) or remove the link"
    )
    for spec in ("photos", "photos/a.png", "photos/*.png"):
        jobs, missing = collect_inputs([str(tmp_path / spec)])
        assert [j.stem for j in jobs] == ([] if spec == "photos/a.png" else ["b"]), spec
        assert missing == [(str(link), said)], spec
    assert passed_over(link) == said  # training's listing, in the same words


@pytest.mark.parametrize(
    "spec", ["t/**/*.png", "t/**", "t/*/*/*.png", "t/**/e/*.png", "t/**/*/*.png"]
)
def test_a_glob_lists_each_folder_once_for_its_matches_and_its_unreadable_ones(
    tmp_path, monkeypatch, spec
):
    """The folders a glob could not read were found by listing them all again: a ``**``
    glob of 2,041 folders listed them 10,205 times (``t/**/*.png``), now 2,041."""
    for rel in ("t/a/b/x.png", "t/a/c/y.png", "t/d/e/z.png", "t/d/f/w.png", "t/v.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    real, listed = os.scandir, []

    def scandir(path="."):
        listed.append(os.path.realpath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    jobs, missing = collect_inputs([str(tmp_path / spec)])
    assert (
        len(jobs) == {"t/*/*/*.png": 4, "t/**/e/*.png": 1, "t/**/*/*.png": 4}.get(spec, 5)
        and missing == []
    )
    assert sorted(listed) == sorted(set(listed)), "a folder listed twice"
    assert len([p for p in listed if os.path.isdir(p)]) == 7  # t, t/a, t/d, the four under them


@pytest.mark.parametrize("spec", ["d/**/*.jpg", "d/*/*.jpg"])
def test_a_glob_holds_one_folder_s_listing_at_a_time(tmp_path, monkeypatch, spec):
    """A glob held every folder's DirEntry objects to its end: 13 times the memory of its
    matches at its peak here (SA-1B's 22M files: 4-5 GB); now one folder's names, 2.7 times."""
    import tracemalloc

    from loftup.extract.globs import search

    for f in range(4):  # 4 folders of 1,000 .jpg and 3,000 .json
        (tmp_path / "d" / f"f{f}").mkdir(parents=True)
        for i in range(3000):
            (tmp_path / "d" / f"f{f}" / f"{i:06d}.json").write_bytes(b"")
            if i % 3 == 0:
                (tmp_path / "d" / f"f{f}" / f"{i:06d}.jpg").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    tracemalloc.start()
    try:
        found, unread = search(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found) == 4000 and unread == []
    held = sys.getsizeof(found) + sum(map(sys.getsizeof, found))
    assert peak < 5 * held, f"peak {peak} bytes for matches of {held}"


def test_a_pipeline_as_the_folders_model_is_refused_before_anything_is_loaded(tmp_path):
    """upsample_folder(..., model=<FeaturePipeline>) loaded it (converting its upsampler to the
    run's dtype in place), then failed with os.fspath's TypeError; a LoftUp itself is run
    (test_upsample_record), a pipeline is told to pass its upsampler, before any work."""
    import torch
    from PIL import Image

    import loftup
    from loftup.extract import upsample_folder

    (tmp_path / "in").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "in" / "a.png")
    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
    told = r"^model is the upsampler \(a LoftUp, or its name or path\), got .*pipeline\.upsampler"
    with pytest.raises(loftup.LoftUpError, match=told):
        upsample_folder(
            tmp_path / "in", tmp_path / "out", model=pipeline, backbone="dinov2_tiny",
            dtype="bfloat16", progress=False,
        )  # fmt: skip
    assert next(pipeline.upsampler.parameters()).dtype == torch.float32
    assert not (tmp_path / "out").exists()


def test_images_in_memory_as_the_folders_inputs_are_told_what_it_takes(tmp_path):
    """upsample_folder([PIL image]) or a tensor failed with os.fspath's bare TypeError
    ("expected str, bytes or os.PathLike object, not Image"): now a UsageError naming what it
    got, what it takes and what takes images in memory, before any work."""
    import numpy as np
    import torch
    from PIL import Image

    import loftup
    from loftup.errors import UsageError
    from loftup.extract import upsample_folder

    picture = Image.new("RGB", (20, 20))
    for inputs, got in (
        ([picture], "got <PIL.Image.Image image mode=RGB size=20x20"),
        (torch.rand(2, 3, 8, 8), r"got a Tensor of shape \(2, 3, 8, 8\)"),
        ((str(tmp_path), np.zeros((8, 8, 3))), r"got an array of shape \(8, 8, 3\)"),
    ):
        told = rf"^inputs takes paths, folders or globs of image files .*, {got}.*; for images "
        with pytest.raises(UsageError, match=told + r"in memory use loftup\.upsample\(image"):
            upsample_folder(inputs, tmp_path / "out", model=loftup.LoftUp(dim=32),
                            backbone="dinov2_tiny", progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists()
