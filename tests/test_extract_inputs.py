"""loftup.extract.inputs: how the inputs of ``loftup upsample`` are listed (more in
tests/test_extract.py and tests/test_upsample_cli.py)."""

from __future__ import annotations

from pathlib import Path

from loftup.extract import collect_inputs


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
