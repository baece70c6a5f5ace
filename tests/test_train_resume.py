"""`loftup train --resume` with another model setting: goes on where the setting changes no
weight (model.attention_window), saying so; refused, naming the key, where it does."""

from __future__ import annotations

import json

import pytest
import torch

import loftup
from loftup.train import train
from train_fixtures import tiny_config as tiny
from train_fixtures import write_sa1b

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 8, size=56)


def test_a_stage1_run_resumed_with_another_attention_window_goes_on_and_says_so(
    sa1b, tmp_path, caplog
):
    """The window picks the tokens each pixel attends to and shapes no weight (stage 2 may set
    its own): a resume with another one was refused all the same, as if the weights could not
    be read. It goes on with this run's window; the log and run.json say what changed."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    with caplog.at_level("INFO", logger="loftup.train"):
        result = train(tiny(sa1b, out, 1, 3, "model.attention_window=3"), resume=True)
    (said,) = [r for r in caplog.records if "attention_window" in r.getMessage()]
    assert said.levelname == "WARNING"  # a forgotten override changes what is attended
    assert said.getMessage() == (
        "resuming with this run's model.attention_window=3 (the checkpoint, of step 2, was made "
        "with null: the steps from 2 on attend over 3 x 3 windows, not globally)"
    )
    assert [row["step"] for row in result.history] == [0, 1, 2]
    assert loftup.load_upsampler(result.pretrained).config.attention_window == 3
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and saved["model_config"]["attention_window"] == 3
    (resume,) = json.loads((out / "run.json").read_text())["resumes"]
    assert resume["config_changes"]["model.attention_window"] == [None, 3]
    # the override forgotten: "its 3 steps attended over 3 x 3 windows" was said, 1 of them did
    caplog.clear()
    with caplog.at_level("INFO", logger="loftup.train"):
        train(tiny(sa1b, out, 1, 4), resume=True)
    (said,) = [r for r in caplog.records if "attention_window" in r.getMessage()]
    assert said.getMessage() == (
        "resuming with this run's model.attention_window=null (the checkpoint, of step 3, was "
        "made with 3: the steps from 3 on attend globally, not over 3 x 3 windows)"
    )


def test_a_stage1_run_resumed_with_another_head_count_is_refused_naming_it(sa1b, tmp_path):
    """num_heads shapes no weight either, but it is how the weights are read (which channels
    make a head): another value would go on from weights that mean something else."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    with pytest.raises(loftup.LoftUpError) as e:
        train(tiny(sa1b, out, 1, 3, "model.num_heads=1"), resume=True)
    assert str(e.value) == (
        f"cannot resume {out / 'checkpoint.pt'}: it was made with model.num_heads=2, this run "
        "has model.num_heads=1; use the same config or another --out (log.out_dir)"
    )
