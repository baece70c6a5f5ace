"""What one start of `loftup experiment` reads of its run folders, counted: the checkpoint of a
run it resumes loaded once (read for its step, then by training), and each init.json once."""

from __future__ import annotations

from pathlib import Path

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


def test_a_start_reads_each_init_record_once_and_still_refuses_a_changed_init(
    tmp_path, monkeypatch
):
    """Each stage-2 folder's init.json was read 5 times a start (twice by the up-front check,
    three times by its variant's checks: 30 reads on distill-view's 2 quick seeds). Now once;
    a stage-1 run trained again is still refused at the next start."""
    import json

    import loftup.atomic as atomic
    from loftup.errors import LoftUpError
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.begun import check_begun
    from loftup.experiments.data import file_sha256
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.run_folders import INIT_RECORD
    from loftup.experiments.runs import run_variant, stage_configs
    from test_experiment_begun import _finished

    s = ExperimentSettings("distill-view", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, root = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variants = DESIGNS["distill-view"](s).variants
    inputs = {"backbone_sha256": None, "training_data": {}}
    for seed in range(s.seeds):
        for v in variants:
            one, two = stage_configs(s, v, seed, root, runs)
            first = Path(one["log"]["out_dir"])
            if not first.exists():
                _with_history(_finished(one))
            sha = file_sha256(first / "checkpoint.pt")
            _with_history(_finished(two, {"stage1_steps": one["max_steps"], "stage1_sha256": sha}))
    reads, read = [], atomic.read_json_object
    monkeypatch.setattr(atomic, "read_json_object", lambda p: reads.append(p) or read(p))

    def start():
        reads.clear()
        folder_reads = FolderReads()  # as run_design makes one per start
        check_begun(s, variants, root, runs, inputs, folder_reads)
        for seed in range(s.seeds):
            for v in variants:
                run_variant(s, v, seed, root, runs, inputs, folder_reads)
        return sorted(p for p in reads if p.name == INIT_RECORD)

    records = sorted(runs.glob(f"seed*/*/stage2/{INIT_RECORD}"))
    assert len(records) == 3 * s.seeds
    assert start() == records
    first = runs / "seed0" / "stage1" / "stage1" / "checkpoint.pt"
    torch.save({**torch.load(first), "again": 1}, first)  # trained again (the same steps)
    with pytest.raises(LoftUpError, match="3 run folders .* distilled from another stage-1"):
        start()
    assert json.loads(records[0].read_text())["stage1_sha256"] != file_sha256(first)


def _with_history(out: Path) -> None:
    """A loss history in the checkpoint of ``out``, as training writes it."""
    from loftup.train.checkpoint import pack_history

    raw = torch.load(out / "checkpoint.pt")
    history = pack_history([{"step": 1, "loss": 1.0}])
    torch.save({**raw, "history": history}, out / "checkpoint.pt")
