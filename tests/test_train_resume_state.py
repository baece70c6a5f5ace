"""What a resumed run takes from its checkpoint and what it keeps of its own: the numbers
TensorBoard shows, its learning rate and optimiser, its trained modules, its data, the end it
has not yet reached, and a summary of an older history.
"""

import json

import pytest
import torch

import loftup
from loftup.train import train
from loftup.train.checkpoint import pack_history, save_checkpoint, unpack_history
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


def tensorboard_record(folder):
    """What TensorBoard shows for a run folder: {scalar tag: {step: value}} and {image tag:
    [steps]}, read with TensorBoard's own reader (which drops the points a resumed run
    replaced)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {}
    for tag in tags["scalars"]:
        points = acc.Scalars(tag)
        assert len({p.step for p in points}) == len(points), f"{tag} repeats a step"
        scalars[tag] = {p.step: p.value for p in points}
    return scalars, {tag: [e.step for e in acc.Images(tag)] for tag in tags["images"]}


def test_tensorboard_shows_the_numbers_of_the_csv_once_each_across_a_crash_and_resume(
    sa1b, tmp_path
):
    """A run checkpointed at step 2 that went on to step 4 (with another learning rate) before
    it died, then resumed from that checkpoint: TensorBoard shows steps 0-5 once each, with
    the resumed run's values."""
    out = tmp_path / "run"
    opts = ("log.tensorboard=true", "log.log_every=1", "log.viz_every=2")
    train(tiny(sa1b, out, 1, 2, *opts))
    at_step_2 = (out / "checkpoint.pt").read_bytes()
    died = train(tiny(sa1b, out, 1, 4, *opts, "optim.lr=3e-2"), resume=True)
    (out / "checkpoint.pt").write_bytes(at_step_2)  # steps 2 and 3 were never saved
    final = train(tiny(sa1b, out, 1, 6, *opts), resume=True)
    assert len(list((out / "tb").iterdir())) == 3  # one event file per process
    scalars, images = tensorboard_record(out)
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    csv = [dict(zip(header, map(float, row.split(",")))) for row in rows[1:]]
    assert [int(r["step"]) for r in csv] == list(range(6))
    for key in ("loss", "rec", "tv", "target"):
        shown = scalars[f"train/{key}"]
        assert sorted(shown) == list(range(6)), (key, sorted(shown))
        for row in csv:
            assert shown[int(row["step"])] == pytest.approx(row[key], rel=1e-6, abs=1e-7), key
    losses = [r["loss"] for r in final.history]
    assert [scalars["train/loss"][s] for s in range(6)] == pytest.approx(losses, rel=1e-6)
    # the crashed run's step 3 (after a step at another learning rate) was replaced
    assert scalars["train/loss"][3] != pytest.approx(died.history[3]["loss"], rel=1e-3)
    assert images == {"viz/upsampled_pca": [2, 4, 6], "viz/lowres_pca": [2, 4, 6]}


def test_a_resumed_run_trains_with_its_own_learning_rate_and_not_another_optimiser(
    sa1b, tmp_path, caplog
):
    """Loading the optimiser's state brings the checkpoint's learning rate with it; the
    resumed run's config wins and the log says so. Another optimiser is refused."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    with caplog.at_level("INFO", logger="loftup"):
        train(tiny(sa1b, out, 1, 3, "optim.lr=1e-3", "optim.weight_decay=0.01"), resume=True)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    assert {(g["lr"], g["weight_decay"]) for g in saved} == {(1e-3, 0.01)}
    assert "resuming with this run's optim.lr=0.001 (the checkpoint had 0.003)" in caplog.text
    assert "optim.weight_decay=0.01 (the checkpoint had 0.0)" in caplog.text
    with pytest.raises(loftup.LoftUpError, match=r"made with optim.name='nadam', this run has "
                       r"optim.name='sgd'; use the same optimiser or another --out \(log.out_dir"):  # fmt: skip
        train(tiny(sa1b, out, 1, 4, "optim.name=sgd"), resume=True)


def test_resuming_with_other_trained_modules_is_refused_in_one_line(sa1b, tmp_path):
    """recon.uncertainty adds or removes a trained module: the checkpoint's optimiser state
    and module states would not fit (a ValueError traceback from torch before)."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2, "log.ckpt_every=1"))
    with pytest.raises(loftup.LoftUpError, match=r"made with recon.uncertainty=True, this run "
                       r"has recon.uncertainty=False; use the same config or another --out"):  # fmt: skip
        train(tiny(sa1b, out, 1, 3, "recon.uncertainty=false"), resume=True)


def test_resuming_on_another_number_of_images_says_the_order_differs(sa1b, tmp_path, caplog):
    """The data order is a seeded permutation of the images, so a run resumed after images were
    added or removed (or data.max_images changed) reads them in another order than an
    uninterrupted run would, although --resume is said to go on exactly: it went on without a
    word. The checkpoint records the count, and a resumed run whose data differs says so."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 1))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["images"] == 16
    with caplog.at_level("WARNING", logger="loftup.train"):
        train(tiny(sa1b, out, 1, 2, "data.max_images=12"), resume=True)
    assert (
        f"{out / 'checkpoint.pt'} was trained on 16 images, the data now holds 12: the resumed "
        "run reads them in another order than an uninterrupted run would"
    ) in caplog.text


def test_a_run_resumed_to_train_on_is_not_ended_until_it_writes_its_own_summary(
    sa1b, tmp_path, monkeypatch
):
    """summary.json, written last, marks a run that ended (``loftup experiment`` reuses a run
    folder holding it and final/). A run resumed with more steps and killed after its last
    checkpoint but before its export kept the earlier run's summary beside the earlier final/:
    it looked ended, at the new step count, with the old weights. The resumed run removes it
    at its start; going on exports and summarises the new end."""
    from loftup.train import loop

    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    assert json.loads((out / "summary.json").read_text())["steps"] == 2

    def killed(*args, **kwargs):
        raise MemoryError("killed before the export")

    monkeypatch.setattr(loop, "finish_run", killed)
    with pytest.raises(MemoryError):
        train(tiny(sa1b, out, 1, 4), resume=True)
    monkeypatch.undo()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    assert not (out / "summary.json").exists()
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["steps"] == 2
    resumed = train(tiny(sa1b, out, 1, 4), resume=True)
    assert resumed.steps == 4 and json.loads((out / "summary.json").read_text())["steps"] == 4
    assert json.loads((out / "final" / "config.json").read_text())["metadata"]["steps"] == 4


def test_a_run_resumed_from_an_older_history_summarises_the_values_it_has(sa1b, tmp_path):
    """A checkpoint of an older version holds no column that this one writes (here:
    target_seconds): summary.json's mean_last_10 failed on the old rows (KeyError at the run's
    end; once packed again, NaN: null in the JSON). The means are of the values there are, and
    how many rows each covers is said."""
    out = tmp_path / "run"
    train(tiny(sa1b, out, 1, 2))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    old = [
        {k: v for k, v in r.items() if k != "target_seconds"}
        for r in unpack_history(ckpt["history"])
    ]
    save_checkpoint(out / "checkpoint.pt", {**ckpt, "history": pack_history(old)})
    resumed = train(tiny(sa1b, out, 1, 4), resume=True)
    summary = json.loads((out / "summary.json").read_text())
    new = [r["target_seconds"] for r in resumed.history[2:]]
    assert summary["mean_last_10"]["target_seconds"] == pytest.approx(sum(new) / 2)
    assert summary["mean_last_10_rows"]["target_seconds"] == 2
    assert summary["mean_last_10_rows"]["loss"] == 4
    assert summary["mean_last_10"]["loss"] == pytest.approx(sum(resumed.losses) / 4)
    train(tiny(sa1b, out, 1, 5), resume=True)  # the old rows packed again: NaN where missing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_last_10_rows"]["target_seconds"] == 3
    assert summary["mean_last_10"]["target_seconds"] > 0
