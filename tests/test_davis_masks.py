"""`loftup eval davis --save-masks`: mask paths that differ only in case are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval_data import TEST_BACKBONE, write_davis
from loftup.cli import main
from loftup.errors import UsageError
from loftup.eval.datasets import DavisSequence
from loftup.eval.video import check_mask_names


def test_sequences_whose_names_differ_only_in_case_are_refused_before_any_work(tmp_path, capsys):
    """--save-masks writes FOLDER/<sequence>/<frame>.png: sequences "bear" and "Bear" wrote
    into one folder on a case-insensitive disk (macOS, Windows), each overwriting the other's
    masks, and the folder held a mixture that scores as neither."""
    write_davis(tmp_path / "davis", sequences=("bear", "Bear"), frames=3)
    masks = tmp_path / "masks"
    args = ["eval", "davis", "--root", str(tmp_path / "davis"), "--backbone", TEST_BACKBONE,
            "--upsampler", "bilinear", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the sequences 'bear' and 'Bear' differ only in case" in err
    assert "rename one, or leave out --save-masks" in err
    assert not masks.exists() and not (tmp_path / "r.json").exists()


def _seq(name: str, *stems: str) -> DavisSequence:
    frames = tuple(Path(f"/d/JPEGImages/480p/{name}/{s}.jpg") for s in stems)
    return DavisSequence(name, frames, tuple(f.with_suffix(".png") for f in frames))


def test_frames_whose_names_differ_only_in_case_are_refused():
    with pytest.raises(UsageError, match=r"frames of sequence car 'a1' and 'A1' differ only"):
        check_mask_names([_seq("bear", "a1", "b1"), _seq("car", "a1", "A1")], "m")
    # distinct names, and a sequence listed twice (its masks are the same files): fine
    check_mask_names([_seq("bear", "a1", "b1"), _seq("car", "a1", "b1"), _seq("car", "a1")], "m")
