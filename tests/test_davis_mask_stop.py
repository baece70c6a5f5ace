"""A SIGTERM whose handler runs where Python drops its exception (a generator finalised as it
is dropped, under a profile hook) as ``loftup eval davis --save-masks DIR`` takes DIR's lock
and sweeps it still stops the run: before, it went on, replaced the masks and ended with 0."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from pathlib import Path

import pytest

from eval_data import TEST_BACKBONE, write_davis
from finalisers import signal_in_a_finaliser
from forked import installed
from loftup.cli import main

pytest.importorskip("fcntl")

#: what the eval davis command imports, once for every case: conftest's ``forked``
PREPARED = ["loftup.eval.video", "matplotlib.figure", "transformers.models.dinov2",
            *installed("triton")]  # fmt: skip


def _davis(root: Path, masks: Path, scores: Path, size: str) -> list[str]:
    return ["eval", "davis", "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            "bilinear", "--size", size, "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(scores)]  # fmt: skip


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_sigterm_lost_in_the_lock_attempts_generator_stops_the_run(tmp_path, forked):
    """The lock's attempts (``for _ in tries(path)``, left at the first) are a generator
    closed as the function returns; SIGTERM at that close: status 143, DIR's masks those of
    the run before, no scores written, no staging folder left, nothing said of the
    finaliser."""
    forked.run(_stopped_in_the_sweep, tmp_path / "log", tmp=str(tmp_path))


def _stopped_in_the_sweep(tmp: str) -> None:
    root = write_davis(Path(tmp) / "davis", sequences=("bear",), frames=3)
    masks, scores = Path(tmp) / "masks", Path(tmp) / "r2.json"
    assert main(_davis(root, masks, Path(tmp) / "r1.json", "28")) == 0
    before, entries = _files(masks), sorted(masks.iterdir())
    started, fired = set(), []

    def hook(frame, event, arg):
        if fired or event != "call" or frame.f_code.co_name != "tries":
            return
        if id(frame) in started:  # resumed: closed, the lock taken at the first attempt
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        started.add(id(frame))

    err = io.StringIO()
    sys.setprofile(hook)
    try:
        with contextlib.redirect_stderr(err):
            code = main(_davis(root, masks, scores, "56"))
    finally:
        sys.setprofile(None)
    said = err.getvalue()
    assert fired, "the lock's attempts were never closed"
    assert (code, "terminated (SIGTERM)" in said, "Exception ignored" in said) == (
        143, True, False,
    ), said[-2000:]  # fmt: skip
    assert _files(masks) == before and sorted(masks.iterdir()) == entries  # (no staging folder)
    assert not scores.exists()


@pytest.mark.parametrize(
    "where, code, replaced",
    [("finish", 143, False), ("publish-start", 143, False), ("publish-discard", 0, True),
     ("publish-end", 143, True)],
    ids=["in-finish", "as-publish-starts", "masks-in-place", "after-the-move"],
)  # fmt: skip
def test_a_sigterm_swallowed_as_the_run_ends_stops_it_before_its_masks_move_in(
    tmp_path, forked, where, code, replaced
):
    """SIGTERM swallowed as the scores and figure are written (``finish``), or as the masks'
    move begins: status 143 and DIR's masks those of the run before (they were replaced: no
    check came after the frames). Once the masks are in place the move is done, and a stop
    swallowed as it ends (the earlier masks removed) is forgotten, as a signal held while they
    moved in is: status 0 (it was 143, though the masks were replaced). One swallowed after
    the move, as the command goes on, ends it as one raised there does: 143, the masks in place
    (the move's done() marked the command's own scope: it was forgotten, status 0)."""
    forked.run(_stopped_at_the_end, tmp_path / "log", tmp=str(tmp_path), where=where,
               code=code, replaced=replaced)  # fmt: skip


def _stopped_at_the_end(tmp: str, where: str, code: int, replaced: bool) -> None:
    import loftup.eval.video as video
    from loftup.eval.mask_staging import MaskStaging

    root = write_davis(Path(tmp) / "davis", sequences=("bear",), frames=3)
    masks, scores = Path(tmp) / "masks", Path(tmp) / "r2.json"
    assert main(_davis(root, masks, Path(tmp) / "r1.json", "28")) == 0
    before, entries = _files(masks), sorted(masks.iterdir())
    finish, publish, discard = video.finish, MaskStaging.publish, MaskStaging.discard

    def finishing(*args, **kwargs):
        results = finish(*args, **kwargs)
        if where == "finish":
            signal_in_a_finaliser()
        return results

    def publishing(self, results):
        if where == "publish-start":
            signal_in_a_finaliser()
        publish(self, results)
        if where == "publish-end":
            signal_in_a_finaliser()

    def discarding(self):  # (this run's: in publish, the masks in place)
        if where == "publish-discard":
            signal_in_a_finaliser()
        discard(self)

    video.finish, MaskStaging.publish, MaskStaging.discard = finishing, publishing, discarding
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(_davis(root, masks, scores, "56"))
    said = err.getvalue()
    assert (status, "Exception ignored" in said) == (code, False), said
    assert (_files(masks) != before) == replaced, "replaced" if not replaced else "not replaced"
    assert sorted(masks.iterdir()) == entries  # (no staging folder left)
