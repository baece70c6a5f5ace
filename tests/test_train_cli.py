"""`loftup train` on the command line: what it says at the end of a run, and where."""

import pytest

from loftup.cli import main
from train_fixtures import gone_terminal, tiny_overrides, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_a_finished_run_ends_with_status_0_on_a_terminal_that_is_gone(tmp_path, capsys):
    """A terminal gone without a hang-up (its window closed, the SSH session ended, the run
    not stopped by SIGHUP) fails every write with EIO: the summary printed after the run
    raised, and a traceback and status 1 stood for a run whose files were all written.
    (--resume, with no checkpoint to resume, as after a mistyped --out: said on stderr.)"""
    data = write_sa1b(tmp_path / "sa1b", 4, size=56)
    with gone_terminal():
        with pytest.raises(OSError):
            print("to the gone terminal")  # the premise: printing there fails
        status = main(["train", *tiny_overrides(data, tmp_path / "run", steps=1), "--resume"])
    assert status == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert said == [f"no checkpoint in {tmp_path / 'run'} yet: starting from step 0"]
    assert (tmp_path / "run" / "final").is_dir() and (tmp_path / "run" / "summary.json").is_file()


def test_print_config_to_a_terminal_that_is_gone_ends_with_status_0(tmp_path, capsys):
    """--print-config to a gone terminal (EIO) ended in a traceback and status 1, where the
    summary of a run is lost quietly; the config printed to a live one is unchanged."""
    argv = ["train", "--config", "stage1_cpu", "--print-config", f"log.out_dir={tmp_path}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("stage: 1\n") and printed.endswith("\n")
    assert not printed.endswith("\n\n") and f"out_dir: {tmp_path}\n" in printed
    with gone_terminal():
        assert main(argv) == 0
