"""`loftup demo` at the command line, the demo itself stood in for (its report): --resume into
a folder with nothing to resume (a mistyped --out) said on one line, and the report printed to
a terminal that is gone. (`loftup train --resume`'s line: tests/test_train_cli.py.)"""

import json

from loftup.cli import main


def _demo_done(monkeypatch) -> list:
    """run_demo replaced by what it leaves (its report): the warning is said before it.
    Returns the list of the ``progress`` each call was given."""
    from pathlib import Path

    import loftup.world.demo

    given = []

    def done(cfg, resume=False, progress=True):
        given.append(progress)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "report.md").write_text("# demo\n")

    monkeypatch.setattr(loftup.world.demo, "run_demo", done)
    return given


def test_demo_resume_of_no_demo_warns_on_one_line(tmp_path, capsys, monkeypatch):
    """`loftup demo --resume --out typo` began a fresh demo there without a word."""
    _demo_done(monkeypatch)
    out = tmp_path / "typo"
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: --resume: {out} holds no demo to go on with; starting one afresh\n"


def test_demo_resume_with_options_that_cannot_run_says_only_why(tmp_path, capsys):
    """`--resume --train-scenes 2` (less than a batch of 4): the one error line, not the
    warning that a demo would start afresh first (it never starts)."""
    out = tmp_path / "typo"
    assert main(["demo", "--out", str(out), "--resume", "--train-scenes", "2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --train-scenes 2 is less than one batch (--batch-size 4): raise "
        "--train-scenes or lower --batch-size\n"
    )
    assert not out.exists()


def test_demo_resume_of_a_begun_demo_says_nothing(tmp_path, capsys, monkeypatch):
    from loftup.world.demo import RECORD, DemoConfig, _options

    _demo_done(monkeypatch)
    out = tmp_path / "begun"
    out.mkdir()
    (out / RECORD).write_text(json.dumps(_options(DemoConfig(out=str(out)))))
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_finished_demo_ends_with_status_0_on_a_terminal_that_is_gone(
    tmp_path, capsys, monkeypatch
):
    """The report printed at the end of a demo (many minutes of training) to a terminal gone
    without a hang-up raised EIO: a traceback and status 1 for a finished demo, as loftup
    train's summary and loftup experiment's report had."""
    from train_fixtures import gone_terminal

    _demo_done(monkeypatch)
    with gone_terminal():
        assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    assert main(["demo", "--out", str(tmp_path / "e")]) == 0  # to a live one: as before
    assert (
        capsys.readouterr().out
        == f"# demo\n\nwrote {tmp_path / 'e'}/report.md, report.json and figure.png\n"
    )


def test_a_demo_refuses_a_folder_holding_a_users_file_of_its_output_names(tmp_path, capsys):
    """`loftup demo --out mine` overwrote the user's own mine/report.md (and figure.png)
    with its report, status 0: only report.json and results.json were looked for. Refused
    before any work now, naming the file and the fix (a demo.json that is a link to nothing,
    which let the report.md be overwritten, is refused as that); a demo's own, begun there
    (its demo.json), goes on under --resume."""
    from loftup.world.demo import RECORD, DemoConfig, _options, check_out

    out = tmp_path / "mine"
    out.mkdir()
    # the least demo: where it is not refused, seconds, not minutes
    tiny = ["--out", str(out), "--size", "8", "--train-scenes", "1", "--val-scenes", "2"]
    tiny += ["--batch-size", "1", "--stage1-steps", "1", "--stage2-steps", "1"]
    for name in ("report.md", "figure.png"):
        (out / name).write_text("important")
        assert main(["demo", *tiny, "--probe-epochs", "1"]) == 2
        assert capsys.readouterr().err == (
            f"error: {out / name} is not a demo's (there is no {RECORD} in {out}), and the demo "
            f"would overwrite it; choose another --out, or move {name} away\n"
        )
        assert [p.name for p in out.iterdir()] == [name]  # nothing written
        assert (out / name).read_text() == "important"
        (out / name).unlink()
    (out / "figure.png").mkdir()  # a folder of that name: refused before, not at the end
    assert main(["demo", *tiny, "--probe-epochs", "1"]) == 2
    assert f"error: {out / 'figure.png'} is not a demo's" in capsys.readouterr().err
    (out / "figure.png").rmdir()
    (out / "report.md").write_text("important")
    (out / RECORD).symlink_to(tmp_path / "gone.json")  # a link to nothing: no demo's record
    assert main(["demo", *tiny, "--probe-epochs", "1"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out / RECORD} is a link to {tmp_path / 'gone.json'}, which is not there, so no "
        "demo's record; remove the link, or choose another --out\n"
    )
    assert (out / "report.md").read_text() == "important"
    (out / RECORD).unlink()
    cfg = DemoConfig(out=str(out))
    (out / RECORD).write_text(json.dumps(_options(cfg)))  # an interrupted demo's own outputs
    (out / "report.md").write_text("# demo\n")
    check_out(cfg, resume=True)


def test_demo_no_progress_hides_the_bars_as_the_other_commands_do(tmp_path, monkeypatch, capsys):
    """`loftup demo --no-progress` was refused (no such option), the only command without it;
    it reaches the demo as progress=False (what each step does with it: tests/test_demo.py)."""
    progress = _demo_done(monkeypatch)
    assert main(["demo", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["demo", "--out", str(tmp_path / "b")]) == 0
    assert progress == [False, True]
