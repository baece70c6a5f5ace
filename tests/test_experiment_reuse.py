"""`loftup experiment` run reuse: what a run folder is checked against before it is reused or
gone on with (the training data, the stage-1 run a stage-2 run starts from, the settings)."""

from __future__ import annotations

from loftup.cli import main


def test_an_out_inside_the_training_data_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """`--data . --out exp`: training read the report's figures as training images, and every
    rerun was refused as trained on other data (the figures change), after deleting too."""
    photos = tmp_path / "photos"
    photos.mkdir()
    monkeypatch.chdir(photos)
    args = ["experiment", "coords", "--quick", "--seeds", "1", "--no-progress", "--data", "."]
    for out in ("exp", ".", str(photos / "a" / "b")):
        assert main([*args, "--out", out]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} lies inside --data ." in err and err.count("\n") == 1
        assert "choose an --out outside the training data" in err
    assert list(photos.iterdir()) == []  # nothing written
    from loftup.experiments import ExperimentSettings, _check_out_outside_data

    beside = ExperimentSettings("coords", out=str(tmp_path / "photos-exp"), data=str(photos))
    _check_out_outside_data(beside.resolved())  # a name that starts alike is not inside


def test_a_link_to_nothing_in_the_training_data_does_not_stop_the_experiment(tmp_path):
    """One dangling link (or a file gone since the listing) in --data ended the experiment with
    "No such file or directory" and no context, where training skips such a file."""
    from loftup.experiments.data import run_inputs

    (tmp_path / "sa_1.jpg").write_bytes(b"jpeg")
    (tmp_path / "sa_2.jpg").symlink_to(tmp_path / "gone.jpg")
    first = run_inputs({"sha256": None}, tmp_path, "superpixels")["training_data"]
    assert first["files"] == 2
    (tmp_path / "gone.jpg").write_bytes(b"here now")  # the link leads to a file: other data
    assert run_inputs({"sha256": None}, tmp_path, "superpixels")["training_data"] != first
