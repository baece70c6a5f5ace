"""`loftup eval davis --save-masks DIR` killed (SIGKILL: `kill -9`, the OOM killer) at any point
of putting its masks in place: DIR holds one run's masks whole, or says it does not, and the
next run puts it right. Its DataLoader workers, outliving it, do not keep DIR locked."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from davis_scorer import score_results
from eval_data import TEST_BACKBONE, write_davis
from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_staging import MaskStaging
from pasted import ODD, bash, needs_bash
from processes import src_env

pytest.importorskip("fcntl")

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"  # the file whose lock a run holds


def _run(masks: Path, names: list[str], value: int) -> None:
    """A run's end, as ``loftup eval davis --save-masks MASKS`` does it: the masks of
    ``names`` (3 frames each, every pixel ``value``) staged, then put in place."""
    staging = MaskStaging(str(masks), str(masks.parent / "davis"), names)
    for name in names:
        for frame in ("00000", "00001", "00002"):
            staging.save(torch.full((4, 6), value, dtype=torch.uint8), name, frame, None)
    staging.publish({})


def _killed_at_a_rename(masks: Path, k: int, when: str) -> None:
    """:func:`_run` of bear and car, this process killed (SIGKILL) before or after the k-th
    rename into ``masks`` (the mark, a sequence folder) or out of it."""
    replace, count = os.replace, [0]

    def replace_or_die(src, dst, **kw):
        ours = masks in (Path(src).parent, Path(dst).parent)
        count[0] += ours
        if ours and when == "before" and count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst, **kw)
        if ours and when == "after" and count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_or_die  # in this child process only
    _run(masks, ["bear", "car"], 2)


def _masks(folder: Path) -> dict:
    """The sequence folders' files (the hidden ones aside: the mark, staging folders)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not str(p.relative_to(folder)).startswith(".")}  # fmt: skip


# the renames of a run of two sequences over an earlier run's three: 1 the staging folder to
# its moving name, 2 the mark saying the masks are incomplete, 3-5 the earlier folders out,
# 6-7 the new ones in, 8 the run's own mark
@pytest.mark.parametrize("when,k", [("before", 1), ("after", 1), ("after", 2), ("after", 4),
                                    ("after", 6), ("after", 7), ("after", 8)])  # fmt: skip
def test_a_run_killed_while_its_masks_move_in_leaves_one_run_s_masks_or_says_so(tmp_path, when,
                                                                                 k):  # fmt: skip
    """kill -9 as the masks moved in left DIR with the new run's bear beside the earlier
    run's car and dog (the mark listing all three), a mix the next run kept as one run's;
    killed after its mark, the next run moved the replaced dog back beside its bear and car;
    killed writing the mark, its temporary file made every later run refuse DIR."""
    masks = tmp_path / "masks"
    _run(masks, ["bear", "car", "dog"], 1)  # the earlier run's
    before = _masks(masks)
    killed = multiprocessing.get_context("fork").Process(
        target=_killed_at_a_rename, args=(masks, k, when)
    )
    killed.start()
    killed.join()
    assert killed.exitcode == -signal.SIGKILL
    seqs = sorted(p.name for p in masks.iterdir() if not p.name.startswith("."))
    try:
        listed = complete_masks(masks)
    except LoftUpError as e:  # marked: what our scorer reads refuses it too
        assert f"{masks} holds incomplete masks" in str(e) and "run loftup eval davis" in str(e)
        with pytest.raises(LoftUpError, match="holds incomplete masks"):
            score_results(tmp_path / "davis", masks, ["bear", "car"])
        # no folder a loftup from before the journal removes (it removed every staging
        # folder it found, the earlier masks in this one with it): it refuses DIR instead
        assert not list(masks.glob(".loftup-staging-*"))
    else:  # unmarked: one run's masks, whole
        new = {f"{n}/0000{i}.png" for n in ("bear", "car") for i in range(3)}
        assert _masks(masks) == before or set(_masks(masks)) == new
        assert listed == seqs
        assert (when, k) in {("before", 1), ("after", 1), ("after", 8)}

    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the next run's start
    seqs = sorted(p.name for p in masks.iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, *seqs]  # nothing else left
    assert complete_masks(masks) == seqs
    if k == 8:  # killed after its mark: its masks
        assert seqs == ["bear", "car"] and not set(_masks(masks).values()) & set(before.values())
    else:  # before it: the earlier run's, as they were
        assert _masks(masks) == before


def test_a_mix_whose_staging_folder_is_gone_stays_marked_until_a_run_replaces_it(tmp_path):
    """A killed run's staging folder removed by hand (its earlier masks with it): the mix
    cannot be undone, and must not be marked as one run's by the next run, even one that
    fails, until a run puts its own masks in place."""
    masks = tmp_path / "masks"
    _run(masks, ["bear", "car", "dog"], 1)
    killed = multiprocessing.get_context("fork").Process(
        target=_killed_at_a_rename, args=(masks, 6, "after")
    )
    killed.start()
    killed.join()
    (staging,) = masks.glob(".loftup-moving-*")
    shutil.rmtree(staging)
    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # a run that failed
    with pytest.raises(LoftUpError, match="holds incomplete masks"):
        complete_masks(masks)
    _run(masks, ["car"], 3)
    assert complete_masks(masks) == ["car"]
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "car"]


def _killed_repairing(masks: Path, j: int) -> None:
    """The next run's start (its repair of what a killed run left), this process killed
    (SIGKILL) after the j-th rename into ``masks`` or out of it."""
    replace, count = os.replace, [0]

    def replace_or_die(src, dst, **kw):
        replace(src, dst, **kw)
        count[0] += masks in (Path(src).parent, Path(dst).parent)
        if count[0] == j:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_or_die  # in this child process only
    MaskStaging(str(masks), str(masks.parent / "davis"), ["bear"]).discard()


def _fork(target, *args) -> int:
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join()
    return child.exitcode


# killed as its bear moved in (k 6) or with dog still to move out (k 4); then the next run
# killed after its j-th rename putting them back (the last: the mark)
@pytest.mark.parametrize("k,j", [(6, 1), (6, 2), (6, 4), (6, 5), (4, 1), (4, 3)])
def test_a_run_killed_while_it_puts_back_a_killed_run_s_masks_leaves_them_to_the_next(tmp_path,
                                                                                      k, j):  # fmt: skip
    """Each step of putting back is done only where it is still to be done: a second kill
    leaves the mark saying incomplete, and the run after it finishes the work."""
    masks = tmp_path / "masks"
    _run(masks, ["bear", "car", "dog"], 1)
    before = _masks(masks)
    assert _fork(_killed_at_a_rename, masks, k, "after") == -signal.SIGKILL
    assert _fork(_killed_repairing, masks, j) == -signal.SIGKILL
    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the third run
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear", "car", "dog"]
    assert _masks(masks) == before and complete_masks(masks) == ["bear", "car", "dog"]


def test_a_move_in_the_run_cannot_undo_keeps_the_folder_holding_the_earlier_masks(tmp_path):
    """A mark this version cannot read the move-in from (a later loftup's, say): the run
    left it marked, and then removed the staging folder it named, the earlier masks in it."""
    masks = tmp_path / "masks"
    _run(masks, ["bear", "car"], 1)
    before = _masks(masks)
    assert _fork(_killed_at_a_rename, masks, 5, "after") == -signal.SIGKILL  # both moved out
    mark = json.loads((masks / MARK).read_text())
    mark["incomplete"]["before"] = {"text": mark["incomplete"]["before"]}  # a later format
    (masks / MARK).write_text(json.dumps(mark))
    MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"]).discard()  # the next run
    (moving,) = masks.glob(".loftup-moving-*")
    (replaced,) = moving.glob(".replaced-*")
    assert _masks(replaced) == before  # (bear and car, kept whole)
    with pytest.raises(LoftUpError, match="holds incomplete masks"):
        complete_masks(masks)


@needs_bash
@pytest.mark.parametrize("why", ["ENOLCK", "ENOSYS"])  # NFS without lockd; Lustre's noflock
@pytest.mark.parametrize("name", ["masks", *ODD])
def test_without_locks_the_reader_is_told_how_to_put_the_earlier_masks_back(
    tmp_path, monkeypatch, why, name
):
    """Where the file system keeps no locks no run puts a killed run's move-in right, yet the
    reader was told to run again for it, and the warning to delete the staging folders (the
    earlier masks in one of them). ENOSYS: the run was refused ('could not be written
    (Function not implemented)') where the reader read it as no locks. The steps, pasted into
    bash as the command line prints them, do it in a folder whose name holds a newline too
    (shlex.quote's '...' of the escaped name named a folder that does not exist)."""
    import errno
    import fcntl
    import warnings

    from loftup.escaping import printable, shell_quoted

    def no_locks(fd, op):
        raise OSError(getattr(errno, why), os.strerror(getattr(errno, why)))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    warnings.simplefilter("ignore")  # (said once per run: a test of its own)
    masks = tmp_path / name
    _run(masks, ["bear", "car", "dog"], 1)
    before = _masks(masks)
    assert _fork(_killed_at_a_rename, masks, 6, "after") == -signal.SIGKILL  # bear in
    with pytest.raises(LoftUpError) as info:
        complete_masks(masks)
    message = printable(str(info.value))  # as the command line says it
    assert "run loftup eval davis" not in message and "keeps no locks" in message
    (moving,) = masks.glob(".loftup-moving-*")
    stale = masks / ".loftup-moving-st4l3run"  # an earlier killed run's, as without locks
    shutil.copytree(moving, stale)  # they pile up: the by-hand steps named them all by glob
    commands = message.split("do it while no run writes there: ")[1]
    assert str(stale) not in commands and "*" not in commands
    assert commands.endswith(f"; rm -rf {shell_quoted(moving)}")
    bash(commands.replace("; ", " && "))  # what it says
    assert _masks(masks) == before and complete_masks(masks) == ["bear", "car", "dog"]
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, stale.name, "bear", "car", "dog"]


#: ``loftup`` ARGS... with 1 DataLoader worker, stopped in the middle of the run (the worker's
#: pid printed) until killed.
STOPPED_WITH_A_WORKER = """
import multiprocessing, sys, time
import loftup.eval.video as video
def stop(*args, **kw):
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(600)
video.propagate_video = stop
from loftup.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _davis(root: Path, masks: Path, *extra: str) -> list[str]:
    return ["eval", "davis", "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            "bilinear", "--size", "28", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(root.parent / "r.json"), *extra]  # fmt: skip


def test_a_worker_outliving_a_killed_run_leaves_the_folder_unlocked(tmp_path):
    """The DataLoader workers (forked) kept a copy of the lock's descriptor: a run killed (the
    OOM killer) while a worker was busy, or stopped, left the folder locked as long as the
    worker lived, and the next run was refused as 'being written by another run'."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    env = src_env()
    args = _davis(root, masks, "--workers", "1")
    run = subprocess.Popen([sys.executable, "-c", STOPPED_WITH_A_WORKER, *args], env=env,
                           stdout=subprocess.PIPE)  # fmt: skip
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert len(workers) == 1
    try:
        os.kill(workers[0], signal.SIGSTOP)  # it lives on, and does nothing, while
        run.kill()  # the run is killed
        assert run.wait() == -signal.SIGKILL
        assert main(_davis(root, masks)) == 0  # the next run
        assert complete_masks(masks) == ["bear"] and (masks / "bear" / "00001.png").is_file()
    finally:
        os.kill(workers[0], signal.SIGKILL)
        run.stdout.close()
