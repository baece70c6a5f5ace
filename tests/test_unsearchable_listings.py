"""A folder this user may read but not search (mode 644, or another user's 700 on the way), met
by ``loftup upsample``'s folders and globs and training's listing: said once, naming the folder
to fix, where its images were each "gone since its folder was listed", its sub-folders "cannot
be read", and training listed its images to fail reading them. The ``unsearchable`` and
``locked`` fixtures (conftest) refuse them as root too; as another user the modes do."""

from __future__ import annotations

import os
import warnings

import pytest

from loftup.data.images import list_images
from loftup.extract import collect_inputs
from loftup.listing import passed_over


@pytest.fixture
def tree(tmp_path, unsearchable, locked, monkeypatch):
    """t/x.png, t/a/b/z.png; t/noexec (read, not searched) holding q.png and sub/r.png, and no
    b; t/locked (neither) holding b/l.png. The current folder: tmp_path."""
    for rel in ("t/x.png", "t/a/b/z.png", "t/noexec/q.png", "t/noexec/sub/r.png",
                "t/locked/b/l.png"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    unsearchable(tmp_path / "t" / "noexec")
    unsearchable(tmp_path / "t" / "locked")
    locked(tmp_path / "t" / "locked")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _denied(folder: str) -> str:
    """What a path behind ``folder`` (relative to the current one) is said to be."""
    where = os.path.realpath(folder)
    return (f"permission denied ({where} cannot be searched by this user); have {where} made "
            "searchable for this user (chmod a+x, by its owner) or use a copy of it where this "
            "user may look")  # fmt: skip


def _noexec() -> tuple[str, str]:
    return "t/noexec", f"a folder whose files cannot be looked at: {_denied('t/noexec')}"


def _said(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    jobs, missing = collect_inputs(specs)
    return sorted(j.stem for j in jobs), sorted(missing)


def test_a_folder_read_but_not_searched_is_said_once_by_upsample_s_folders_and_globs(tree):
    """``loftup upsample t`` said "t/noexec/q.png: gone since its folder was listed
    (Permission denied)" for each image, and "t/noexec/sub: a folder that cannot be read"."""
    locked = ("t/locked", "a folder that cannot be read (Permission denied)")
    assert _said(["t"]) == (["a/b/z", "x"], [locked, _noexec()])
    assert _said(["t/noexec"]) == ([], [_noexec()])
    for spec in ("t/*/*.png", "t/noexec/*.png", "t/**/*.png"):
        stems, missing = _said([spec])
        assert _noexec() in missing, (spec, missing)
        assert not [m for m in missing if m[0].startswith("t/noexec/")], (spec, missing)
    assert passed_over("t/noexec/q.png") == _denied("t/noexec")  # was "gone since ... listed"


def test_training_s_listing_leaves_out_a_folder_read_but_not_searched_and_says_so(tree):
    """list_images listed t/noexec/q.png as an image (the listing's d_type says a regular
    file), to fail when training read it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = list_images("t")
    assert [str(p) for p in found] == ["t/a/b/z.png", "t/x.png"]
    said = [str(w.message) for w in caught]
    assert "skipped {}: {}; its images are left out".format(*_noexec()) in said, said
    assert not [s for s in said if "t/noexec/" in s], said


def test_a_glob_s_fixed_part_behind_a_folder_not_searched_names_that_folder(tree):
    """``t/*/b/*.png`` said "t/noexec/b: a folder that cannot be read", where t/noexec (which
    can be listed) has no b, and said t/locked/b so without naming t/locked, the folder to
    fix; a fixed name behind a folder that has it, or cannot be listed, may be there."""
    behind_locked = ("t/locked/b", f"a folder that cannot be read: {_denied('t/locked')}")
    assert _said(["t/*/b/*.png"]) == (["z"], [behind_locked])
    sub = ("t/noexec/sub", f"a folder that cannot be read: {_denied('t/noexec')}")
    assert _said(["t/noexec/sub/*.png"]) == ([], [sub])
    assert _said(["t/noexec/sub/**/*.png"]) == ([], [("t/noexec/sub", _denied("t/noexec"))])
    q = [("t/locked/q.png", _denied("t/locked")), ("t/noexec/q.png", _denied("t/noexec"))]
    assert _said(["t/*/q.png"]) == ([], q)  # t/locked cannot be listed: q.png may be there
    nothing = ("no such file, folder or matching glob",)
    for spec in ("t/noexec/nope/*.png", "t/noexec/nope.png", "t/noexec/nope/**/*.png"):
        assert [why for _, why in _said([spec])[1]] == list(nothing), spec


def test_a_path_given_whose_folder_is_seen_to_lack_it_is_no_such_file(tree):
    """``load_image("t/noexec/nope.png")`` (and a config, a data folder, an upsampler's path)
    said "permission denied (t/noexec cannot be searched ...)", where t/noexec, which can be
    listed, holds no ``nope``; one it holds, or one behind ``..`` in it, is denied still."""
    import loftup
    from loftup.data.folders import data_folder
    from loftup.errors import PathPermissionError, UsageError
    from loftup.io import ImageReadError
    from loftup.train.config.yaml_text import read_yaml

    calls = {
        "no such image file": lambda: loftup.load_image("t/noexec/nope.png"),
        "no config file": lambda: read_yaml("t/noexec/nope.yaml"),
        "does not exist": lambda: data_folder("t/noexec/nope"),
        "no such file or folder": lambda: loftup.load_upsampler("t/noexec/nope.pt"),
    }
    for said, call in calls.items():
        with pytest.raises((ImageReadError, UsageError, loftup.WeightsNotFoundError)) as caught:
            call()
        assert said in str(caught.value), (said, caught.value)
    for path in ("t/noexec/q.png", "t/noexec/../x.png"):
        with pytest.raises(PathPermissionError) as caught:
            loftup.load_image(path)
        assert _denied("t/noexec") in str(caught.value), (path, caught.value)
