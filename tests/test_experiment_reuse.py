"""`loftup experiment` run reuse: what a run folder is checked against before it is reused or
gone on with (the training data, the stage-1 run a stage-2 run starts from, the settings)."""

from __future__ import annotations

import pytest

from loftup.cli import main


def test_an_out_inside_the_training_data_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """`--data . --out exp`: training read the report's figures as training images, and every
    rerun was refused as trained on other data (the figures change), after deleting too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    monkeypatch.chdir(photos)
    args = ["experiment", "coords", "--quick", "--seeds", "1", "--no-progress", "--data", "."]
    for out in ("exp", ".", str(photos / "a" / "b")):
        assert main([*args, "--out", out]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} lies inside --data ." in err and err.count("\n") == 1
        assert "choose an --out outside the training data" in err
    # no --out typed: the default one is said as such
    assert main([*args[:-2], "--data", str(tmp_path)]) == 2
    assert (
        "the default --out experiments/coords-quick lies inside --data" in capsys.readouterr().err
    )
    assert list(photos.iterdir()) == []  # nothing written
    from loftup.experiments import ExperimentSettings, _check_out_outside_data

    beside = ExperimentSettings("coords", out=str(tmp_path / "photos-exp"), data=str(photos))
    _check_out_outside_data(beside.resolved())  # a name that starts alike is not inside


def test_a_link_to_nothing_in_the_training_data_does_not_stop_the_experiment(tmp_path):
    """One dangling link (or a file gone since the listing) in --data ended the experiment with
    "No such file or directory" and no context, where training skips such a file. The listing
    now passes over it with a warning naming it, as training's does."""
    from loftup.experiments.data import run_inputs

    (tmp_path / "sa_1.jpg").write_bytes(b"jpeg")
    (tmp_path / "sa_2.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.warns(UserWarning, match=r"sa_2\.jpg: a link to .*gone\.jpg"):
        first = run_inputs({"sha256": None}, tmp_path, "superpixels")["training_data"]
    assert first["files"] == 1
    (tmp_path / "gone.jpg").write_bytes(b"here now")  # the link leads to a file: other data
    assert run_inputs({"sha256": None}, tmp_path, "superpixels")["training_data"] != first


def test_the_training_data_identity_looks_at_a_bounded_sample_of_files(tmp_path, monkeypatch):
    """Each start of an experiment looked at every training file for its size (100k SA-1B
    pairs: 3.5 s of listing, then as much again; minutes to hours at SA-1B's scale, with no
    bar). Now: every name, and the sizes of SIZE_SAMPLE files spread over the listing."""
    import os

    from loftup.experiments.data import SIZE_SAMPLE, run_inputs

    data = tmp_path / "data"
    data.mkdir()
    n = 2 * SIZE_SAMPLE + 500
    for i in range(n):
        (data / f"{i:05d}.jpg").write_bytes(b"j")
    real, looked = os.stat, []

    def counted(path, *args, **kwargs):
        if os.fspath(path).startswith(os.fspath(data)):
            looked.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    first = run_inputs({"sha256": None}, data, "superpixels")["training_data"]
    assert first["files"] == n and len(looked) <= SIZE_SAMPLE
    (data / "00007.jpg").rename(data / "00007b.jpg")  # another name: other data
    assert run_inputs({"sha256": None}, data, "superpixels")["training_data"] != first
    (data / "00007b.jpg").rename(data / "00007.jpg")
    assert run_inputs({"sha256": None}, data, "superpixels")["training_data"] == first
    for i in range(n):  # written again under the same names (resized, say): other data
        (data / f"{i:05d}.jpg").write_bytes(b"jpeg")
    assert run_inputs({"sha256": None}, data, "superpixels")["training_data"] != first


def test_the_sampled_sizes_of_sa1b_data_take_in_its_json_files(tmp_path, monkeypatch):
    """SA-1B's listing alternates image and JSON: with an even step (2000 pairs, 1000 sizes)
    only images were looked at, and every JSON written again with other masks went unseen."""
    from loftup.experiments import data as experiment_data

    monkeypatch.setattr(experiment_data, "SIZE_SAMPLE", 10)  # 20 pairs: a step of 4, even
    for i in range(20):
        (tmp_path / f"sa_{i}.jpg").write_bytes(b"jpeg")
        (tmp_path / f"sa_{i}.json").write_text("{}")
    first = experiment_data.run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"]
    assert first["files"] == 40
    for i in range(20):
        (tmp_path / f"sa_{i}.json").write_text('{"annotations": []}')
    assert experiment_data.run_inputs({"sha256": None}, tmp_path, "sa1b")["training_data"] != first


def test_every_seeds_run_folders_that_cannot_be_reused_are_named_at_once(tmp_path, monkeypatch):
    """A settings or step change refused seed 0's folders only, before its training: a 3-seed
    experiment took a rerun per seed, with hours of training between the refusals; and the
    refused folder was named in full, the runs starting from it as --out gave them."""
    import dataclasses

    import torch

    from loftup.errors import LoftUpError
    from loftup.experiments import ExperimentSettings, run_experiment
    from loftup.experiments.data import training_root
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.runs import run_variant

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    s = ExperimentSettings("stages", quick=True, out="exp", progress=False, size=16,
                           train_scenes=2, batch_size=2).resolved()  # fmt: skip
    root, runs = training_root(s), tmp_path / "exp" / "runs"
    for seed in range(s.seeds):
        for v in DESIGNS["stages"](s).variants:
            run_variant(s, v, seed, root, runs)
    folders = {seed: runs / f"seed{seed}" for seed in range(s.seeds)}
    other = dataclasses.replace(s, stage1_lr=0.01)
    with pytest.raises(LoftUpError) as e:
        run_experiment(other)
    refused = ", ".join(
        f"{folders[i] / n / 'stage1'}" for i in (0, 1) for n in ("stage1", "stage1-longer")
    )
    starting = ", ".join(str(folders[i] / "stage-1-2-released" / "stage2") for i in (0, 1))
    assert str(e.value) == (
        f"4 run folders cannot be reused or gone on with: each of {refused} holds a run made "
        "with other settings (differs in optim); choose another --out or delete those folders "
        f"and those of the runs that start from them ({starting})"
    )
    longer = dataclasses.replace(s, stage1_steps=s.stage1_steps + 1)
    with pytest.raises(LoftUpError, match=r"^2 run folders .*: each of .*seed0/.*stage2, .*seed1/"):
        run_experiment(longer)
    assert not (tmp_path / "exp" / "report.md").exists()  # refused before any training


def test_a_change_in_any_shard_of_sharded_backbone_weights_is_seen(tmp_path):
    """--backbone-weights FOLDER of shards: only the first (sorted) was hashed, so the runs
    were reused after any other shard changed."""
    from loftup.experiments.data import weights_fingerprint

    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors", '
        '"b": "model-00002-of-00002.safetensors"}}'
    )
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"first")
    second = tmp_path / "model-00002-of-00002.safetensors"
    second.write_bytes(b"second")
    (tmp_path / "notes.safetensors").write_bytes(b"not named by the index")
    first = weights_fingerprint("dinov2_vits14", str(tmp_path))
    (tmp_path / "notes.safetensors").write_bytes(b"changed, but not read")
    assert weights_fingerprint("dinov2_vits14", str(tmp_path)) == first
    second.write_bytes(b"second, changed")
    assert weights_fingerprint("dinov2_vits14", str(tmp_path))["sha256"] != first["sha256"]
    assert first["file"] == str(tmp_path) and len(first["sha256"]) == 64  # the folder's


def test_numpys_whole_numbers_are_taken_as_counts_and_written_as_ints():
    """seeds=np.int64(2) (a count from a numpy sweep) was refused: "--seeds must be an
    integer >= 1, got 2". Taken now, as an int (results.json and the configs write it)."""
    import json

    import numpy as np

    from loftup.errors import UsageError
    from loftup.experiments import ExperimentSettings

    s = ExperimentSettings("stages", seeds=np.int64(2), stage1_steps=np.int32(3),
                           stage2_steps=np.int64(1), size=np.int64(32)).resolved()  # fmt: skip
    assert (s.seeds, s.stage1_steps, s.stage2_steps, s.size) == (2, 3, 1, 32)
    assert type(s.seeds) is int and json.loads(json.dumps(s.to_dict()))["seeds"] == 2
    with pytest.raises(UsageError, match="--seeds must be an integer >= 1, got True"):
        ExperimentSettings("coords", seeds=True)
    # numpy's reals too: stage1_lr=np.float32(0.003) was "must be a finite number > 0"
    s = ExperimentSettings("stages", stage1_lr=np.float32(0.003), probe_lr=np.float64(0.01))
    s = s.resolved()
    assert type(s.stage1_lr) is float and abs(s.stage1_lr - 0.003) < 1e-9
    assert type(s.probe_lr) is float and s.demo(0).stage1_lr == s.stage1_lr


def test_kept_offline_scenes_that_lack_a_file_are_named_with_the_experiments_fix(tmp_path):
    """Kept scenes were trusted from world.json alone: a training image deleted since, and
    training read the rest without a word; a held-out one, and the error's fix (`loftup world
    scenes --out DIR`) wrote a world of other options, which the experiment refused."""
    import re
    import shutil

    from loftup.errors import LoftUpError
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.data import load_eval_set, training_root

    s = ExperimentSettings("coords", quick=True, out=str(tmp_path), progress=False).resolved()
    train, _ = training_root(s), load_eval_set(s)
    val = tmp_path / "scenes" / "val"
    (train / "sa1b" / "sa_3.jpg").unlink()
    with pytest.raises(LoftUpError, match=re.escape(
        f"{train} lacks sa1b/sa_3.jpg of its scenes; delete {train} and run the same command "
        "again, which writes its scenes again"
    )):  # fmt: skip
        training_root(s)
    (val / "labels" / "sa_2.png").unlink()
    (val / "sa1b" / "sa_2.json").unlink()
    # both folders named at once (each was named in its own rerun, `loftup demo --resume` too)
    with pytest.raises(LoftUpError, match=re.escape(
        f"{train} lacks sa1b/sa_3.jpg, and {val} lacks sa1b/sa_2.json and 1 more of their "
        f"scenes; delete {train} and {val} and run the same command again"
    )):  # fmt: skip
        training_root(s)
    shutil.rmtree(train)  # the fix: written again, then kept
    assert training_root(s) == train and (train / "sa1b" / "sa_3.jpg").is_file()
    with pytest.raises(LoftUpError, match=f"{val} lacks sa1b/sa_2.json and 1 more of its"):
        load_eval_set(s)


def test_a_finished_run_without_its_checkpoint_is_refused_up_front(tmp_path):
    """A damaged stage-1 checkpoint said "move this file away (training starts afresh)"; done,
    the run's summary.json and final/ counted it finished, and the experiment reused it: "No
    such file or directory" and a traceback, after the other seeds' training."""
    from pathlib import Path

    import torch
    import yaml

    from loftup.errors import LoftUpError
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.begun import check_begun
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.run_folders import RunRefused
    from loftup.experiments.runs import run_stage, stage_configs
    from loftup.train.checkpoint import FORMAT
    from loftup.train.config import load_config

    s = ExperimentSettings("stages", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, data = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variants = [v for v in DESIGNS["stages"](s).variants if v.stage2 is not None]
    one, two = stage_configs(s, variants[0], 1, data, runs)
    first, second = (Path(c["log"]["out_dir"]) for c in (one, two))
    (first / "final").mkdir(parents=True)  # finished, its checkpoint moved away
    (first / "summary.json").write_text("{}")
    (first / "config.yaml").write_text(yaml.safe_dump(load_config(one).to_dict()))
    second.mkdir(parents=True)
    (second / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    (second / "config.yaml").write_text(yaml.safe_dump(load_config(two).to_dict()))
    inputs = {"backbone_sha256": None, "training_data": {}}
    with pytest.raises(LoftUpError) as e:
        check_begun(s, variants, data, runs, inputs)
    assert str(e.value) == (
        f"2 run folders cannot be reused or gone on with: {first} holds a finished run whose "
        "checkpoint.pt is gone (moved away or deleted): it cannot be reused or trained on; "
        f"{second} holds a checkpoint.pt that cannot be loaded (it is corrupt or truncated and "
        "cannot be read (its zip archive has no end: cut short, as an interrupted download or "
        "copy leaves it)); choose another --out or delete those folders"
    )
    # the stage-2 run sound: the stage-1 folder alone refused, with the run starting from it
    torch.save({"format": FORMAT, "step": two["max_steps"]}, second / "checkpoint.pt")
    with pytest.raises(RunRefused) as e:
        check_begun(s, variants, data, runs, inputs)
    assert str(e.value).endswith(
        "cannot be reused or trained on; choose another --out or delete that folder and those "
        f"of the runs that start from it ({second})"
    )
    with pytest.raises(RunRefused, match=f"^{first} holds a finished run whose checkpoint.pt "):
        run_stage(one)  # without the check up front (a caller of run_variant): refused too


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_whose_checkpoint_is_a_link_to_nothing_is_refused_up_front(tmp_path, finished):
    """A checkpoint.pt on a disk not mounted: a finished run's was said "gone (moved away or
    deleted)", with the fix to delete the folder; an interrupted one's was taken for a folder
    not begun (trained afresh over, its history lost). Said as what it is, with the fix."""
    from pathlib import Path

    from loftup.errors import CheckpointError
    from loftup.experiments import ExperimentSettings
    from loftup.experiments.begun import check_begun
    from loftup.experiments.designs import DESIGNS
    from loftup.experiments.runs import stage_configs

    s = ExperimentSettings("stages", quick=True, out=str(tmp_path / "exp"), progress=False)
    s, runs, data = s.resolved(), tmp_path / "exp" / "runs", tmp_path / "data"
    variants = DESIGNS["stages"](s).variants[:1]
    first = Path(stage_configs(s, variants[0], 0, data, runs)[0]["log"]["out_dir"])
    first.mkdir(parents=True)
    if finished:
        (first / "final").mkdir()
        (first / "summary.json").write_text("{}")
    (first / "checkpoint.pt").symlink_to(tmp_path / "scratch" / "checkpoint.pt")
    inputs = {"backbone_sha256": None, "training_data": {}}
    with pytest.raises(CheckpointError) as e:
        check_begun(s, variants, data, runs, inputs)
    assert str(e.value) == (
        f"{first / 'checkpoint.pt'} is a link to {tmp_path / 'scratch' / 'checkpoint.pt'}, "
        "which does not exist (a disk not mounted?); mount it, or remove the link to start "
        "afresh, or choose another --out"
    )


def test_a_stage_2_folder_whose_checkpoint_is_a_link_to_nothing_is_not_written_in(tmp_path):
    """Before stage 1 trains, the stage-2 folder's init.json was written as in a folder not
    begun (then its training took the link for no checkpoint)."""
    from loftup.errors import CheckpointError
    from loftup.experiments.run_folders import INIT_RECORD, _check_init_steps

    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "checkpoint.pt").symlink_to(tmp_path / "scratch" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="which does not exist \\(a disk not mounted\\?\\)"):
        _check_init_steps(tmp_path / "stage2", 5)
    assert not (tmp_path / "stage2" / INIT_RECORD).exists()
