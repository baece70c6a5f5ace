"""`loftup demo --resume` and `loftup experiment` whose later training run holds a damaged file
its resume reads: their up-front checks tested only that each could be read, so a truncated
checkpoint.pt was refused (or a damaged metrics.csv a traceback) after earlier runs had been
resumed or trained, their folders changed (run.json, summary.json, config.yaml, final/). Now
read as the resume reads them, before any work. The refusals of such folders (another kind of
run, a lock held, a checkpoint not resumed) offer the command's own option for the folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest

import test_unreadable_resume
from file_modes import commands, refuse, where_modes_apply
from train_fixtures import held_elsewhere, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

#: a finished 2-step run's folder, and its data (module fixtures)
finished, sa1b = test_unreadable_resume.finished, test_unreadable_resume.sa1b

OPTIONS = {"train_scenes": 4, "val_scenes": 2, "size": 32, "stage1_steps": 2, "stage2_steps": 2}


@pytest.fixture(scope="module")
def demo_stage1(sa1b, tmp_path_factory):
    """The folder of the demo's stage 1 (its own config, of :data:`OPTIONS`), finished."""
    from loftup.train import train
    from loftup.world.config import DemoConfig
    from loftup.world.demo import stage_config

    out = tmp_path_factory.mktemp("demo_stage1") / "run"
    train(stage_config(DemoConfig(out="unused", **OPTIONS), 1, sa1b, out))
    assert (out / "summary.json").is_file()
    return out


def _demo(stage1, tmp_path, stage2=None):
    """An interrupted demo's folder: its options record, its stage-1 run ``stage1`` (and
    ``stage2``'s where given) copied in."""
    from loftup.world.config import DemoConfig

    cfg = DemoConfig(out=str(tmp_path / "demo"), **OPTIONS)
    out = tmp_path / "demo"
    out.mkdir()
    recorded = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out"}
    (out / "demo.json").write_text(json.dumps(recorded))
    shutil.copytree(stage1, out / "runs" / "stage1")
    if stage2 is not None:
        shutil.copytree(stage2, out / "runs" / "stage2")
    return cfg, out


def _resume(out, capsys) -> str:
    """`loftup demo --out OUT --resume` with :data:`OPTIONS`: refused (exit 2), its one line."""
    from loftup.cli import main

    argv = ["demo", "--out", str(out), "--resume"]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), errors
    return errors[0]


def _files(folder) -> dict:
    from loftup.train.run_lock import LOCK_NAME

    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def test_a_truncated_later_checkpoint_is_refused_before_stage_1_is_resumed(
    demo_stage1, tmp_path, capsys
):
    _, out = _demo(demo_stage1, tmp_path, stage2=demo_stage1)
    ckpt = out / "runs" / "stage2" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = _files(out)
    said = _resume(out, capsys)
    assert str(ckpt) in said and "corrupt or truncated" in said, said
    assert said.endswith("choose another --out"), said
    assert _files(out) == before  # stage 1 not resumed: its run.json, summary.json as they were


def test_damaged_bytes_of_a_later_checkpoint_are_refused_before_stage_1_is_resumed(
    demo_stage1, tmp_path, capsys
):
    """The up-front check maps the checkpoint's tensors, not reads them (the training loads
    it): a flipped byte inside one is still refused there, by its checksum."""
    _, out = _demo(demo_stage1, tmp_path, stage2=demo_stage1)
    ckpt = out / "runs" / "stage2" / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[data.index(b"PK\x03\x04", len(data) // 2) - 64] ^= 0xFF  # inside a tensor's bytes
    ckpt.write_bytes(bytes(data))
    before = _files(out)
    said = _resume(out, capsys)
    assert f"{ckpt} is corrupt: its member" in said and "checksum" in said, said
    assert _files(out) == before


def test_a_later_checkpoint_of_another_kind_of_run_is_refused_before_stage_1_is_resumed(
    demo_stage1, tmp_path, capsys
):
    """Stage 2's folder holding a stage-1 run: refused when stage 2 began, stage 1 resumed."""
    _, out = _demo(demo_stage1, tmp_path, stage2=demo_stage1)
    before = _files(out)
    said = _resume(out, capsys)
    ckpt = out / "runs" / "stage2" / "checkpoint.pt"
    assert f"cannot resume {ckpt}: it was made with stage=1, this run has stage=2" in said, said
    assert said.endswith("choose another --out, or move that folder away to train afresh")
    assert _files(out) == before


def test_a_damaged_metrics_csv_is_said_up_front(demo_stage1, tmp_path, caplog):
    from loftup.world.demo_out import check_out

    cfg, out = _demo(demo_stage1, tmp_path)
    metrics = out / "runs" / "stage1" / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes().replace(b"\n1,", b"\nabc,", 1))
    before = _files(out)
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        check_out(cfg, resume=True)
    assert f"metrics {metrics} is damaged" in caplog.text  # before any work
    assert "rebuilt from the checkpoint's history" in caplog.text
    assert _files(out) == before


def test_an_experiment_says_a_damaged_metrics_csv_of_a_run_it_resumes_up_front(
    sa1b, finished, tmp_path, caplog
):
    """The experiment's up-front check of a begun run folder it would resume (3 steps asked of
    its 2), before any run trains."""
    from loftup.experiments.begun import _check_folder
    from loftup.experiments.folder_reads import FolderReads

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    metrics = out / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes().replace(b"\n1,", b"\n1,abc,", 1))  # extra field
    before = _files(out)
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        assert _check_folder(tiny_config(sa1b, out, 1, 3), out, 2, FolderReads()) == 2
    assert f"metrics {metrics} is damaged" in caplog.text
    assert "rebuilt from the checkpoint's history" in caplog.text
    assert _files(out) == before


@pytest.mark.parametrize("option", ["--out (log.out_dir)", "--out"])
def test_a_run_of_other_settings_is_refused_with_the_command_s_own_fix(
    sa1b, finished, tmp_path, option
):
    """A demo's run folder whose checkpoint was made with another batch_size was told "use the
    same config or another --out (log.out_dir)": a demo has neither a config nor log.out_dir."""
    from loftup.errors import LoftUpError
    from loftup.train import train

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = _files(out)
    with pytest.raises(LoftUpError, match="batch_size=4, this run has batch_size=2") as e:
        train(tiny_config(sa1b, out, 1, 3, "batch_size=2"), resume=True, out_option=option)
    if option == "--out":
        assert str(e.value).endswith(
            "this command sets batch_size itself (the folder's run was made otherwise: by "
            "another loftup version, or another command): choose another --out, or move that "
            "folder away to train afresh"
        ), e.value
    else:
        assert str(e.value).endswith("use the same config or another --out (log.out_dir)")
    assert _files(out) == before


def test_a_tb_folder_that_is_a_file_is_refused_before_the_folder_changes(sa1b, finished, tmp_path):
    """TensorBoard's writer failed in its thread after summary.json was deleted (the finished
    run read as unfinished) and config.yaml and run.json were written."""
    from loftup.errors import UsageError
    from loftup.train import train

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "tb").write_text("not a folder\n")
    before = _files(out)
    cfg = tiny_config(sa1b, out, 1, 3, "log.tensorboard=true")
    with pytest.raises(UsageError, match=f"{out / 'tb'} is a file, where the run makes a folder"):
        train(cfg, resume=True)
    assert _files(out) == before


def test_a_tb_folder_this_user_may_not_write_is_refused_with_its_chmod(sa1b, finished, tmp_path):
    """`chmod 555 tb`: "error: b'OUT/tb/events.out.tfevents...': Permission denied" and a
    thread's traceback, the folder changed first; now refused up front, with the chmod."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "tb").mkdir()
    (out / "tb").chmod(0o555)
    before = _files(out)
    said = where_modes_apply(f"""
from file_modes import told
from loftup.train import load_config, train
from train_fixtures import tiny_overrides
overrides = tiny_overrides({str(sa1b)!r}, {str(out)!r}, 3) + ["log.tensorboard=true"]
result = told(lambda: train(load_config({{}}, overrides, stage=1), resume=True))
""")
    assert said.startswith("UsageError: "), said
    assert f"{out / 'tb'} takes no new files" in said, said
    assert said.endswith(f"choose another folder (or chmod u+w {out / 'tb'})"), said
    assert _files(out) == before


def test_demo_resume_refuses_a_stage_it_may_not_read_before_any_work(demo_stage1, tmp_path):
    """`loftup demo --out D --resume` where D/runs/stage2/run.json is of mode 000: refused
    before stage 1 trained on (or the scenes were written), with the demo's --out (it has no
    log.out_dir); D as it was. (Stage 1 a real demo stage-1 run: the check reads each stage's
    kind of run before the next stage's files.)"""
    _, out = _demo(demo_stage1, tmp_path, stage2=demo_stage1)
    record = out / "runs" / "stage2" / "run.json"
    before = _files(out)
    refuse(record, "own")
    options = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    said = where_modes_apply(commands({"demo": ["demo", "--out", str(out), "--resume", *options]}))
    code, errors = test_unreadable_resume._errors(said["demo"])
    assert code == 2 and len(errors) == 1, said
    test_unreadable_resume._refused(errors[0], record, "--out")
    assert _files(out) == before  # nothing written: no scenes, stage 1 not trained on


def _refused_run(command, demo_stage1, finished, sa1b, tmp_path, resume):
    """The folder of an interrupted run, and the call that trains it as ``command`` does: the
    demo's stage 1 (:func:`~loftup.world.demo.train_stages`), or `loftup train`'s run."""
    from loftup.train import train
    from loftup.world.demo import train_stages

    if command == "demo":
        cfg, out = _demo(demo_stage1, tmp_path)
        return out / "runs" / "stage1", lambda: train_stages(cfg, sa1b, resume=resume)
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out, lambda: train(tiny_config(sa1b, out, 1, 3), resume=resume)


#: the end of each refusal, as each command takes the run's folder
OPTION = {"demo": "choose another --out", "train": "choose another --out (log.out_dir)"}


@pytest.mark.parametrize("command", ["demo", "train"])
def test_a_run_folder_in_use_is_refused_with_the_command_s_own_option(
    command, demo_stage1, finished, sa1b, tmp_path
):
    """Its lock held by another process: a demo's refusal offered "--out (log.out_dir)"."""
    from loftup.errors import LoftUpError
    from loftup.train.run_lock import LOCK_NAME

    run, go = _refused_run(command, demo_stage1, finished, sa1b, tmp_path, resume=True)
    with held_elsewhere(run / LOCK_NAME):
        with pytest.raises(LoftUpError, match="is in use by another loftup train run") as e:
            go()
    said = str(e.value)
    assert said.startswith(str(run)) and said.endswith(f"or {OPTION[command]}"), said
    assert ("(log.out_dir)" in said) == (command == "train"), said


@pytest.mark.parametrize("command", ["demo", "train"])
def test_a_checkpoint_not_resumed_is_refused_with_the_command_s_own_option(
    command, demo_stage1, finished, sa1b, tmp_path
):
    from loftup.errors import LoftUpError

    run, go = _refused_run(command, demo_stage1, finished, sa1b, tmp_path, resume=False)
    with pytest.raises(LoftUpError, match="already holds a checkpoint") as e:
        go()
    said = str(e.value)
    assert said.startswith(str(run)) and said.endswith(f"or {OPTION[command]}"), said
    assert ("(log.out_dir)" in said) == (command == "train"), said
