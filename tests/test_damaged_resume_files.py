"""Files of a run folder that a resume reads, damaged: read up front (before models, data and
the folder change), a damaged metrics.csv is said and its rows rebuilt from the checkpoint's
history; it was a ValueError, TypeError or UnicodeDecodeError traceback after nothing, or a
row of a damaged step dropped in silence."""

from __future__ import annotations

import logging

import pytest

from loftup.errors import LoftUpError
from loftup.train.checkpoint import pack_history
from loftup.train.earlier import read_earlier

ROWS = [{"step": s, "loss": 1.0 / (s + 1), "lr": 0.001} for s in range(4)]
GOOD = "step,loss,lr\n" + "".join(f"{r['step']},{r['loss']},{r['lr']}\n" for r in ROWS)
DAMAGED = {
    "a value no number": GOOD.replace("0.5,", "abc,"),
    "a row of extra fields": GOOD.replace("0.001\n", "0.001,7,8\n", 1),
    "a step no number": GOOD.replace("\n1,", "\n0.5,"),
    # csv.DictReader fills a cut row's fields with None: kept with its values lost
    "a row of too few fields": GOOD.replace("\n0,1.0,0.001\n", "\n0,1.0\n"),
    "binary bytes": None,
}


def _write(path, damage):
    if DAMAGED[damage] is None:
        path.write_bytes(GOOD.encode()[:20] + b"\xff\xfe\x00\x81" * 8)
    else:
        path.write_text(DAMAGED[damage])


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_metrics_csv_is_rebuilt_from_the_checkpoint_s_history(tmp_path, caplog, damage):
    path = tmp_path / "metrics.csv"
    _write(path, damage)
    kept = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        earlier = read_earlier(tmp_path, 3, history=pack_history(ROWS))
    assert earlier.rows == ROWS[:3]  # every step before the checkpoint's, none lost
    assert f"metrics {path} is damaged" in caplog.text
    assert "rebuilt from the checkpoint's history" in caplog.text
    assert path.read_bytes() == kept  # nothing changed up front


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_metrics_csv_without_a_history_is_refused_with_the_fix(tmp_path, damage):
    path = tmp_path / "metrics.csv"
    _write(path, damage)
    with pytest.raises(LoftUpError, match="move it away") as e:
        read_earlier(tmp_path, 3)
    assert str(path) in str(e.value)


def test_a_sound_metrics_csv_is_read_as_it_is(tmp_path):
    (tmp_path / "metrics.csv").write_text(GOOD)
    history = pack_history([{**r, "loss": 9.0} for r in ROWS])  # not used where it reads
    assert read_earlier(tmp_path, 3, history=history).rows == ROWS[:3]


def test_a_damaged_file_read_again_as_it_was_is_said_once(tmp_path, caplog):
    """The demo's up-front checks (two) and its training read a begun run's files again: the
    same damaged metrics.csv was said three times."""
    path = tmp_path / "metrics.csv"
    _write(path, "a value no number")
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        for _ in range(3):
            assert read_earlier(tmp_path, 3, history=pack_history(ROWS)).rows == ROWS[:3]
    assert caplog.text.count("is damaged") == 1


#: metrics.csv's rows lost, the checkpoint's history holding them: the resumed file held only
#: the steps trained after the resume, said nowhere
LOST = {
    "missing": None,
    "empty": "",
    "only its header": "step,loss,lr\n",
    "a row gone": GOOD.replace("1,0.5,0.001\n", ""),
}


@pytest.mark.parametrize("lost", LOST)
def test_metrics_csv_rows_lost_that_the_history_holds_are_rebuilt_and_said(tmp_path, caplog, lost):
    path = tmp_path / "metrics.csv"
    if LOST[lost] is not None:
        path.write_text(LOST[lost])
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        earlier = read_earlier(tmp_path, 3, history=pack_history(ROWS))
    assert earlier.rows == ROWS[:3]
    assert f"metrics {path} is damaged" in caplog.text
    assert "rebuilt from the checkpoint's history" in caplog.text
    assert ("step 1)" in caplog.text) == (lost == "a row gone")  # the step it lacks, named
    assert path.exists() == (LOST[lost] is not None)  # nothing changed up front


def test_a_missing_metrics_csv_is_said_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        for _ in range(3):
            assert read_earlier(tmp_path, 3, history=pack_history(ROWS)).rows == ROWS[:3]
    assert caplog.text.count("is damaged (it is missing)") == 1


def test_without_a_history_a_missing_or_empty_metrics_csv_keeps_no_rows(tmp_path):
    """An older checkpoint without a history: nothing to rebuild from, nothing to refuse."""
    assert read_earlier(tmp_path, 3).rows == []
    (tmp_path / "metrics.csv").write_text("")
    assert read_earlier(tmp_path, 3).rows == []


def test_blank_values_of_columns_a_row_lacked_are_no_damage(tmp_path, caplog):
    """A resumed older version's rows lack the columns added since: written blank."""
    (tmp_path / "metrics.csv").write_text(GOOD.replace("\n0,1.0,0.001\n", "\n0,,0.001\n"))
    history = pack_history([{k: v for k, v in ROWS[0].items() if k != "loss"}, *ROWS[1:]])
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        rows = read_earlier(tmp_path, 3, history=history).rows
    assert rows == [{"step": 0, "lr": 0.001}, *ROWS[1:3]]
    assert "damaged" not in caplog.text


def test_a_damaged_run_json_is_kept_under_a_free_name_said_in_the_warning(tmp_path, caplog):
    """A second damaged run.json was moved over the run.json.broken of the first."""
    (tmp_path / "run.json").write_text("{second")
    (tmp_path / "run.json.broken").write_text("{first")
    (tmp_path / "run.json.broken.1").mkdir()
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        earlier = read_earlier(tmp_path, 0)
    assert earlier.record is None and earlier.broken == "run.json.broken.2"
    assert "it is kept as run.json.broken.2 (" in caplog.text
    assert read_earlier(tmp_path / "nothing", 0).broken is None
