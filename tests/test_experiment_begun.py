"""`loftup experiment` run reuse: the stage-1 run a begun stage-2 folder started from, told by
the starts both runs record (run.json), and checked for every seed before any training."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

from loftup.errors import LoftUpError
from loftup.experiments import ExperimentSettings
from loftup.experiments.begun import check_begun
from loftup.experiments.designs import DESIGNS
from loftup.experiments.run_folders import INIT_RECORD, RunRefused, _check_init_run
from loftup.experiments.runs import stage_configs
from loftup.train.checkpoint import FORMAT, pack_history
from loftup.train.config import load_config


def _folders(tmp_path, stage1_starts, stage2_start):
    """A stage-1 folder whose run.json records ``stage1_starts`` (its first, then resumes), and
    a begun stage-2 folder from before init.json, first started at ``stage2_start`` (None: no
    run.json in either); the stage-1 checkpoint written now, after all."""
    stage2, stage1 = tmp_path / "both" / "stage2", tmp_path / "stage1" / "stage1"
    for folder in (stage2, stage1):
        folder.mkdir(parents=True)
    (stage2 / "checkpoint.pt").write_bytes(b"stage 2")
    (stage1 / "checkpoint.pt").write_bytes(b"stage 1")
    if stage2_start is not None:
        first, *resumes = stage1_starts
        record = {"started": first, "resumes": [{"started": t, "step": 1} for t in resumes]}
        (stage1 / "run.json").write_text(json.dumps(record))
        (stage2 / "run.json").write_text(json.dumps({"started": stage2_start}))
    return stage2, stage1 / "checkpoint.pt"


def test_a_stage2_run_from_before_the_record_is_told_by_the_starts_both_runs_record(
    tmp_path, monkeypatch
):
    """The check compared the stage-1 checkpoint's file time with the stage-2 run's start in
    local time: a folder copied without its times (cp -r) was refused, and so was one read in
    another time zone (TZ=Asia/Tokyo). Now the two runs' recorded starts, one clock."""
    # stage 1 trained again (a resume at 11:00) after the stage-2 run began (10:00): stale; a
    # start of before the offset read in the other's
    stale, ckpt = _folders(tmp_path / "a", ["2026-01-01T08:00:00", "2026-01-01T11:00:00+00:00"],
                           "2026-01-01T10:00:00")  # fmt: skip
    with pytest.raises(RunRefused, match=r"holds a stage-2 run begun before .*stage1 was trained"):
        _check_init_run(stale, 2, ckpt)
    assert not (stale / INIT_RECORD).exists()  # not approved: refused again next time
    # copied with cp -r: the stage-1 checkpoint newer than anything, the records say otherwise
    fine, ckpt = _folders(tmp_path / "b", ["2026-01-01T08:00:00+00:00"], "2026-01-01T19:00+09:00")
    _check_init_run(fine, 2, ckpt)
    assert json.loads((fine / INIT_RECORD).read_text())["stage1_steps"] == 2
    # both from before the offset, read in another time zone than they were written in
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        fine, ckpt = _folders(tmp_path / "c", ["2026-01-01T08:00:00"], "2026-01-01T08:00:01")
        _check_init_run(fine, 2, ckpt)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (fine / INIT_RECORD).is_file()


def test_without_run_records_the_file_times_refuse_only_what_is_unambiguous(tmp_path):
    """No run.json: a copy that did not keep the times wrote them all within moments, in any
    order; refused only where the stage-1 checkpoint is well newer than the stage-2 one."""
    copied, ckpt = _folders(tmp_path / "copied", [], None)
    _check_init_run(copied, 2, ckpt)  # the stage-1 checkpoint written just after: taken
    assert (copied / INIT_RECORD).is_file()
    stale, ckpt = _folders(tmp_path / "stale", [], None)
    day_ago = time.time() - 86400
    os.utime(stale / "checkpoint.pt", (day_ago, day_ago))
    with pytest.raises(RunRefused, match="begun before"):
        _check_init_run(stale, 2, ckpt)


def _finished(config: dict, record: dict | None = None) -> Path:
    """The folder of ``config``, holding a finished run at its steps (config.yaml as training
    writes it, a checkpoint with the step, summary.json and final/) and ``record`` as init.json."""
    out = Path(config["log"]["out_dir"])
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(config).to_dict()))
    torch.save({"format": FORMAT, "step": config["max_steps"]}, out / "checkpoint.pt")
    if record is not None:
        (out / INIT_RECORD).write_text(json.dumps(record))
    return out


def test_every_seeds_stage2_runs_from_another_stage1_run_are_named_at_once(tmp_path):
    """The stage-2 runs whose stage-1 run was trained again (another sha256 recorded, or begun
    before it from before the record) were refused after stage 1, one seed per rerun with
    training between: the README said every refused folder was named at once."""
    s = ExperimentSettings("stages", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, data = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variants = [v for v in DESIGNS["stages"](s).variants if v.stage2 is not None][:1]
    stale = []
    for seed in range(2):
        one, two = stage_configs(s, variants[0], seed, data, runs)
        first = _finished(one)
        (first / "run.json").write_text(json.dumps({"started": "2026-01-02T10:00:00+00:00"}))
        if seed == 0:  # recorded: another stage-1 checkpoint
            record = {"stage1_steps": one["max_steps"], "stage1_sha256": "0" * 64}
            stale.append(_finished(two, record))
        else:  # from before the record, begun a day before stage 1's start
            stale.append(_finished(two))
            (stale[-1] / "run.json").write_text(json.dumps({"started": "2026-01-01T10:00:00"}))
    inputs = {"backbone_sha256": None, "training_data": {}}
    with pytest.raises(LoftUpError) as e:
        check_begun(s, variants, data, runs, inputs)
    said = str(e.value)
    assert said.startswith("2 run folders cannot be reused or gone on with: ")
    assert f"{stale[0]} holds a stage-2 run distilled from another stage-1 run" in said
    assert f"{stale[1]} holds a stage-2 run begun before" in said
    assert not (stale[1] / INIT_RECORD).exists()  # nothing approved


def test_a_start_loads_and_hashes_each_begun_checkpoint_once(tmp_path, monkeypatch):
    """The up-front check, then each variant at each seed, loaded a stage-1 checkpoint that
    three variants share four times and hashed it four times per seed (30 loads of 12 files
    and 12 hashes of 3 on distill-view's 3 seeds, seconds at real checkpoint sizes). Now once
    per file per start; a checkpoint written again since (trained on) is read again."""
    import loftup.experiments.data as data
    import loftup.train.checkpoint as checkpoint
    from loftup.experiments.folder_reads import FolderReads
    from loftup.experiments.runs import run_variant

    s = ExperimentSettings("distill-view", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, root = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variants, inputs = DESIGNS["distill-view"](s).variants, {"backbone_sha256": None,
                                                           "training_data": {}}  # fmt: skip
    history = pack_history([{"step": 1, "loss": 1.0}])  # as training writes it
    for seed in range(s.seeds):
        for v in variants:
            one, two = stage_configs(s, v, seed, root, runs)
            for config in (one, two):
                if not Path(config["log"]["out_dir"]).exists():
                    out = _finished(config)
                    raw = torch.load(out / "checkpoint.pt")
                    torch.save({**raw, "history": history}, out / "checkpoint.pt")
            sha = data.file_sha256(Path(one["log"]["out_dir"]) / "checkpoint.pt")
            record = {"stage1_steps": one["max_steps"], "stage1_sha256": sha}
            (Path(two["log"]["out_dir"]) / INIT_RECORD).write_text(json.dumps(record))
    loads, hashes = [], []
    load, sha256 = checkpoint.load_checkpoint, data.file_sha256
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda p, *a: loads.append(p) or load(p, *a))
    monkeypatch.setattr(data, "file_sha256", lambda p: hashes.append(p) or sha256(p))
    reads = FolderReads()  # as run_design makes one per start
    check_begun(s, variants, root, runs, inputs, reads)
    for seed in range(s.seeds):
        for v in variants:
            run_variant(s, v, seed, root, runs, inputs, reads)
    folders = sorted(runs.glob("seed*/*/stage*"))
    assert len(folders) == 4 * s.seeds  # a shared stage-1 run, three stage-2 runs
    assert sorted(p.parent for p in loads) == folders
    assert sorted(p.parent.name for p in hashes) == ["stage1"] * s.seeds
    first = runs / "seed0" / "stage1" / "stage1" / "checkpoint.pt"
    (first.parent / "copy.pt").write_bytes(first.read_bytes())
    os.replace(first.parent / "copy.pt", first)  # written again (as training writes it)
    loads.clear(), hashes.clear()
    run_variant(s, variants[0], 0, root, runs, inputs, reads)
    assert loads == hashes == [first]  # read again: the one written last counts


def test_what_the_start_trains_or_copies_is_read_again_whatever_its_identity(
    tmp_path, monkeypatch, one_thread
):
    """A run the start resumes writes its folder again (checkpoint, config.yaml, summary.json),
    and one that continues another is copied over what a copy cut short left: where a file's
    identity does not change (ext4 reuses the inode an atomic replace frees; NFS keeps times to
    the second, FAT to two), what was read before was given again (the report's max_steps and
    the summary's steps those of before the resume; the copy checked against the settings of
    the cut-short one). Such a filesystem is stood in for by an identity of the path alone; the
    start forgets the whole folder it wrote, after training it and after copying into it."""
    import loftup.experiments.folder_reads as folder_reads
    from loftup.experiments.data import file_sha256
    from loftup.experiments.folder_reads import FolderReads
    from loftup.experiments.runs import run_configs, run_stage
    from loftup.train import train
    from train_fixtures import tiny_config, write_sa1b

    data, out, later = write_sa1b(tmp_path / "sa1b", 8, size=56), tmp_path / "run", tmp_path / "b"
    train(tiny_config(data, out, 1, 2))
    ckpt = out / "checkpoint.pt"
    same = lambda path: (os.path.abspath(path),) if Path(path).exists() else None  # noqa: E731
    monkeypatch.setattr(folder_reads, "_identity", same)
    reads = FolderReads()
    # a copy of the run cut short before its checkpoint, when it had another learning rate
    later.mkdir()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    other = {**saved, "optim": {**saved["optim"], "lr": 1e-4}}
    (later / "config.yaml").write_text(yaml.safe_dump(other))
    assert reads.config(later)["optim"]["lr"] == 1e-4
    copied = run_stage(tiny_config(data, later, 1, 4).to_dict(), continues=out, reads=reads)
    assert [row["step"] for row in copied.history] == [0, 1, 2, 3]  # went on from the copy
    assert reads.config(later)["max_steps"] == 4 and reads.step(later)["step"] == 4
    # the run resumed
    assert reads.step(out)["step"] == 2
    before = reads.sha256(ckpt)
    assert reads.config(out)["max_steps"] == reads.record(out / "summary.json")["steps"] == 2
    result = run_stage(tiny_config(data, out, 1, 4).to_dict(), reads=reads)  # trained on
    assert reads.step(out)["step"] == 4
    assert reads.sha256(ckpt) == file_sha256(ckpt) != before
    assert run_configs({"stage1": result}, reads)["stage1"]["max_steps"] == 4
    assert reads.record(out / "summary.json")["steps"] == 4
