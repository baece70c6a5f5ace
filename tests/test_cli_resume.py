"""``loftup demo --resume`` into a folder with nothing to resume (a mistyped --out): said on one
line. (``loftup train``'s: tests/test_train_cli.py.)"""

import json

from loftup.cli import main


def _demo_done(monkeypatch):
    """run_demo replaced by what it leaves (its report): the warning is said before it."""
    from pathlib import Path

    import loftup.world.demo

    def done(cfg, resume=False):
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "report.md").write_text("# demo\n")

    monkeypatch.setattr(loftup.world.demo, "run_demo", done)


def test_demo_resume_of_no_demo_warns_on_one_line(tmp_path, capsys, monkeypatch):
    """`loftup demo --resume --out typo` began a fresh demo there without a word."""
    _demo_done(monkeypatch)
    out = tmp_path / "typo"
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: --resume: {out} holds no demo to go on with; starting one afresh\n"


def test_demo_resume_of_a_begun_demo_says_nothing(tmp_path, capsys, monkeypatch):
    from loftup.world.demo import RECORD, DemoConfig, _options

    _demo_done(monkeypatch)
    out = tmp_path / "begun"
    out.mkdir()
    (out / RECORD).write_text(json.dumps(_options(DemoConfig(out=str(out)))))
    assert main(["demo", "--out", str(out), "--resume"]) == 0
    assert "warning" not in capsys.readouterr().err
