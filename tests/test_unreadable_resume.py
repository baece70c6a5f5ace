"""A resume of a run whose folder holds a file this user may not read, its checkpoint.pt,
run.json or metrics.csv: run.json and metrics.csv were read after the folder was changed
(summary.json deleted, config.yaml and run.json written, a finished run read as unfinished),
metrics.csv's and the checkpoint's refusals were bare ("OUT/metrics.csv: Permission denied"),
and the demo and the experiment, which train one run after another, trained the first before
the second was refused; the option offered was `loftup train`'s, "--out (log.out_dir)", under
commands that have no log.out_dir. Each is refused now before anything changes, with its chmod
and the option of the command. Run where modes apply (tests/file_modes.py)."""

from __future__ import annotations

import shutil

import pytest

from file_modes import commands, refuse, where_modes_apply
from train_fixtures import tiny_config, tiny_overrides, write_sa1b

pytestmark = pytest.mark.usefixtures("one_thread")

#: each file a resume reads, and what a refusal calls it
WHAT = {"checkpoint.pt": "training checkpoint", "run.json": "record", "metrics.csv": "metrics"}


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 8, size=56)


@pytest.fixture(scope="module")
def finished(sa1b, tmp_path_factory):
    """The folder of a finished 2-step run (summary.json and final/ in it)."""
    from loftup.train import train

    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(sa1b, out, 1, 2))
    assert (out / "summary.json").is_file()
    return out


def _copies(finished, tmp_path) -> dict:
    """{file: a copy of the finished run whose ``file`` (of :data:`WHAT`) is of mode 000}."""
    outs = {}
    for i, name in enumerate(WHAT):
        outs[name] = tmp_path / f"run{i}"
        shutil.copytree(finished, outs[name])
        refuse(outs[name] / name, "own")
    return outs


def _files(folder) -> dict:
    """{relative path: bytes} of every file under ``folder`` (the lock's file aside: each run
    writes its process there), its files of mode 000 made readable first."""
    from loftup.train.run_lock import LOCK_NAME

    held = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != LOCK_NAME:
            path.chmod(path.stat().st_mode | 0o400)
            held[str(path.relative_to(folder))] = path.read_bytes()
    return held


def _refused(said: str, path, another: str) -> None:
    """``said`` refuses ``path`` (what :data:`WHAT` calls it) by its mode: its chmod, then
    another ``another``."""
    what = WHAT[path.name]
    assert f"cannot read {what} {path}: permission denied (mode ----------" in said, said
    assert said.endswith(f"chmod u+r {path}; or choose another {another}"), said


def _errors(said: list) -> list:
    """[exit code, the error lines] of :func:`file_modes.commands`' [exit code, stderr]."""
    return [said[0], [line for line in said[1].splitlines() if line.startswith("error:")]]


def test_train_resume_refuses_a_file_it_may_not_read_before_changing_the_folder(
    sa1b, finished, tmp_path
):
    """`loftup train --resume max_steps=3` on a finished run whose checkpoint.pt, run.json or
    metrics.csv is of mode 000: exit 2, the chmod and another --out (log.out_dir), and the
    folder as it was: summary.json kept (deleted before run.json was read: the run then read
    as unfinished), config.yaml and run.json not written (metrics.csv's refusal came after)."""
    before = {name: _files(finished) for name in WHAT}
    outs = _copies(finished, tmp_path)
    cases = {n: ["train", *tiny_overrides(sa1b, out, 3), "--resume"] for n, out in outs.items()}
    said = where_modes_apply(commands(cases))
    for name, out in outs.items():
        code, errors = _errors(said[name])
        assert code == 2 and len(errors) == 1, said[name]
        _refused(errors[0], out / name, "--out (log.out_dir)")
        assert _files(out) == before[name], name  # summary.json, config.yaml, run.json kept


def test_a_run_trained_for_a_demo_or_an_experiment_offers_their_option(sa1b, finished, tmp_path):
    """train(out_option="--out"), as `loftup demo` and `loftup experiment` run it: a refusal
    offers their --out, not `loftup train`'s log.out_dir, which they refuse (an experiment's
    "log.out_dir cannot be given to an experiment")."""
    outs = _copies(finished, tmp_path)
    configs = {name: tiny_config(sa1b, out, 1, 3).to_dict() for name, out in outs.items()}
    said = where_modes_apply(f"""
from file_modes import told
from loftup.train import load_config, train
result = {{name: told(lambda: train(load_config(config), resume=True, out_option="--out"))
          for name, config in {configs!r}.items()}}
""")
    for name, out in outs.items():
        assert said[name].startswith("PathPermissionError: "), said[name]
        _refused(said[name], out / name, "--out")


def test_an_experiment_refuses_a_run_it_would_resume_up_front(sa1b, finished, tmp_path):
    """The experiment's up-front check of its begun run folders (:func:`_check_folder`, before
    any run trains): a run it would resume (3 steps asked of its 2) whose files a resume reads
    include one of mode 000 is refused there, with --out (run.json and metrics.csv were not
    looked at: the runs before it trained, then it stopped there; the checkpoint's bare
    PermissionError was no refused folder); a finished run it reuses as it is reads none."""
    outs = _copies(finished, tmp_path)
    configs = {name: tiny_config(sa1b, out, 1, 3).to_dict() for name, out in outs.items()}
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.experiments.begun import _check_folder
from loftup.experiments.folder_reads import FolderReads
from loftup.train import load_config
def check(config, steps):
    return _check_folder(load_config({{**config, "max_steps": steps}}),
                         Path(config["log"]["out_dir"]), 2, FolderReads())
configs = {configs!r}
result = {{name: told(lambda: check(config, 3)) for name, config in configs.items()}}
result["reused"] = [told(lambda: check(config, 2)) for name, config in configs.items()
                    if name != "checkpoint.pt"]
""")
    assert said.pop("reused") == ["none", "none"]  # not resumed: its records are not read
    for name, out in outs.items():
        assert said[name].startswith("PathPermissionError: "), said[name]
        _refused(said[name], out / name, "--out")
