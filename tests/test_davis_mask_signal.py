"""The signals `loftup eval davis --save-masks DIR` holds while its masks move in (SIGINT,
SIGTERM, SIGHUP): each delivered to the handler it had, at a point where the swap can stop, or
dropped where it was ignored; DIR keeps one run's masks whole."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_signal import ctrl_c_held
from loftup.eval.mask_staging import MaskStaging

pytest.importorskip("fcntl")


def _staged(masks: Path, value: int) -> MaskStaging:
    staging = MaskStaging(str(masks), str(masks.parent / "davis"), ["bear"])
    for frame in ("00000", "00001"):
        staging.save(torch.full((4, 6), value, dtype=torch.uint8), "bear", frame, None)
    return staging


def _masks(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in (folder / "bear").iterdir()}


class Stopped(Exception):
    """What a scheduler's SIGTERM handler raises (the command line's: Terminated)."""


@pytest.fixture
def handlers():
    """The test's signal handlers put back after it."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in kept.items():
        signal.signal(s, h)


def _signal_at_moving(monkeypatch, signum):
    """``signum`` to this process just after the staging folder took its moving name."""
    replace = os.replace

    def sent_after(src, dst):
        replace(src, dst)
        if Path(dst).name.startswith(".loftup-moving-"):
            signal.raise_signal(signum)

    monkeypatch.setattr(os, "replace", sent_after)


def test_a_sigterm_as_the_masks_move_in_leaves_the_earlier_masks_and_no_moving_folder(
    tmp_path, monkeypatch, handlers
):
    """Slurm's scancel or time limit (SIGTERM, whose handler raises) just after the rename to
    the moving name: the handler raised there, and the moving folder with the run's masks
    stayed in DIR; now it is held to the swap's next step, which puts everything back."""
    masks = tmp_path / "masks"
    _staged(masks, 1).publish({})
    before = _masks(masks)
    staging = _staged(masks, 2)

    def stop(signum, frame):
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    _signal_at_moving(monkeypatch, signal.SIGTERM)
    with pytest.raises(Stopped):
        staging.publish({})
    monkeypatch.undo()
    assert _masks(masks) == before and complete_masks(masks) == ["bear"]
    assert not [p.name for p in masks.iterdir() if p.name.startswith(".loftup-moving-")]


@pytest.mark.parametrize("handler", ["ignored", "the user's"])
def test_a_sigint_the_process_does_not_stop_on_leaves_the_run_s_masks(
    tmp_path, monkeypatch, handlers, handler
):
    """SIGINT ignored (a launcher's background job), or handled by a handler of the user's
    that does not raise: one during the swap raised KeyboardInterrupt, and the run's masks
    were dropped; the user's handler was not called."""
    masks = tmp_path / "masks"
    _staged(masks, 1).publish({})
    staging = _staged(masks, 2)
    new = _masks(staging.path)
    calls = []
    signal.signal(signal.SIGINT, signal.SIG_IGN if handler == "ignored" else
                  lambda signum, frame: calls.append(signum))  # fmt: skip
    _signal_at_moving(monkeypatch, signal.SIGINT)
    staging.publish({})
    monkeypatch.undo()
    assert _masks(masks) == new and complete_masks(masks) == ["bear"]
    assert calls == ([] if handler == "ignored" else [signal.SIGINT])


def test_outside_the_main_thread_the_body_s_error_has_no_stray_context():
    """In a thread (no handler may be set there), the body's error carried the ValueError of
    the failed signal.signal as its context."""
    caught = []

    def body():
        try:
            with ctrl_c_held():
                raise RuntimeError("the body's")
        except RuntimeError as e:
            caught.append(e)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert caught and caught[0].__context__ is None
