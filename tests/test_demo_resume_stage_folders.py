"""`loftup demo --resume` whose stage-2 folder its training refuses (a file or a link to nothing
in its place, a ``viz/`` that is a file, its lock held by another run): the up-front check
looked at the stages' checkpoints only, so stage 1 was resumed (its run.json given another
start, final/, metrics.csv, demo.json and the scenes written) before stage 2 was refused. The
refusals name the demo's --out as typed, not the stage's folder as if given as --out."""

from __future__ import annotations

import shutil

import pytest

from loftup.cli import main
from train_fixtures import held_elsewhere

pytestmark = pytest.mark.usefixtures("one_thread")

ARGV = ["--size", "8", "--train-scenes", "4", "--val-scenes", "2", "--stage1-steps", "1"]
ARGV += ["--stage2-steps", "1", "--probe-epochs", "1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny demo (read only: each test copies it)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out), *ARGV]) == 0
    return out


def _interrupted(finished, tmp_path):
    """A copy of ``finished`` without its report: a demo to go on with ``--resume``."""
    out = tmp_path / "out"
    shutil.copytree(finished, out, symlinks=True)
    for name in ("report.json", "report.md", "figure.png"):
        (out / name).unlink()
    return out


def _files(folder) -> dict:
    """Every file under ``folder`` and its bytes, links as where they lead."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            files[str(p.relative_to(folder))] = str(p.readlink())
        elif p.is_file():
            files[str(p.relative_to(folder))] = p.read_bytes()
    return files


def _resume(out, capsys) -> str:
    """`loftup demo --out OUT --resume`, refused (exit 2): its one line."""
    assert main(["demo", "--out", str(out), *ARGV, "--resume"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    return errors[0].removeprefix("error: ")


def _stage2_a_file(stage2):
    shutil.rmtree(stage2)
    stage2.write_text("x\n")
    return (
        f"{stage2} is a file, but a run's output (a run folder this command makes in --out "
        f"{stage2.parent.parent}) is a folder that will hold checkpoint.pt, final/ and "
        "metrics.csv; move it away or choose another --out"
    )


def _stage2_a_dangling_link(stage2):
    shutil.rmtree(stage2)
    stage2.symlink_to(stage2.parent / "gone")
    return (
        f"--out {stage2.parent.parent} cannot be written: {stage2} is a link to "
        f"{stage2.parent / 'gone'}, which does not exist; choose another folder"
    )


def _viz_a_file(stage2):
    shutil.rmtree(stage2 / "viz")
    (stage2 / "viz").write_text("x\n")
    return (
        f"--out {stage2.parent.parent} cannot be written: {stage2 / 'viz'} is a file, where the "
        "run makes a folder; move it away or choose another folder"
    )


DAMAGES = {"file": _stage2_a_file, "link": _stage2_a_dangling_link, "viz": _viz_a_file}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_stage_2_folder_training_refuses_is_refused_before_stage_1_goes_on(
    finished, tmp_path, capsys, damage
):
    out = _interrupted(finished, tmp_path)
    expected = DAMAGES[damage](out / "runs" / "stage2")
    before = _files(out)
    assert _resume(out, capsys) == expected
    assert _files(out) == before  # stage 1's run.json, final/, metrics.csv, the scenes...


def test_a_stage_2_folder_in_use_is_refused_before_stage_1_goes_on(finished, tmp_path, capsys):
    from loftup.train.run_lock import LOCK_NAME

    out = _interrupted(finished, tmp_path)
    stage2 = out / "runs" / "stage2"
    with held_elsewhere(stage2 / LOCK_NAME, "process 12345 on elsewhere\n"):
        before = _files(out)
        said = _resume(out, capsys)
    assert said == (
        f"{stage2} is in use by another loftup train run (process 12345 on elsewhere); wait "
        "for it to end (then --resume continues it), or choose another --out"
    )
    assert _files(out) == before


@pytest.mark.parametrize("damage", ["file", "link"])
def test_a_stage_folder_refused_by_its_training_names_the_demo_s_out(finished, tmp_path, damage):
    """The training's own refusal (a stage folder changed after the up-front check): it said
    "--out OUT/runs/stage2 cannot be written", a path the user never gave as --out."""
    from loftup.errors import UsageError
    from loftup.world.config import DemoConfig
    from loftup.world.demo import train_stages

    out = _interrupted(finished, tmp_path)
    expected = DAMAGES[damage](out / "runs" / "stage2")
    options = dict(size=8, train_scenes=4, val_scenes=2, stage1_steps=1, stage2_steps=1)
    cfg = DemoConfig(out=str(out), probe_epochs=1, **options)
    with pytest.raises(UsageError) as e:  # stage 1, finished, trains no more
        train_stages(cfg, out / "scenes" / "train", resume=True)
    assert str(e.value) == expected


def test_a_checkpoint_that_is_a_folder_is_said_so_with_the_fix(finished, tmp_path, capsys):
    """It was "error: OUT/runs/stage2/checkpoint.pt: Is a directory", no fix, no option."""
    out = _interrupted(finished, tmp_path)
    ckpt = out / "runs" / "stage2" / "checkpoint.pt"
    ckpt.unlink()
    ckpt.mkdir()
    before = _files(out)
    assert _resume(out, capsys) == (
        f"training checkpoint {ckpt} is a folder, not the file loftup train writes there: move "
        "it away (training starts afresh) or choose another --out"
    )
    assert _files(out) == before and ckpt.is_dir()


def test_a_checkpoint_link_to_nothing_is_refused_not_trained_afresh(finished, tmp_path, capsys):
    """A stage-2 checkpoint.pt on a disk not mounted: taken for none, stage 2 was trained
    again from step 0 over it (its metrics.csv written over, the link replaced by a file)."""
    out = _interrupted(finished, tmp_path)
    ckpt = out / "runs" / "stage2" / "checkpoint.pt"
    ckpt.unlink()
    ckpt.symlink_to(tmp_path / "scratch" / "checkpoint.pt")
    before = _files(out)
    assert _resume(out, capsys) == (
        f"{ckpt} is a link to {tmp_path / 'scratch' / 'checkpoint.pt'}, which does not "
        "exist (a disk not mounted?); mount it, or remove the link to start afresh, or choose "
        "another --out"
    )
    assert _files(out) == before
