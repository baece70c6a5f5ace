"""`loftup eval davis --save-masks DIR` interrupted (Ctrl-C), or refused by the disk, while its
masks move in: DIR keeps the earlier run's masks whole, or says it does not and keeps them for
the next run to put back; a reader is refused while a run holds DIR."""

from __future__ import annotations

import errno
import os
import signal
import sys
import warnings
from pathlib import Path

import pytest
import torch

import loftup.atomic
from eval_data import tmpfs
from loftup.errors import LoftUpError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_staging import MaskStaging

pytest.importorskip("fcntl")

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"  # the file whose lock a run holds

#: A davis run's results, as ``publish`` reports them in its errors.
RESULTS = {"task": "davis", "dataset": "davis2017", "backbone": "b", "upsampler": "u",
           "metrics": {"J&F_mean": 0.5, "J_mean": 0.5, "F_mean": 0.5}}  # fmt: skip


def _staged(masks: Path, names: list[str], value: int) -> MaskStaging:
    """A run's masks of ``names`` (2 frames each, every pixel ``value``), staged."""
    staging = MaskStaging(str(masks), str(masks.parent / "davis"), names)
    for name in names:
        for frame in ("00000", "00001"):
            staging.save(torch.full((4, 6), value, dtype=torch.uint8), name, frame, None)
    return staging


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _eio() -> None:
    raise OSError(errno.EIO, "Input/output error")


def _ctrl_c() -> None:
    """A Ctrl-C: SIGINT to this process (Python's handler raises KeyboardInterrupt)."""
    signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("first,then", [(_ctrl_c, _ctrl_c), (_ctrl_c, _eio), (_eio, _eio)])
def test_a_second_ctrl_c_or_a_refusing_disk_while_the_masks_go_back_loses_none(
    tmp_path, monkeypatch, first, then
):
    """Ctrl-C as the earlier masks moved out, and again as they moved back: the second one
    removed the staging folder, the earlier masks in it, and DIR held dog alone for good."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car", "dog"], 1).publish({})
    before = _files(masks)
    staging = _staged(masks, ["bear", "car", "dog"], 2)
    replace, count = os.replace, [0]

    def refused(src, dst):
        count[0] += masks in (Path(src).parent, Path(dst).parent)
        if count[0] in (4, 5):  # the moving folder, the mark, bear out, then car out (4); and
            (first if count[0] == 4 else then)()  # the first move back: bear (5)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(LoftUpError if first is _eio else KeyboardInterrupt) as info:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            staging.publish(RESULTS)
    monkeypatch.setattr(os, "replace", replace)
    (moving,) = masks.glob(".loftup-moving-*") if then is _eio else [None]
    if (first, then) == (_ctrl_c, _eio):  # said, as the refusing disk alone is
        assert [str(w.message) for w in said] == [
            f"--save-masks {masks} was interrupted as this run's masks moved in, and is left "
            f"marked as incomplete, the earlier run's masks in {moving}/.replaced-*: "
            "move nothing out of either; the next run into it puts them back"
        ]
    if then is _eio:  # left as it was: marked, the earlier masks kept for the next run
        if first is _eio:
            assert "could not be written (Input/output error) as this run's masks moved in, " \
                   "and is left marked as incomplete, the earlier run's masks in " \
                   f"{moving}/.replaced-*: move nothing out of either; the next run " \
                   "into it puts them back; the scores: davis2017 b + u: J&F 50.00" in str(info.value)  # fmt: skip
        with pytest.raises(LoftUpError, match="holds incomplete masks"):
            complete_masks(masks)
        MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()
    assert _files(masks) == before and complete_masks(masks) == ["bear", "car", "dog"]


def test_a_ctrl_c_just_after_the_incomplete_mark_leaves_the_masks_complete(tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """Ctrl-C as the mark saying 'incomplete' had just taken its name (its folder being
    flushed), before any mask moved: the mark stayed, and DIR's whole masks were refused."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car"], 1).publish({})
    before = _files(masks)
    staging = _staged(masks, ["bear", "car"], 2)
    fsync, pressed = loftup.atomic._fsync, []

    def flushed(path, *, folder=False):
        if folder and not pressed and "incomplete" in (masks / MARK).read_text():
            pressed.append(path)
            raise KeyboardInterrupt
        fsync(path, folder=folder)

    monkeypatch.setattr(loftup.atomic, "_fsync", flushed)
    with pytest.raises(KeyboardInterrupt):
        staging.publish({})
    assert pressed and _files(masks) == before and complete_masks(masks) == ["bear", "car"]


def _fill_as_bear_moves_in(masks: Path, interrupted: bool):
    """os.replace that, as bear moves into ``masks``, makes the disk full (and then, if
    ``interrupted``, raises KeyboardInterrupt: Ctrl-C)."""
    replace = os.replace

    def fill(src, dst):
        if Path(dst) == masks / "bear" and not (masks.parent / "filler").exists():
            with open(masks.parent / "filler", "wb", buffering=0) as f:
                with pytest.raises(OSError):
                    while True:
                        f.write(b"\0" * 4096)
            if interrupted:
                raise KeyboardInterrupt
        replace(src, dst)

    return fill


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_disk_filling_up_as_the_masks_move_in_leaves_one_run_s_masks_whole(tmp_path,
                                                                            monkeypatch,
                                                                            interrupted):  # fmt: skip
    """The disk full once the masks began to move in: the run's own mark could not be
    written, nor the earlier one put back, and DIR stayed marked incomplete although it held
    the earlier masks whole. Every mark is written before the first move now; putting one in
    place is a rename. With a Ctrl-C then: the earlier masks, whole and marked so."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with tmpfs(disk, size="256k"):
        masks = disk / "masks"
        _staged(masks, ["bear", "car"], 1).publish({})
        before = _files(masks)
        staging = _staged(masks, ["bear", "car"], 2)
        monkeypatch.setattr(os, "replace", _fill_as_bear_moves_in(masks, interrupted))
        if interrupted:
            with pytest.raises(KeyboardInterrupt):
                staging.publish({})
            assert _files(masks) == before
        else:
            staging.publish({})
            assert _files(masks) != before
        assert (disk / "filler").is_file() and complete_masks(masks) == ["bear", "car"]
        assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear", "car"]


def test_a_reader_is_refused_while_a_run_holds_the_folder(tmp_path):
    """complete_masks passed while a run was under way (whose masks may replace these as
    they are read: what reading_masks prevents, test_davis_mask_reader.py)."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car"], 1).publish({})
    staging = _staged(masks, ["bear", "car"], 2)  # hours of work
    with pytest.raises(LoftUpError, match="is being written by a loftup eval davis"):
        complete_masks(masks)
    staging.publish({})
    assert complete_masks(masks) == ["bear", "car"]


def test_a_reader_is_refused_a_sequence_the_mark_lists_and_the_folder_lacks(tmp_path):
    """An older loftup's killed run kept the earlier car in its staging folder: the mark
    listed car, the folder lacked it, and complete_masks passed."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car"], 1).publish({})
    os.rename(masks / "car", tmp_path / "car")
    with pytest.raises(LoftUpError, match="lists the sequence car, which .* lacks"):
        complete_masks(masks)


def test_a_second_ctrl_c_on_any_line_of_putting_back_does_not_stop_it(tmp_path, monkeypatch):
    """Only each step was retried on a second Ctrl-C: one on the loop's own lines stopped the
    putting back, DIR left marked incomplete with the earlier car and bear still moved out."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car", "dog"], 1).publish({})
    before = _files(masks)
    staging = _staged(masks, ["bear", "cat"], 2)
    replace, count = os.replace, [0]

    def refused(src, dst):
        count[0] += masks in (Path(src).parent, Path(dst).parent)
        if count[0] == 4:  # car moves out: the first Ctrl-C
            raise KeyboardInterrupt
        replace(src, dst)

    def ctrl_c_on_every_line(frame, event, arg):  # once the earlier bear is back
        if frame.f_code.co_name.endswith("put_back"):
            if event == "line" and count[0] >= 5:
                _ctrl_c()
            return ctrl_c_on_every_line
        return None

    monkeypatch.setattr(os, "replace", refused)
    sys.settrace(ctrl_c_on_every_line)
    try:
        with pytest.raises(KeyboardInterrupt):
            staging.publish(RESULTS)
    finally:
        sys.settrace(None)
    assert _files(masks) == before and complete_masks(masks) == ["bear", "car", "dog"]


@pytest.mark.parametrize("at", ["the rename to moving", "the run's own mark", "the clean-up"])
def test_a_ctrl_c_as_the_masks_move_in_leaves_one_run_s_masks_and_no_moving_folder(
    tmp_path, monkeypatch, at
):
    """Ctrl-C just after the staging folder took its moving name: the run removed the old
    name, and the moving folder (the run's masks) stayed. Just after the run's own mark took
    its name, or as the moving folder was then removed: the run was interrupted (exit 130),
    the earlier masks put back or the moving folder half removed, though the masks were in
    place: that rename is where the run's work is done, and it now ends as done."""
    masks = tmp_path / "masks"
    _staged(masks, ["bear", "car"], 1).publish({})
    before = _files(masks)
    staging = _staged(masks, ["bear", "car"], 2)
    new = _files(staging.path)
    replace, unlink = os.replace, os.unlink

    def pressed_after(src, dst):
        replace(src, dst)
        if at == "the rename to moving" and Path(dst).name.startswith(".loftup-moving-"):
            _ctrl_c()
        if at == "the run's own mark" and Path(src).name == ".mark-after":
            _ctrl_c()

    def pressed_in(path, *args, **kwargs):
        if at == "the clean-up":
            monkeypatch.setattr(os, "unlink", unlink)  # once
            _ctrl_c()
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", pressed_after)
    monkeypatch.setattr(os, "unlink", pressed_in)
    if at == "the run's own mark":
        staging.publish({})
    else:  # (the clean-up is not held: a Ctrl-C there stops it, and the next run sweeps)
        with pytest.raises(KeyboardInterrupt):
            staging.publish({})
    monkeypatch.undo()
    moving = [p.name for p in masks.iterdir() if p.name.startswith(".loftup-moving-")]
    assert _files(masks) == before if at == "the rename to moving" else \
        {k: v for k, v in _files(masks).items() if k.split("/")[0] in ("bear", "car")} == new  # fmt: skip
    assert sorted(p.name for p in masks.iterdir() if p.name not in moving) == [
        MARK,
        LOCK,
        "bear",
        "car",
    ]
    assert not moving or at == "the clean-up"
    assert complete_masks(masks) == ["bear", "car"]
