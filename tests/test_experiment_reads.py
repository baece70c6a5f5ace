"""What one start of `loftup experiment` reads of its run folders, counted: the checkpoint of a
run it resumes loaded once (read for its step, then by training), and each init.json once."""

from __future__ import annotations

import pytest
import torch

from loftup.experiments.folder_reads import FolderReads
from loftup.experiments.runs import run_stage
from loftup.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def torch_loads(monkeypatch):
    """The files torch.load is asked for, in order (each load still made)."""
    loads, load = [], torch.load

    def counted(path, *args, **kwargs):
        loads.append(str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    return loads


@pytest.mark.parametrize("up_front", [False, True])
def test_a_resumed_run_loads_its_checkpoint_once(tmp_path, torch_loads, up_front):
    """The experiment read the step of a run it resumes (to refuse one past the steps asked
    for), then ``train`` loaded the checkpoint again: twice, 0.2 s and twice its memory for a
    moment. ``up_front``: its step read first by the start's up-front check, as check_begun
    reads it; either way one load."""
    from train_fixtures import tiny_config, write_sa1b

    data, out = write_sa1b(tmp_path / "sa1b", 8, size=56), tmp_path / "run"
    train(tiny_config(data, out, 1, 2))
    reads = FolderReads()
    torch_loads.clear()
    if up_front:
        assert reads.step(out, 4)["step"] == 2
    result = run_stage(tiny_config(data, out, 1, 4).to_dict(), reads=reads)
    assert torch_loads == [str(out / "checkpoint.pt")]
    assert [row["step"] for row in result.history] == [0, 1, 2, 3]  # resumed, not begun again


def test_only_the_checkpoint_of_a_run_to_train_is_held_and_one_changed_since_is_not_taken(
    tmp_path,
):
    """A finished run at its steps (reused) is not held; one short of them is, until taken,
    and not handed over once written again (its identity changed) or once another run takes."""
    from train_fixtures import tiny_config, write_sa1b

    data, out = write_sa1b(tmp_path / "sa1b", 8, size=56), tmp_path / "run"
    train(tiny_config(data, out, 1, 2))
    reads = FolderReads()
    reads.step(out, 2)
    assert reads.take(out) is None  # at its steps: nothing to train, nothing held
    reads = FolderReads()
    reads.step(out, 4)
    assert reads.take(out)["step"] == 2
    assert reads.take(out) is None  # handed over once
    reads = FolderReads()
    reads.step(out, 4)
    assert reads.take(tmp_path / "other") is None and reads.take(out) is None
    reads = FolderReads()
    reads.step(out, 4)
    ckpt = out / "checkpoint.pt"
    torch.save({**torch.load(ckpt), "step": 3}, ckpt.with_suffix(".new"))
    ckpt.with_suffix(".new").replace(ckpt)  # written again, as training writes it
    assert reads.take(out) is None


def test_a_checkpoint_given_to_a_run_that_does_not_resume_is_refused():
    from loftup.errors import UsageError

    with pytest.raises(UsageError, match="pass resume=True"):
        train({}, checkpoint={"step": 2})
