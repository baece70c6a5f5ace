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
