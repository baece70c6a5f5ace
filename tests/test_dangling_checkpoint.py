"""A run's checkpoint.pt that is a link to a file that is not there (on a scratch disk not
mounted on this node): taken for no checkpoint, ``loftup train --resume`` trained from step 0,
wrote its metrics.csv over (the run's history lost) and put a file in the link's place; the
demo's up-front check and an experiment's took it for a folder not begun. Now refused, naming
where the link leads, with the fix and the command's option for the folder."""

from __future__ import annotations

import pytest

from loftup.cli import main
from loftup.errors import CheckpointError
from train_fixtures import tiny_config, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def _dangling(run):
    """``run``'s checkpoint.pt made a link to a file on a disk that is not there."""
    run.mkdir(parents=True, exist_ok=True)
    target = run.parent / "scratch" / "checkpoint.pt"
    (run / "checkpoint.pt").symlink_to(target)
    return target


@pytest.mark.parametrize("resume", [True, False])
def test_the_run_start_refuses_a_checkpoint_link_to_nothing(tmp_path, resume):
    from loftup.train.start import checkpoint_to_resume

    target = _dangling(tmp_path / "run")
    cfg = tiny_config(tmp_path / "data", tmp_path / "run")
    with pytest.raises(CheckpointError) as e:
        checkpoint_to_resume(cfg, tmp_path / "run", resume, main=True, another="--out")
    said = str(e.value)
    assert f"is a link to {target}, which does not exist" in said
    assert "mount it, or remove the link to start afresh" in said and "another --out" in said


def test_train_resume_keeps_the_folder_of_a_checkpoint_link_to_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    target = _dangling(run)
    (run / "metrics.csv").write_text("step,loss\n0,1.5\n1,1.25\n")
    argv = ["train", *tiny_overrides(tmp_path / "data", run, steps=1), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"is a link to {target}, which does not exist" in err and "Traceback" not in err
    assert "another --out (log.out_dir)" in err
    assert (run / "checkpoint.pt").is_symlink()
    assert (run / "metrics.csv").read_text() == "step,loss\n0,1.5\n1,1.25\n"


def test_a_link_to_a_file_is_a_checkpoint_and_nothing_is_none(tmp_path):
    from loftup.train.checkpoint import has_checkpoint

    assert not has_checkpoint(tmp_path / "checkpoint.pt")
    (tmp_path / "real.pt").write_bytes(b"x")
    (tmp_path / "checkpoint.pt").symlink_to(tmp_path / "real.pt")
    assert has_checkpoint(tmp_path / "checkpoint.pt")
