"""`loftup eval davis --save-masks`: mask paths that differ only in case are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eval_data import TEST_BACKBONE, write_davis
from loftup.cli import main
from loftup.errors import UsageError
from loftup.eval.datasets import DavisSequence
from loftup.eval.video import check_mask_names


def test_sequences_whose_names_differ_only_in_case_are_refused_before_any_work(tmp_path, capsys):
    """--save-masks writes FOLDER/<sequence>/<frame>.png: sequences "bear" and "Bear" wrote
    into one folder on a case-insensitive disk (macOS, Windows), each overwriting the other's
    masks, and the folder held a mixture that scores as neither."""
    write_davis(tmp_path / "davis", sequences=("bear", "Bear"), frames=3)
    masks = tmp_path / "masks"
    args = ["eval", "davis", "--root", str(tmp_path / "davis"), "--backbone", TEST_BACKBONE,
            "--upsampler", "bilinear", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the sequences 'bear' and 'Bear' differ only in case" in err
    assert "rename one, or leave out --save-masks" in err
    assert not masks.exists() and not (tmp_path / "r.json").exists()


def _seq(name: str, *stems: str) -> DavisSequence:
    frames = tuple(Path(f"/d/JPEGImages/480p/{name}/{s}.jpg") for s in stems)
    return DavisSequence(name, frames, tuple(f.with_suffix(".png") for f in frames))


def test_frames_whose_names_differ_only_in_case_are_refused():
    with pytest.raises(UsageError, match=r"frames of sequence car 'a1' and 'A1' differ only"):
        check_mask_names([_seq("bear", "a1", "b1"), _seq("car", "a1", "A1")], "m")
    # distinct names, and a sequence listed twice (its masks are the same files): fine
    check_mask_names([_seq("bear", "a1", "b1"), _seq("car", "a1", "b1"), _seq("car", "a1")], "m")


def _davis(root: Path, masks: Path, *extra: str) -> list[str]:
    return ["eval", "davis", "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            "bilinear", "--size", "28", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(root.parent / "r.json"), *extra]  # fmt: skip


def test_a_masks_folder_inside_the_dataset_is_refused_and_its_annotations_kept(tmp_path, capsys):
    """--save-masks ROOT/Annotations/480p wrote the predictions over the ground truth (and a
    second run then scored J&F 100 against its own masks)."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    annotations = root / "Annotations" / "480p"
    before = {p: p.read_bytes() for p in annotations.rglob("*.png")}
    for inside in (annotations, root / "masks"):
        assert main(_davis(root, inside)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "is inside the dataset's --root" in err
    assert {p: p.read_bytes() for p in annotations.rglob("*.png")} == before
    assert not (root / "masks").exists() and not (tmp_path / "r.json").exists()


def test_a_folder_of_other_files_is_refused(tmp_path, capsys):
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    (masks / "bear").mkdir(parents=True)
    (masks / "bear" / "00000.png").write_bytes(b"someone else's")
    (masks / "notes.txt").write_text("mine")
    assert main(_davis(root, masks)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "holds files that no loftup eval davis run wrote" in err
    assert (masks / "bear" / "00000.png").read_bytes() == b"someone else's"
    assert sorted(p.name for p in masks.iterdir()) == ["bear", "notes.txt"]


def test_a_second_run_replaces_the_first_runs_masks_whole(tmp_path):
    """A full run into DIR, then a shorter one (--max-frames 3 --limit 1) into DIR: the folder
    held the second run's masks of its frames and the first run's of every other, unsaid."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=5)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    assert len(list(masks.rglob("*.png"))) == 10
    assert main(_davis(root, masks, "--max-frames", "3", "--limit", "1")) == 0
    assert sorted(str(p.relative_to(masks)) for p in masks.rglob("*.png")) == [
        "bear/00000.png", "bear/00001.png", "bear/00002.png",
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    assert sorted(p.name for p in masks.iterdir()) == [
        ".loftup-eval-davis-masks",
        ".loftup-eval-davis-masks.lock",
        "bear",
    ]
    umask = os.umask(0o022)
    os.umask(umask)
    assert masks.stat().st_mode & 0o777 == 0o777 & ~umask  # a new folder's, not mkdtemp's 0o700


def test_a_run_that_fails_leaves_the_masks_folder_as_it_was(tmp_path, capsys):
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=4)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    before = {p: p.read_bytes() for p in masks.rglob("*") if p.is_file()}
    frame = root / "JPEGImages" / "480p" / "car" / "00002.jpg"
    frame.write_bytes(frame.read_bytes()[:-300])  # its header reads; its pixels do not
    assert main(_davis(root, masks, "--size", "56")) == 2  # other masks, then an error
    assert "00002.jpg" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in masks.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    assert not list(masks.glob(".loftup-staging-*"))  # its staging folder removed
    # a new folder: removed with the folders made for it (they were left, empty)
    assert main(_davis(root, tmp_path / "new" / "masks", "--size", "56")) == 2
    assert not (tmp_path / "new").exists()
