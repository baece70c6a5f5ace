"""A run's record, run.json: how each start of a run was made, kept across --resume."""

import json
import sys

import pytest

from loftup.train import train
from loftup.train.monitor import config_changes
from train_fixtures import tiny_config, write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 4, size=56)


def _record(out):
    return json.loads((out / "run.json").read_text())


def test_a_resumed_run_keeps_its_first_start_and_adds_each_resume(sa1b, tmp_path, monkeypatch):
    """--resume wrote run.json afresh: the first start's time, version, commit and command
    were lost, and with them the only trace that the run had been resumed at all."""
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["loftup", "train", "first"])
    train(tiny_config(sa1b, out, 1, 1))
    first = _record(out)
    assert "resumes" not in first and first["command"] == ["loftup", "train", "first"]

    monkeypatch.setattr(sys, "argv", ["loftup", "train", "second", "--resume"])
    train(tiny_config(sa1b, out, 1, 2, "optim.lr=1e-3"), resume=True)
    monkeypatch.setattr(sys, "argv", ["loftup", "train", "third", "--resume"])
    train(tiny_config(sa1b, out, 1, 3, "optim.lr=1e-3"), resume=True)
    record = _record(out)
    assert {k: v for k, v in record.items() if k != "resumes"} == first
    second, third = record["resumes"]
    assert second["command"][2] == "second" and third["command"][2] == "third"
    assert (second["step"], third["step"]) == (1, 2)
    assert second["config_changes"] == {"max_steps": [1, 2], "optim.lr": [3e-3, 1e-3]}
    assert third["config_changes"] == {"max_steps": [2, 3]}  # against the checkpoint's config
    assert set(second) >= {"loftup_version", "git_commit", "torch", "processes", "started"}
    # each start with its offset: the experiments compare two runs' starts, wherever read
    import datetime

    for start in (first["started"], second["started"], third["started"]):
        assert datetime.datetime.fromisoformat(start).utcoffset() is not None


def test_a_resume_whose_earlier_record_is_unreadable_says_so_and_writes_its_own(
    sa1b, tmp_path, caplog
):
    out = tmp_path / "run"
    train(tiny_config(sa1b, out, 1, 2))
    (out / "run.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="loftup"):
        train(tiny_config(sa1b, out, 1, 3), resume=True)
    assert "run.json cannot be read" in caplog.text
    assert "it is kept as run.json.broken" in caplog.text
    assert (out / "run.json.broken").read_text() == "{not json"  # kept aside, not written over
    record = _record(out)
    assert record["step"] == 2 and record["config_changes"] == {"max_steps": [2, 3]}
    assert "resumes" not in record
    # a second damaged record kept beside the first, not moved over it
    (out / "run.json").write_text("{second")
    caplog.clear()
    with caplog.at_level("WARNING", logger="loftup"):
        train(tiny_config(sa1b, out, 1, 4), resume=True)
    assert "it is kept as run.json.broken.1 (" in caplog.text
    assert (out / "run.json.broken").read_text() == "{not json"
    assert (out / "run.json.broken.1").read_text() == "{second"


def test_a_run_started_afresh_by_resume_without_a_checkpoint_keeps_no_earlier_record(
    sa1b, tmp_path
):
    """--resume where no checkpoint was written yet trains from step 0: a new run, whose
    record is its own (the earlier start left nothing it goes on from)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"started": "earlier"}))
    train(tiny_config(sa1b, out, 1, 1), resume=True)
    record = _record(out)
    assert record["started"] != "earlier" and "resumes" not in record and "step" not in record


def test_config_changes_name_nested_keys_and_keys_one_side_lacks():
    was = {"max_steps": 2, "optim": {"lr": 1.0, "name": "adamw"}, "old": 1}
    now = {"max_steps": 2, "optim": {"lr": 0.5, "name": "adamw"}, "new": (1, 2)}
    assert config_changes(was, now) == {
        "optim.lr": [1.0, 0.5],
        "new": [None, [1, 2]],
        "old": [1, None],
    }


def test_stage_2_records_the_hub_commit_its_init_was_loaded_from(sa1b, tmp_path, monkeypatch):
    """``init=ORG/NAME`` (a branch) or ``@START`` (a hash's start) was kept as given: once the
    branch moved, the record no longer said which weights the run started from. run.json now
    holds the whole commit loaded beside what was given (config.yaml keeps it as given)."""
    import yaml

    from hub_helpers import OTHER_COMMIT, _offline_cache, _two_commits

    stage1 = tmp_path / "s1"
    train(tiny_config(sa1b, stage1, 1, 1))
    # main and the branch dev name two commits (of the same files: which one loaded is the record's)
    repo = _two_commits(tmp_path / "hub", "someone/s1", stage1 / "final", stage1 / "final", "dev")
    main = (repo / "refs" / "main").read_text()
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)  # no folder someone/ here: the hub id is the hub's
    starts = {"someone/s1": main, "someone/s1@dev": OTHER_COMMIT}
    starts[f"someone/s1@{OTHER_COMMIT[:7]}"] = OTHER_COMMIT
    for n, (given, commit) in enumerate(starts.items()):
        out = tmp_path / f"s2-{n}"
        train(tiny_config(sa1b, out, 2, 1, f"init={given}"))
        assert _record(out)["init"] == {"given": given, "commit": commit}
        assert yaml.safe_load((out / "config.yaml").read_text())["init"] == given
    # a file as init has no commit to record
    local = tmp_path / "s2-local"
    train(tiny_config(sa1b, local, 2, 1, f"init={stage1 / 'final'}"))
    assert "init" not in _record(local)
