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


@pytest.mark.parametrize(
    "flag, override",
    [
        (["--data", "/a"], "data.root=/b"),
        (["--out", "/a"], "log={out_dir: /b}"),
        (["--masks", "sam"], "data.masks=superpixels"),
    ],
)
def test_a_shorthand_and_an_override_of_its_key_that_disagree_are_refused(flag, override, capsys):
    """`--data /a data.root=/b` trained on /a without a word (the shorthand is set last): one
    line names both and the fix, before anything is read; the same value twice is no conflict."""
    argv = ["train", "--config", "stage1_cpu", *flag, "--print-config"]
    assert main([*argv, override]) == 2
    err = capsys.readouterr().err.strip()
    key = {"--data": "data.root", "--out": "log.out_dir", "--masks": "data.masks"}[flag[0]]
    other = override.rsplit("=", 1)[1] if "{" not in override else "/b"
    assert err == (
        f"error: {flag[0]} {flag[1]} and the override {key}={other} disagree ({flag[0]} is short "
        f"for {key}=...): give one of them"
    )
    assert main([*argv, f"{key}={flag[1]}"]) == 0
    assert f" {flag[1]}\n" in capsys.readouterr().out
    if flag[0] != "--masks":  # a quoted ~ is the home folder in both
        assert main([*argv[:3], flag[0], "~/a", f"{key}=~/a", "--print-config"]) == 0


def test_print_config_of_stage_two_without_init_says_what_the_run_says(capsys):
    """`loftup train --stage 2 --print-config` printed `init: null` as a config that runs,
    where the run itself refuses it first: the same one line (a resumed run needs no init)."""
    assert main(["train", "--stage", "2", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: stage 2 starts from a stage-1 result: set init=RUN/checkpoint.pt")
    assert "\n" not in err
    assert main(["train", "--stage", "2", "--print-config", "--resume"]) == 0
    assert "init: null\n" in capsys.readouterr().out
