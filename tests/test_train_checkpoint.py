"""Checkpoint files: a failed write leaves the previous one whole; the history packs losslessly."""

import pytest
import torch

from loftup.errors import CheckpointError
from loftup.train.checkpoint import (
    load_checkpoint,
    pack_history,
    remove_stale_temporaries,
    save_checkpoint,
    unpack_history,
)


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")  # torch.save fails after writing part of the file

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000), "x": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    (tmp_path / ".checkpoint.pt.abc.tmp").write_bytes(b"half")  # what a SIGKILL leaves
    assert remove_stale_temporaries(tmp_path) == 1
    (tmp_path / "other.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_history_packs_into_one_tensor_and_back():
    rows = [{"step": 0, "loss": 1.5, "rec": 0.25}, {"step": 1, "loss": 0.75, "rec": -0.5}]
    packed = pack_history(rows)
    assert packed["keys"] == ["step", "loss", "rec"] and packed["values"].shape == (2, 3)
    assert unpack_history(packed) == rows
    assert unpack_history(pack_history([])) == []
