"""`loftup eval davis --save-masks DIR` after a run of a loftup from before the journal was
killed while swapping its masks in: such a run wrote its mark listing both runs' sequence
folders, made a `.earlier-*` folder in its staging folder, moved the earlier run's folders
into it, then its own in, then wrote its own mark. The next run leaves one run's masks whole,
or DIR marked as incomplete with the earlier masks kept: never a mix passed as one run's."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from loftup.errors import LoftUpError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_staging import MaskStaging

pytest.importorskip("fcntl")

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"  # the file whose lock a run holds


def _masks(folder: Path, names, value: bytes) -> None:
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "00000.png").write_bytes(value)


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not str(p.relative_to(folder)).startswith(".")}  # fmt: skip


def _older_run_killed(masks: Path, old: list[str], new: list[str], k: int) -> None:
    """DIR as a loftup from before the journal left it, killed after the k-th of its moves."""
    staging = masks / ".loftup-staging-0lderrun"
    _masks(staging, new, b"the killed run's")
    earlier = staging / ".earlier-0lderrun"
    earlier.mkdir()
    mark = {"written_by": "loftup eval davis --save-masks", "sequences": sorted({*old, *new})}
    (masks / MARK).write_text(json.dumps(mark))
    moves = [(masks / n, earlier / n) for n in old] + [(staging / n, masks / n) for n in new]
    for src, dst in moves[:k]:
        os.replace(src, dst)
    if k == len(moves):
        (masks / MARK).write_text(json.dumps({**mark, "sequences": new}))


# a rerun of the same sequences (the earlier run's first, the killed run's after them), one
# of fewer, runs whose folders share no name with the earlier run's, and first runs into a
# new DIR (no earlier masks: nothing tells the killed run's folders from an earlier run's)
@pytest.mark.parametrize("old,new", [(["bear", "car", "dog"], ["bear", "car", "dog"]),
                                     (["bear", "car", "dog"], ["car", "bear"]),
                                     (["bear", "car"], ["cat"]), (["bear"], ["cat", "dog"]),
                                     ([], ["bear", "car", "dog"]), ([], ["cat"])])  # fmt: skip
def test_an_older_loftup_s_run_killed_while_swapping_leaves_no_mix(tmp_path, old, new):
    """Killed as the masks of a rerun moved in (bear in, car and dog yet to come), the next
    run moved car and dog back beside the new bear, removed the earlier bear, and marked the
    mix as one run's."""
    for k in range(len(old) + len(new) + 1):
        masks = tmp_path / str(k) / "masks"
        masks.mkdir(parents=True)
        _masks(masks, old, b"the earlier run's")
        if old:  # (a first run's DIR has no mark)
            (masks / MARK).write_text(json.dumps({"sequences": old}))
        before = _files(masks)
        _older_run_killed(masks, old, new, k)
        MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the next run
        try:
            listed = complete_masks(masks)
        except LoftUpError as e:  # which folder is whose cannot be told: marked, all kept
            assert "holds incomplete masks" in str(e) and old != new  # (a rerun: always told)
            assert "an older loftup's run, which left no word of which folders are whose" \
                   in str(e)  # fmt: skip
            (moving,) = masks.glob(".loftup-moving-*")
            kept = {**_files(masks), **_files(moving / ".earlier-0lderrun")}
            assert {k: v for k, v in kept.items() if v == b"the earlier run's"} == before
            staging = MaskStaging(str(masks), str(tmp_path / "davis"), ["elk"])  # a run
            (staging.path / "elk" / "00000.png").write_bytes(b"a run's")
            staging.publish({})
            MaskStaging(str(masks), str(tmp_path / "davis"), ["elk"]).discard()  # the next
            assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "elk"]
            continue
        killed = {f"{n}/00000.png": b"the killed run's" for n in new}
        assert (listed, _files(masks)) in [(sorted(old), before), (sorted(new), killed)], k
        assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, *listed]


def _killed_undoing(masks: Path, j: int) -> None:
    """The next run's start, this process killed (SIGKILL) after its j-th rename."""
    replace, count = os.replace, [0]

    def replace_or_die(src, dst, **kw):
        replace(src, dst, **kw)
        count[0] += 1
        if count[0] == j:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_or_die  # in this child process only
    MaskStaging(str(masks), str(masks.parent / "davis"), ["bear"]).discard()


@pytest.mark.parametrize("j", [1, 2, 3, 4])
def test_a_run_killed_while_undoing_an_older_loftup_s_swap_leaves_it_to_the_next(tmp_path, j):
    """Undoing a rerun killed as its bear moved in (bear aside, the earlier three back, the
    mark): each step, cut short, is finished by the run after, with no mix left marked."""
    masks = tmp_path / "masks"
    _masks(masks, ["bear", "car", "dog"], b"the earlier run's")
    (masks / MARK).write_text(json.dumps({"sequences": ["bear", "car", "dog"]}))
    before = _files(masks)
    _older_run_killed(masks, ["bear", "car", "dog"], ["bear", "car", "dog"], 4)
    child = multiprocessing.get_context("fork").Process(target=_killed_undoing, args=(masks, j))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the run after
    assert _files(masks) == before and complete_masks(masks) == ["bear", "car", "dog"]
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear", "car", "dog"]


def _killed_after_rename_to(masks: Path, name: str) -> None:
    """The next run's start, this process killed (SIGKILL) after its rename onto ``name``."""
    replace = os.replace

    def replace_or_die(src, dst, **kw):
        replace(src, dst, **kw)
        if Path(dst).name == name:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_or_die  # in this child process only
    MaskStaging(str(masks), str(masks.parent / "davis"), ["bear"]).discard()


@pytest.mark.parametrize("name", [MARK, ".loftup-moving-0lderrun"])
def test_a_run_killed_while_keeping_an_older_loftup_s_earlier_masks_loses_none(tmp_path, name):
    """An older loftup's run (bear, car -> cat) killed after bear moved out: which folder is
    whose cannot be told, so the next run marks DIR and keeps its staging folder under the
    moving name. Killed between the two (the rename done, no mark yet), the run after removed
    that moving folder with the earlier bear in it."""
    masks = tmp_path / "masks"
    _masks(masks, ["bear", "car"], b"the earlier run's")
    (masks / MARK).write_text(json.dumps({"sequences": ["bear", "car"]}))
    before = _files(masks)
    _older_run_killed(masks, ["bear", "car"], ["cat"], 1)
    child = multiprocessing.get_context("fork").Process(
        target=_killed_after_rename_to, args=(masks, name)
    )
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the run after
    with pytest.raises(LoftUpError, match="an older loftup's run, which left no word"):
        complete_masks(masks)
    (moving,) = masks.glob(".loftup-moving-*")
    kept = {**_files(masks), **_files(moving / ".earlier-0lderrun")}
    assert {k: v for k, v in kept.items() if v == b"the earlier run's"} == before
