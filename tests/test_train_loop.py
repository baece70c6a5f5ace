"""Short real training runs: losses go down, checkpoints load everywhere, resume is exact.

What one step is given is in test_train_step_inputs.py; how a run stops, test_train_stopping.py;
what a resumed run keeps, test_train_resume_state.py; its folder's lock, test_train_run_folder.py.
"""

import json
import shutil

import pytest
import torch

import loftup
from loftup.cli import main
from loftup.data.dataset import MaskedImages, collate
from loftup.train import train
from loftup.train.batches import draw_step, stage2_inputs
from loftup.train.build import build_featurizer
from loftup.train.checkpoint import unpack_history
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


#: stage1_run's steps: enough for its losses to halve (a third of the first at 12)
STEPS = 12


@pytest.fixture(scope="module")
def stage1_run(sa1b, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "s1"
    # backbone_norm=own gives dinov2_tiny the same pixels; the record must still say "own"
    args = ("log.viz_every=8", "log.tensorboard=true", "backbone_norm=own")
    return train(tiny(sa1b, out, 1, STEPS, *args))


@pytest.fixture(scope="module")
def stage2_whole(stage1_run, sa1b, tmp_path_factory):
    """4 uninterrupted steps of stage 2 from ``stage1_run``, which the resumed runs of stage 2
    are compared with (how often it checkpoints changes nothing of what it trains)."""
    out = tmp_path_factory.mktemp("runs") / "s2"
    return train(tiny(sa1b, out, 2, 4, f"init={stage1_run.checkpoint}"))


def mean(xs):
    return sum(xs) / len(xs)


def test_a_short_seeded_run_learns(stage1_run):
    h = stage1_run.history
    assert len(h) == STEPS and [r["step"] for r in h] == list(range(STEPS))
    for key in ("loss", "target", "tv"):
        first, last = mean([r[key] for r in h[:4]]), mean([r[key] for r in h[-4:]])
        assert last < 0.5 * first, (key, first, last)
    # the reconstruction term includes log s of the learned uncertainty: it may go below 0
    first, last = mean([r["rec"] for r in h[:4]]), mean([r["rec"] for r in h[-4:]])
    assert last < first - 0.2, (first, last)


def test_the_run_leaves_loadable_checkpoints_and_its_record(stage1_run):
    out = stage1_run.out_dir
    raw = torch.load(stage1_run.checkpoint, map_location="cpu", weights_only=True)
    assert raw["step"] == STEPS and raw["stage"] == 1 and raw["backbone"] == "dinov2_tiny"
    assert len(unpack_history(raw["history"])) == STEPS and "state" in raw["optimizer"]
    model = loftup.load_upsampler(stage1_run.checkpoint)
    assert model.backbone == "dinov2_tiny"  # read from the checkpoint, so upsample needs no flag
    assert model.backbone_norm == "own"
    for key, value in raw["model"].items():
        assert torch.equal(model.state_dict()[key], value)
    folder = loftup.load_upsampler(stage1_run.pretrained)
    assert folder.backbone == "dinov2_tiny" and folder.backbone_norm == "own"
    assert all(torch.equal(folder.state_dict()[k], v) for k, v in raw["model"].items())
    info = json.loads((stage1_run.pretrained / "config.json").read_text())
    assert info["metadata"]["steps"] == STEPS and info["metadata"]["stage"] == 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == STEPS + 1 and rows[0].startswith("step,loss,rec,tv,target")
    assert sorted(p.name for p in (out / "viz").iterdir()) == [
        "step_0000008.png",
        f"step_{STEPS:07d}.png",  # and the last step's
    ]
    assert list((out / "tb").iterdir()) and (out / "config.yaml").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["final"]["loss"] == stage1_run.losses[-1]
    assert json.loads((out / "run.json").read_text())["loftup_version"] == loftup.__version__
    assert not list(out.glob(".*.tmp"))


def test_stage2_resume_equals_an_uninterrupted_run(stage1_run, stage2_whole, sa1b, tmp_path):
    init, whole = f"init={stage1_run.checkpoint}", stage2_whole
    train(tiny(sa1b, tmp_path / "parts", 2, 2, init))
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 4, init), resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    saved = unpack_history(torch.load(resumed.checkpoint, weights_only=True)["history"])
    timing = ("seconds", "data_seconds", "target_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in saved] == [
        {k: v for k, v in r.items() if k not in timing} for r in whole.history
    ]
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    for part in ("model", "teacher", "downsampler", "uncertainty"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert unpack_history(a["history"])[-1]["affinity"] > 0
    assert all(r["target_seconds"] > 0 for r in whole.history)  # the teacher's time, not 0
    teacher = loftup.load_upsampler(whole.out_dir / "final_teacher")
    student = loftup.load_upsampler(whole.pretrained)
    assert any(not torch.equal(teacher.state_dict()[k], v) for k, v in student.state_dict().items())


@pytest.mark.parametrize("view", ["full", "both"])
def test_stage2_teacher_on_the_full_image_or_both_scales(stage1_run, sa1b, tmp_path, view):
    crops = train(tiny(sa1b, tmp_path / "c", 2, 1, f"init={stage1_run.checkpoint}"))
    other = train(tiny(sa1b, tmp_path / view, 2, 1, f"init={stage1_run.checkpoint}",
                       f"stage2.teacher_view={view}"))  # fmt: skip
    a, b = crops.history[0], other.history[0]
    assert a["rec"] == pytest.approx(b["rec"], rel=1e-5)  # same student, same views
    assert b["affinity"] > 0 and abs(a["affinity"] - b["affinity"]) > 1e-6


def test_the_full_view_teacher_runs_once_a_step_and_not_once_a_jitter(stage1_run, sa1b):
    """teacher_view=full: the teacher sees the global view, the same for every jitter, so
    its output is the same for each; it was computed (and mask-adjusted) once per jitter."""
    cfg = tiny(sa1b, "unused", 2, 1, f"init={stage1_run.checkpoint}", "stage2.teacher_view=full")
    featurizer = build_featurizer(cfg, torch.device("cpu"))
    ds = MaskedImages(sa1b, size=112)
    batch = collate([ds[i] for i in range(4)])
    draws = draw_step(cfg, 0, featurizer.dim, featurizer.patch_size, [56])
    teacher = loftup.load_upsampler(stage1_run.checkpoint).eval()
    calls = []
    teacher.register_forward_hook(lambda *args: calls.append(1))
    inputs = stage2_inputs(featurizer, teacher, batch["image"].float() / 255, batch, draws, cfg)
    # the one region stands for every jitter: its affinity is computed once, not n_jitters times
    assert len(calls) == 1 and len(inputs["regions"]) == 1
    assert inputs["regions"][0]["weight"] == cfg.stage2.n_jitters == 2
    assert inputs["regions"][0]["teacher"].shape == (4, featurizer.dim, 8, 8)


def test_a_size_that_is_no_multiple_of_the_patch_trains_on_the_featurizers_grid(
    stage1_run, sa1b, tmp_path
):
    """63 px with patch 14 is 4.5 patches: the featurizer rounds it to 5 (70 px), and the
    downsampler's dropout mask must be drawn on those 5 cells, not on 63 // 14 = 4 (a crash at
    step 0 before)."""
    cfg = tiny(sa1b, tmp_path / "s1", 1, 1, "stage1.image_size=63")
    assert draw_step(cfg, 0, 384, 14, [63]).keep.shape[-2:] == (5, 5)
    one = train(cfg)
    two = train(tiny(sa1b, tmp_path / "s2", 2, 1, f"init={stage1_run.checkpoint}",
                     "stage2.global_sizes=[63]"))  # fmt: skip
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in one.history + two.history)


def test_architecture_switches_are_trained_and_recorded(sa1b, tmp_path):
    cfg = tiny(sa1b, tmp_path / "arch", 1, 2, "model.coords=false", "model.attention_window=3")
    result = train(cfg)
    model = loftup.load_upsampler(result.checkpoint)
    assert model.config.coords is False and model.config.attention_window == 3
    assert loftup.load_upsampler(result.pretrained).config.attention_window == 3
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["config"]["model"]["coords"] is False


def test_cli_trains_and_will_not_overwrite_a_run(sa1b, tmp_path, capsys):
    args = ["train", "--stage", "1", "--config", "stage1_cpu", "--data", str(sa1b),
            "--out", str(tmp_path / "cli"), "max_steps=2", "stage1.image_size=56",
            "data.masks=sa1b", "data.num_workers=0", "model.depth=1", "log.progress=false"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 steps, final loss" in out and "checkpoint:" in out
    assert main(args) == 2
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
    assert main([*args[:-1], "max_steps=3", "--resume"]) == 0
    assert torch.load(tmp_path / "cli" / "checkpoint.pt", weights_only=True)["step"] == 3


def test_bf16_autocast_runs_both_stages_close_to_float32(stage1_run, sa1b, tmp_path):
    init = f"init={stage1_run.checkpoint}"
    for stage, extra in ((1, []), (2, [init, "stage2.teacher_view=both"])):
        full = train(tiny(sa1b, tmp_path / f"f{stage}", stage, 1, *extra))
        half = train(tiny(sa1b, tmp_path / f"h{stage}", stage, 1, "precision=bf16", *extra))
        assert half.losses[0] == pytest.approx(full.losses[0], rel=0.05)


def test_stage2_resumes_from_its_checkpoint_whatever_became_of_init(
    stage1_run, stage2_whole, sa1b, tmp_path
):
    """The checkpoint holds the student, teacher and downsampler: a resumed stage 2 does not
    read init again. Before, a stage-1 run moved away stopped the resume ("init does not
    exist") and one of another architecture in its place ended in load_state_dict's
    RuntimeError traceback."""
    s1 = tmp_path / "s1"
    s1.mkdir()
    shutil.copy(stage1_run.checkpoint, s1)
    init = f"init={s1 / 'checkpoint.pt'}"  # a copy of stage2_whole's init
    train(tiny(sa1b, tmp_path / "parts", 2, 1, init))
    s1.rename(tmp_path / "moved")
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 4, init), resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in stage2_whole.history]
    train(tiny(sa1b, s1, 1, 1, "model.depth=2"))  # another architecture where init was
    resumed = train(tiny(sa1b, tmp_path / "parts", 2, 5, init), resume=True)
    assert resumed.steps == 5 and len(loftup.load_upsampler(resumed.pretrained).blocks) == 1


def test_stage2_reads_its_init_once_and_trains_the_same_with_a_model_key(
    stage1_run, sa1b, tmp_path, monkeypatch
):
    """A model.* key set for stage 2 is checked against init's architecture before anything
    else loads; the run then starts from what that check read. It read the file again, and a
    third time for the downsampler's state: three reads of a file that may be large and
    remote. The same key as init's changes nothing in the run."""
    init = f"init={stage1_run.checkpoint}"
    plain = train(tiny(sa1b, tmp_path / "plain", 2, 1, init))
    reads, load = [], torch.load

    def counted(f, *args, **kwargs):
        reads.append(str(getattr(f, "name", f)))  # the file open: its name
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    keyed = train(tiny(sa1b, tmp_path / "keyed", 2, 1, init, "model.depth=1"))
    assert reads.count(str(stage1_run.checkpoint)) == 1
    assert keyed.losses == plain.losses


def test_resuming_past_a_lower_max_steps_says_that_nothing_is_trained(
    stage1_run, sa1b, tmp_path, caplog
):
    """A run resumed with a max_steps below its checkpoint's step trained nothing and exported
    the checkpoint as final/ without a word: the user asked for a shorter run and did not get
    one. It still exports (a lower max_steps cannot undo steps), and says so."""
    out = tmp_path / "s1"
    shutil.copytree(stage1_run.out_dir, out)
    args = ("log.viz_every=8", "log.tensorboard=true", "backbone_norm=own")
    with caplog.at_level("WARNING", logger="loftup.train"):
        result = train(tiny(sa1b, out, 1, 8, *args), resume=True)
    assert result.steps == STEPS and len(result.history) == STEPS
    said = f"{out / 'checkpoint.pt'} holds step {STEPS}, past this run's 8 (max_steps"
    assert said in caplog.text
    assert "final/ is exported from the checkpoint as it is" in caplog.text


def test_the_checkpoint_clock_is_due_minutes_after_the_last_save_on_rank_0_only():
    from loftup.train.checkpoint import CheckpointClock

    now = [100.0]
    clock = CheckpointClock(1.5, main=True, clock=lambda: now[0])
    other = CheckpointClock(1.5, main=False, clock=lambda: now[0])
    now[0] += 89.9
    assert clock.votes() == {"ckpt_due": 0.0}
    now[0] += 0.1
    assert clock.votes() == {"ckpt_due": 1.0} and other.votes() == {"ckpt_due": 0.0}
    # averaged over 2 ranks (rank 0's 1, rank 1's 0): every rank reads "due", the key taken out
    means = {"loss": 0.5, "ckpt_due": 0.5}
    assert other.agreed(means) is True and means == {"loss": 0.5}
    clock.saved()
    now[0] += 60.0
    assert clock.votes() == {"ckpt_due": 0.0} and not clock.agreed(clock.votes())
    never = CheckpointClock(0, main=True, clock=lambda: now[0])
    now[0] += 1e9
    assert never.votes() == {"ckpt_due": 0.0}


@pytest.mark.parametrize("stage, minutes", [(1, 0), (2, 1e-9)])
def test_a_run_lost_between_step_checkpoints_goes_on_from_the_timed_one(
    request, sa1b, tmp_path, monkeypatch, stage, minutes
):
    """log.ckpt_minutes: a checkpoint once that much wall time has passed since the last,
    whatever log.ckpt_every says. A run lost at step 3 of 4 with ckpt_every=100 (as under kill
    -9, nothing of its own written on the way out) keeps step 3 with a clock of a moment, and
    resumed from it ends as an uninterrupted run does (in stage 2 the EMA teacher too, saved
    between its updates: ema_every=2); without the clock (0) nothing is kept."""
    from loftup.train import loop

    opts = ("log.ckpt_every=100", f"log.ckpt_minutes={minutes}")
    if stage == 2:
        opts += (f"init={request.getfixturevalue('stage1_run').checkpoint}",)
    out = tmp_path / "lost"
    real = loop.draw_step

    def lost_at_step_3(cfg, step, *args, **kwargs):
        if step == 3:
            raise MemoryError("the node is gone")  # no signal: the run writes nothing more
        return real(cfg, step, *args, **kwargs)

    monkeypatch.setattr(loop, "draw_step", lost_at_step_3)
    with pytest.raises(MemoryError):
        train(tiny(sa1b, out, stage, 4, *opts))
    monkeypatch.undo()
    if not minutes:
        assert not (out / "checkpoint.pt").exists()
        return
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = train(tiny(sa1b, out, stage, 4, *opts), resume=True)
    whole = request.getfixturevalue("stage2_whole")  # (the timed case is stage 2)
    assert resumed.losses == whole.losses and len(whole.losses) == 4
    a = torch.load(whole.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    parts = ("model", "downsampler", "uncertainty") + (("teacher",) if stage == 2 else ())
    assert all(a[part] for part in parts)
    for part in parts:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
