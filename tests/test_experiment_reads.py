"""What one start of `loftup experiment` reads of its run folders, counted: each init.json,
config.yaml and inputs.json once, and the checkpoint of a run it resumes read for its step and
then loaded by training under its folder's lock."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loftup.experiments.folder_reads import FolderReads
from loftup.experiments.runs import run_stage
from loftup.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("up_front", [False, True])
def test_a_resumed_run_is_loaded_by_training_under_its_folder_s_lock(
    tmp_path, monkeypatch, up_front
):
    """The experiment reads the step of a run it resumes (to refuse one past the steps asked
    for); training loads the checkpoint again, with the run folder locked. Handing it the
    checkpoint read before the lock saved 0.2 s but resumed what another process (a requeued
    job) may have taken further meanwhile, and kept it in memory through the evaluations.
    ``up_front``: its step read first by the start's up-front check, as check_begun reads it."""
    import os

    from loftup.train import run_lock
    from train_fixtures import tiny_config, write_sa1b

    data, out = write_sa1b(tmp_path / "sa1b", 8, size=56), tmp_path / "run"
    train(tiny_config(data, out, 1, 2))
    reads, loads, load = FolderReads(), [], torch.load

    def counted(path, *args, **kwargs):  # each load still made (of the file open: its name)
        if Path(getattr(path, "name", path)) == out / "checkpoint.pt":
            st = os.stat(out)  # run_lock._HELD's key: the folder's device and inode, its lock
            loads.append((st.st_dev, st.st_ino, run_lock.LOCK_NAME) in run_lock._HELD)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    if up_front:
        assert reads.step(out)["step"] == 2
    result = run_stage(tiny_config(data, out, 1, 4).to_dict(), reads=reads)
    assert loads == [False, True]  # the step's read, then training's under the lock
    assert [row["step"] for row in result.history] == [0, 1, 2, 3]  # resumed, not begun again


@pytest.fixture
def design(tmp_path):
    """distill-view --quick's run folders, all finished, and its start (:func:`finished_design`)."""
    return finished_design(tmp_path)


def finished_design(tmp_path):
    """distill-view --quick's run folders, all finished (3 stage-2 runs per seed, from one
    shared stage-1 run), and its start: the up-front check, every variant at every seed and
    the report's training configs, as run_design makes them with one FolderReads; ``(runs,
    start, seeds)``, start returning {(seed, variant name): run_variant's runs}."""
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.begun import check_begun
    from loftup.experiments.data import file_sha256
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.runs import run_configs, run_variant, stage_configs
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

    def start(inputs=inputs):
        reads, results = FolderReads(), {}
        check_begun(s, variants, root, runs, inputs, reads)
        for seed in range(s.seeds):
            for v in variants:
                done = results[seed, v.name] = run_variant(s, v, seed, root, runs, inputs, reads)
                if seed == 0:
                    run_configs(done, reads)
        return results

    return runs, start, s.seeds


@pytest.fixture
def text_reads(monkeypatch):
    """The files Path.read_text reads (the records through read_json_object too), in order."""
    reads, read = [], Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda p, *a, **k: reads.append(p) or read(p, *a, **k))
    return reads


def test_a_start_reads_each_init_record_once_and_still_refuses_a_changed_init(design, text_reads):
    """Each stage-2 folder's init.json was read 5 times a start (twice by the up-front check,
    three times by its variant's checks: 30 reads on distill-view's 2 quick seeds). Now once;
    a stage-1 run trained again is still refused at the next start."""
    import json

    from loftup.errors import LoftUpError
    from loftup.experiments.data import file_sha256
    from loftup.experiments.run_folders import INIT_RECORD

    runs, start, seeds = design
    records = sorted(runs.glob(f"seed*/*/stage2/{INIT_RECORD}"))
    assert len(records) == 3 * seeds
    start()
    assert sorted(p for p in text_reads if p.name == INIT_RECORD) == records
    first = runs / "seed0" / "stage1" / "stage1" / "checkpoint.pt"
    torch.save({**torch.load(first), "again": 1}, first)  # trained again (the same steps)
    with pytest.raises(LoftUpError, match="3 run folders .* distilled from another stage-1"):
        start()
    assert json.loads(records[0].read_text())["stage1_sha256"] != file_sha256(first)


def test_a_rerun_reads_each_config_and_inputs_record_once_and_still_refuses_changes(
    design, text_reads
):
    """The rerun of a finished distill-view --quick (8 run folders) read config.yaml 26 times
    (the up-front check, each variant reusing the shared stage-1 run, the report's configs),
    inputs.json 16 (the check of all folders, then each run's) and summary.json 12 (each
    variant reusing the shared stage-1 run, for seconds nothing used): now the config and
    inputs record once each, the summary not at all. A run made with other settings,
    or trained on other data, is still refused at the next start."""
    import yaml

    from loftup.errors import LoftUpError
    from loftup.experiments.run_folders import INPUTS_RECORD

    runs, start, _ = design
    start()  # records the inputs in folders from before inputs.json
    text_reads.clear()
    start()
    configs = sorted(runs.glob("seed*/*/stage*/config.yaml"))
    records = sorted(runs.glob(f"seed*/*/stage*/{INPUTS_RECORD}"))
    assert len(configs) == len(records) == 8
    assert sorted(p for p in text_reads if p.name == "config.yaml") == configs
    assert sorted(p for p in text_reads if p.name == INPUTS_RECORD) == records
    assert not [p for p in text_reads if p.name == "summary.json"]
    saved = yaml.safe_load(configs[0].read_text())
    optim = {**saved["optim"], "lr": saved["optim"]["lr"] * 2}
    configs[0].write_text(yaml.safe_dump({**saved, "optim": optim}))
    with pytest.raises(LoftUpError, match="other settings \\(differs in optim\\)"):
        start()
    configs[0].write_text(yaml.safe_dump(saved))
    start()
    with pytest.raises(LoftUpError, match="8 run folders .* other backbone weights"):
        start({"backbone_sha256": "1" * 64, "training_data": {}})


def test_forgetting_a_folder_forgets_the_files_in_it(tmp_path, text_reads):
    """What a start writes into a run folder (training a run, copying the run it continues)
    is read again, whatever the files' identity tells (coarse times, a reused inode)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("lr: 0.001\n")
    (tmp_path / "run" / "inputs.json").write_text("{}")
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "inputs.json").write_text("{}")
    reads = FolderReads()
    for _ in range(2):
        reads.config(tmp_path / "run")
        for folder in ("run", "run1"):
            reads.record(tmp_path / folder / "inputs.json")
        reads.forget(tmp_path / "run")
    names = [str(p.relative_to(tmp_path)) for p in text_reads]
    once = ["run/config.yaml", "run/inputs.json", "run1/inputs.json"]
    assert names == once + ["run/config.yaml", "run/inputs.json"]  # not run1's


def _with_history(out: Path) -> None:
    """A loss history in the checkpoint of ``out``, as training writes it."""
    from loftup.train.checkpoint import pack_history

    raw = torch.load(out / "checkpoint.pt")
    history = pack_history([{"step": 1, "loss": 1.0}])
    torch.save({**raw, "history": history}, out / "checkpoint.pt")


def test_a_record_written_again_from_outside_is_read_again(tmp_path):
    """A file is known by its identity (path, inode, size, time of change): a record another
    process writes again during a start (an atomic replace, as every record is written) is read
    again, not served from what was read before; one of the same size too (its path and size
    alone would not tell)."""
    from loftup.atomic import write_json

    path = tmp_path / "run" / "init.json"
    path.parent.mkdir()
    write_json(path, {"stage1_steps": 2})
    reads = FolderReads()
    assert reads.record(path) == {"stage1_steps": 2}
    size = path.stat().st_size
    write_json(path, {"stage1_steps": 3})
    assert path.stat().st_size == size
    assert reads.record(path) == {"stage1_steps": 3}
