"""`loftup demo --resume` reads each stage's training checkpoint in full once: the command's
"nothing to resume" look, the demo's up-front check of the folder and each stage's training
loaded every checkpoint.pt in full (three loads each). The up-front check now maps its tensors
(it needs their config, step and history: mapped in fact, /proc/self/maps says) and the
training loads it, its folder locked. A file that cannot be mapped: tests/test_hub_mapped_load.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loftup.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ARGV = ["--size", "8", "--train-scenes", "4", "--val-scenes", "2", "--stage1-steps", "1"]
ARGV += ["--stage2-steps", "1", "--probe-epochs", "1"]


def _mapped(path) -> bool:
    """Whether ``path`` is mapped in this process (/proc/self/maps: Linux)."""
    with open("/proc/self/maps") as f:
        return any(line.rstrip("\n").endswith(str(Path(path).resolve())) for line in f)


def test_a_demo_resume_loads_each_checkpoint_in_full_once(tmp_path, monkeypatch):
    import loftup.hub

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), *ARGV]
    assert main(argv) == 0
    (out / "report.json").unlink()  # both stages' checkpoints there: a demo to go on with
    real, reads = loftup.hub.torch_load, []

    def recorded(path, **kw):  # loftup's one loader of torch files, called through
        data = real(path, **kw)
        if Path(path).name == "checkpoint.pt":
            reads.append((Path(path).parent.name, "mapped" if kw.get("mmap") else "full"))
            if sys.platform.startswith("linux"):  # mapped in fact, or not at all
                assert (kw.get("mmap") or False) == _mapped(path)
        return data

    monkeypatch.setattr(loftup.hub, "torch_load", recorded)
    assert main([*argv, "--resume"]) == 0
    assert (out / "report.json").is_file()
    # both stages checked before stage 1 trains on (a refusal of stage 2's comes first), then
    # each loaded by its training
    assert reads == [
        ("stage1", "mapped"),
        ("stage2", "mapped"),
        ("stage1", "full"),
        ("stage2", "full"),
    ]


def test_a_resumed_demo_reports_the_seconds_of_the_runs_before_it_too(tmp_path, monkeypatch):
    """A demo stopped by SIGTERM and gone on with --resume reported the resumed process's
    seconds alone (report.json's ``seconds``, report.md's "N s in all"): the first one's
    scenes and training were lost. Each phase's seconds are kept in demo.json as it ends or
    is stopped, and the resumed run adds its own to them."""
    import json
    import os
    import re
    import signal

    import loftup.world.demo

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), *ARGV, "--no-progress"]
    real = loftup.world.demo.train_stages

    def stopped_at_its_end(*args, **kw):  # a SIGTERM as the training ends, before the probes
        done = real(*args, **kw)
        os.kill(os.getpid(), signal.SIGTERM)
        return done

    monkeypatch.setattr(loftup.world.demo, "train_stages", stopped_at_its_end)
    assert main(argv) == 128 + signal.SIGTERM
    assert not (out / "report.json").exists()
    before = json.loads((out / "demo.json").read_text())["seconds"]
    assert sorted(before) == ["scenes", "training"] and before["training"] > 0, before
    monkeypatch.setattr(loftup.world.demo, "train_stages", real)
    assert main([*argv, "--resume"]) == 0
    seconds = json.loads((out / "report.json").read_text())["seconds"]
    for phase, spent in before.items():  # (the report's to a tenth)
        assert seconds[phase] >= round(spent, 1), (phase, before, seconds)
    in_all = re.search(r"; (\d+) s in all on ", (out / "report.md").read_text())
    assert int(in_all.group(1)) >= round(sum(before.values())), (in_all, before)


def test_seconds_lost_to_a_kill_or_an_edited_record_are_said_not_counted(tmp_path):
    """A demo killed outright (``kill -9``) in its training lost that phase's seconds, and the
    resumed report said "N s in all" as if complete; an edited demo.json's other keys
    (``"foo": 1e9``) were added up into it. The record says the phase it is in: a resume of
    one killed in it knows seconds were lost (kept for the resumes after), and the report
    says "at least"; only the demo's phases are added up, a value left out said lost too."""
    import json
    import os
    import signal
    import subprocess

    from loftup.world.config import DemoConfig
    from loftup.world.demo_seconds import PhaseSeconds
    from loftup.world.report import report_markdown

    killed = (
        "import os, signal, sys\n"
        "from loftup.world.demo_seconds import PhaseSeconds\n"
        "clock = PhaseSeconds(sys.argv[1], {'seed': 0}, False)\n"
        "with clock.phase('scenes'):\n    pass\n"
        "with clock.phase('training'):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], env=env)
    assert done.returncode == -signal.SIGKILL
    clock = PhaseSeconds(tmp_path, {"seed": 0}, True)
    assert clock.lost and list(clock.seconds) == ["scenes"], clock.seconds
    with clock.phase("training"):
        pass
    assert PhaseSeconds(tmp_path, {"seed": 0}, True).lost  # said by the resumes after it too
    scores = {"miou": 0.3, "pixel_accuracy": 0.8, "boundary_f_2px": 0.4}
    results = {name: scores for name in ("bilinear", "bicubic", "stage1", "stage2")}
    seconds = {"scenes": 3.0, "training": 4.0}
    text = report_markdown(DemoConfig(), results, 2, seconds, lost=True)
    assert (
        "; at least 7 s in all on " in text and "lost some of its seconds: killed outright" in text
    ), text
    assert "; 7 s in all on " in report_markdown(DemoConfig(), results, 2, seconds)

    for seconds, lost in (({"scenes": 2.5, "training": 1}, False),
                          ({"scenes": 2.5, "foo": 1e9}, True),
                          ({"scenes": 2.5, "training": "12"}, True),
                          ({"scenes": 2.5, "training": -1}, True),
                          ({"scenes": 2.5, "training": 10**400}, True)):  # fmt: skip
        (tmp_path / "demo.json").write_text(json.dumps({"seed": 0, "seconds": seconds}))
        clock = PhaseSeconds(tmp_path, {"seed": 0}, True)
        assert clock.seconds["scenes"] == 2.5 and "foo" not in clock.seconds, seconds
        assert clock.lost == lost and sum(clock.seconds.values()) < 4, seconds
    # a record of an earlier version (its options, no seconds): the runs before it kept none
    (tmp_path / "demo.json").write_text(json.dumps({"seed": 0}))
    clock = PhaseSeconds(tmp_path, {"seed": 0}, True)
    assert clock.lost and clock.seconds == {}
    (tmp_path / "demo.json").unlink()  # none: nothing begun, nothing lost
    assert not PhaseSeconds(tmp_path, {"seed": 0}, True).lost
    # none beside scenes (an earlier version's, which wrote no record; gone on with): their
    # seconds were lost (the report said "N s in all" without them)
    (tmp_path / "demo.json").unlink()
    (tmp_path / "scenes" / "train").mkdir(parents=True)
    assert PhaseSeconds(tmp_path, {"seed": 0}, True).lost


def test_a_phase_not_among_those_a_record_keeps_is_refused(tmp_path):
    """A phase renamed where the demo times it (``phase("train")``) and not in ``PHASES`` was
    timed, then left out of a resume's seconds and said lost (every report after it "at
    least"): refused before its block runs; and the demo times each phase a record keeps."""
    import ast
    import inspect

    import loftup.world.demo as demo
    from loftup.world.demo_seconds import PHASES, PhaseSeconds

    clock = PhaseSeconds(tmp_path, {"seed": 0}, False)
    ran = []
    with pytest.raises(ValueError, match="no demo phase 'train': one of scenes, training"):
        with clock.phase("train"):
            ran.append(1)
    assert ran == [] and clock.seconds == {}
    timed = [
        node.args[0]
        for node in ast.walk(ast.parse(inspect.getsource(demo)))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "phase"
    ]
    names = [n.value if isinstance(n, ast.Constant) else getattr(demo, n.id) for n in timed]
    assert names == list(PHASES), names
