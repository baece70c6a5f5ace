"""Which process speaks for a run: rank 0 of a torchrun job, or a process alone whatever its
RANK (a job script's RANK=$SLURM_PROCID for one process), one rule for every line and
warning said once a run."""

import pytest

from loftup.cli import main
from loftup.ranks import dist_env, is_main_process
from train_fixtures import tiny_overrides, write_sa1b


@pytest.mark.parametrize(
    "rank, world, main_process",
    [
        (None, None, True),
        ("1", None, True),  # RANK alone: one process
        ("1", "1", True),
        ("0", "2", True),
        ("1", "2", False),
        ("x", "2", True),  # no number: an error where the processes meet, not silence
    ],
)
def test_the_main_process_is_rank_0_as_torchrun_s_environment_is_read(
    monkeypatch, rank, world, main_process
):
    for name, value in (("RANK", rank), ("WORLD_SIZE", world)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert is_main_process() is main_process
    if rank != "x":
        assert (dist_env()[0] == 0) is main_process


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")
def test_loftup_train_alone_with_a_rank_says_where_its_checkpoint_is(tmp_path, monkeypatch, capsys):
    """RANK=1 with no WORLD_SIZE trains alone, as rank 0 (it writes the checkpoint), yet the
    command took itself for rank 1 of a job and said nothing of what it wrote."""
    root = write_sa1b(tmp_path / "sa", 4, size=56)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", *tiny_overrides(root, tmp_path / "run", 1)]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {tmp_path / 'run'}" in out, out
