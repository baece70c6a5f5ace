"""Checkpoint files: a failed write leaves the previous one whole; the history packs losslessly."""

import os
import pickle

import pytest
import torch

from loftup import load_upsampler
from loftup.atomic import temp_beside
from loftup.cli import main
from loftup.errors import CheckpointError, LoftUpError
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release
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
    # and in the middle of any other file the run writes: they were left for good
    killed = [temp_beside(tmp_path / name) for name in ("metrics.csv", "viz/step_0000002.png")]
    (tmp_path / ".notes.tmp").write_text("the user's")
    assert remove_stale_temporaries(tmp_path) == 2 and not any(map(os.path.exists, killed))
    assert (tmp_path / ".notes.tmp").exists()
    (tmp_path / ".notes.tmp").unlink()
    (tmp_path / "other.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="other.pt is corrupt or not a PyTorch or safetens"):
        load_checkpoint(tmp_path / "other.pt")


def test_history_packs_into_one_tensor_and_back():
    rows = [{"step": 0, "loss": 1.5, "rec": 0.25}, {"step": 1, "loss": 0.75, "rec": -0.5}]
    packed = pack_history(rows)
    assert packed["keys"] == ["step", "loss", "rec"] and packed["values"].shape == (2, 3)
    assert unpack_history(packed) == rows
    assert unpack_history(pack_history([])) == []


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _one_error_line(capsys, warned: bool = False) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    if warned:  # below torch 2.6 a pickle is loaded with a warning first (CVE-2025-32434)
        assert lines and "CVE-2025-32434" in lines[0], err
        lines, err = lines[1:], "\n".join(lines[1:])
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("how", ["torch", "plain-pickle"])
def test_resume_from_a_malicious_checkpoint_is_refused_in_one_line(
    tmp_path, capsys, monkeypatch, how
):
    """Never torch's text (which suggests weights_only=False), never the code run."""
    monkeypatch.setattr("loftup.hub.files._risk_said", False)  # below 2.6: said in this process
    marker, out = tmp_path / "pwned", tmp_path / "run"
    out.mkdir()
    payload = {"format": "loftup-train", "step": _Exploit(marker)}
    if how == "torch":
        torch.save(payload, out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(pickle.dumps(payload))
    args = ["train", "--config", "stage1_cpu", "--data", str(tmp_path), "--out", str(out)]
    assert main([*args, "--resume"]) == 2
    line = _one_error_line(capsys, warned=torch_release() < SAFE_PICKLE_TORCH)
    assert line.startswith(f"error: refusing to load training checkpoint {out / 'checkpoint.pt'}")
    assert "could run code" in line and "not loaded" in line
    assert "weights_only" not in line and "False" not in line
    assert not marker.exists()


def test_a_file_that_is_not_a_pytorch_file_is_called_corrupt(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage garbage garbage")
    with pytest.raises(CheckpointError) as e:
        load_upsampler(garbage)
    assert "is corrupt or not a PyTorch or safetensors file" in str(e.value)
    assert "pickled objects" not in str(e.value) and "could run code" not in str(e.value)
    (tmp_path / "a.png").write_bytes(b"png")
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(garbage), "--backbone", "dinov2_tiny"]
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert "is corrupt or not a PyTorch or safetensors file" in _one_error_line(capsys)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt is empty"):
        load_checkpoint(empty)
    save_checkpoint(tmp_path / "whole.pt", {"step": 3})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pt is corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"step": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="is not a loftup training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_stage2_from_a_home_relative_init_keeps_the_stage1_downsampler(tmp_path, monkeypatch):
    """init=~/run/checkpoint.pt (a YAML config does not expand ~): the upsampler was loaded
    from it, but its downsampler and uncertainty were silently left at their fresh values."""
    from loftup.featurizers import resolve
    from loftup.train.build import (
        build_optimizer,
        build_trainee,
        build_upsampler,
        checkpoint_payload,
    )
    from train_fixtures import tiny_config

    monkeypatch.setenv("HOME", str(tmp_path))
    spec = resolve("dinov2_tiny")
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", 1, 1)
    upsampler, cfg, _ = build_upsampler(cfg, spec.dim)
    trainee = build_trainee(cfg, upsampler, spec.patch_size, {})
    with torch.no_grad():
        trainee.downsampler.scale.fill_(2.0)
        trainee.uncertainty.conv.bias.fill_(0.5)
    payload = checkpoint_payload(
        cfg, trainee, build_optimizer(cfg, trainee.parameters()), None, 1, [], 0
    )
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", payload)
    stage2 = tiny_config(tmp_path / "data", tmp_path / "s2", 2, 1, "init=~/run/checkpoint.pt")
    upsampler, stage2, extras = build_upsampler(stage2, spec.dim)
    student = build_trainee(stage2, upsampler, spec.patch_size, extras)
    assert torch.equal(student.downsampler.scale, trainee.downsampler.scale)
    assert torch.equal(student.uncertainty.conv.bias, trainee.uncertainty.conv.bias)


def test_stage2_warns_when_its_backbone_is_given_the_image_otherwise_than_init_was(
    tmp_path, caplog
):
    """A stage-1 run whose backbone was given the image with backbone_norm=own (CLIP, SigLIP)
    and a stage 2 from it with the default (imagenet) train on other features: allowed (an
    experiment), but said, with the setting that keeps them the same."""
    import logging

    from loftup.featurizers import resolve
    from loftup.train.build import (
        build_optimizer,
        build_trainee,
        build_upsampler,
        checkpoint_payload,
    )
    from train_fixtures import tiny_config

    spec = resolve("dinov2_tiny")
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", 1, 1, "backbone_norm=own")
    upsampler, cfg, _ = build_upsampler(cfg, spec.dim)
    trainee = build_trainee(cfg, upsampler, spec.patch_size, {})
    optimizer = build_optimizer(cfg, trainee.parameters())
    save_checkpoint(
        tmp_path / "run" / "checkpoint.pt",
        checkpoint_payload(cfg, trainee, optimizer, None, 1, [], 0),
    )
    init = f"init={tmp_path / 'run' / 'checkpoint.pt'}"
    stage2 = tiny_config(tmp_path / "data", tmp_path / "s2", 2, 1, init)
    with caplog.at_level(logging.WARNING, logger="loftup.train"):
        build_upsampler(stage2, spec.dim, "own")  # the same features: nothing to say
        build_upsampler(stage2, spec.dim, None)  # a backbone the choice does not change
        assert not caplog.records
        build_upsampler(stage2, spec.dim, "imagenet")
    (record,) = caplog.records
    assert "backbone_norm=own" in record.getMessage()
    assert "set backbone_norm=own to go on with the same" in record.getMessage()


def test_resuming_with_another_architecture_names_the_key_and_both_values():
    """A stage-1 run resumed with another model.* value was refused with "its model config
    differs from this run's", naming neither the key nor the fix; and a checkpoint made before
    a model key existed (its default then) could never be resumed, its dict lacking the key."""
    from loftup.train.config import load_config
    from loftup.train.resuming import check_resumable

    cfg = load_config({}, ["model.depth=1"])
    saved = cfg.to_dict()
    saved["model"] = {**saved["model"], "depth": 3}
    with pytest.raises(LoftUpError) as e:
        check_resumable({"config": saved}, cfg, "run/checkpoint.pt")
    assert str(e.value) == (
        "cannot resume run/checkpoint.pt: it was made with model.depth=3, this run has "
        "model.depth=1; use the same config or another --out (log.out_dir)"
    )
    saved = cfg.to_dict()
    del saved["model"]["attention_window"]  # as a run from before the key would have it
    check_resumable({"config": saved}, cfg, "run/checkpoint.pt")


def test_resuming_on_another_number_of_images_says_what_may_have_changed(tmp_path, caplog):
    """The count differs where the folder or data.max_images changed, and also where the folder
    is the same but training now lists image types a checkpoint's older loftup skipped (.gif,
    .ppm, .pgm): the warning named only the first two ("restore the folder")."""
    from loftup.train.start import warn_if_other_data

    path = tmp_path / "checkpoint.pt"
    with caplog.at_level("WARNING", logger="loftup.train"):
        warn_if_other_data({"images": 4}, 4, path)
        warn_if_other_data({}, 6, path)  # a checkpoint from before the count was kept
        assert caplog.records == []
        warn_if_other_data({"images": 4}, 6, path)
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"{path} was trained on 4 images, the data now holds 6: ")
    assert "restore the folder, or data.max_images, to go on exactly" in message
    assert message.endswith(
        "the files listed may also differ: training reads .gif, .ppm and .pgm images, which "
        "older versions skipped)"
    )


def test_stage2_from_another_backbones_init_names_the_setting_that_fixes_it(tmp_path):
    """A stage-1 result of one backbone given to stage 2 of another: the wider one was told
    "init upsamples C=384 features but backbone ... gives C=768" (not which backbone init was
    for), one of the same width "was trained for backbone X, not Y" with no fix."""
    from loftup.featurizers import resolve
    from loftup.train.build import (
        build_optimizer,
        build_trainee,
        build_upsampler,
        checkpoint_payload,
    )
    from train_fixtures import tiny_config

    dim = resolve("dinov2_tiny").dim
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", 1, 1)
    upsampler, cfg, _ = build_upsampler(cfg, dim)
    trainee = build_trainee(cfg, upsampler, 14, {})
    payload = checkpoint_payload(cfg, trainee, build_optimizer(cfg, trainee.parameters()), None,
                                 1, [], 0)  # fmt: skip
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", payload)
    init = tmp_path / "run" / "checkpoint.pt"
    stage2 = tiny_config(tmp_path / "data", tmp_path / "s2", 2, 1, f"init={init}",
                         "backbone=dinov2_vitb14")  # fmt: skip
    fix = "; set backbone=dinov2_tiny, or init to a stage-1 result of dinov2_vitb14"
    with pytest.raises(LoftUpError) as e:
        build_upsampler(stage2, dim)  # the same width
    assert (
        str(e.value) == f"init {init} was trained for backbone dinov2_tiny, not dinov2_vitb14{fix}"
    )
    with pytest.raises(LoftUpError) as e:
        build_upsampler(stage2, 768)
    assert str(e.value) == (
        f"init {init} was trained for backbone dinov2_tiny, not dinov2_vitb14 (C={dim}, not "
        f"768){fix}"
    )


def test_under_torchrun_only_rank_0_says_what_building_the_models_found(tmp_path, caplog):
    """build_models runs in every process of a torchrun job: stage 2's "keeps the architecture
    of init" and a resumed run's "resuming with this run's optim.lr=..." were said once per
    process (8 times on 8 GPUs). Rank 0 says them; the others build the same models quietly.
    (A one-process gloo group stands in for the job: the rank only decides who speaks.)"""
    import logging

    import torch.distributed as dist

    from loftup.featurizers import resolve
    from loftup.train.build import (
        build_optimizer,
        build_trainee,
        build_upsampler,
        checkpoint_payload,
    )
    from loftup.train.distributed import DistInfo
    from loftup.train.start import build_models
    from train_fixtures import tiny_config

    cfg = tiny_config(tmp_path / "data", tmp_path / "run", 1, 1)
    upsampler, cfg, _ = build_upsampler(cfg, resolve("dinov2_tiny").dim)
    trainee = build_trainee(cfg, upsampler, 14, {})
    path = save_checkpoint(
        tmp_path / "run" / "checkpoint.pt",
        checkpoint_payload(
            cfg, trainee, build_optimizer(cfg, trainee.parameters()), None, 1, [], 0
        ),
    )
    stage2 = tiny_config(tmp_path / "data", tmp_path / "s2", 2, 1, f"init={path}")
    resumed = tiny_config(tmp_path / "data", tmp_path / "run", 1, 2, "optim.lr=1e-3")
    said = {}
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        for rank in (1, 0):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="loftup.train"):
                build_models(stage2, DistInfo(rank, 2), None, None)
                build_models(resumed, DistInfo(rank, 2), load_checkpoint(path), None)
            said[rank] = [r.getMessage() for r in caplog.records]
    finally:
        dist.destroy_process_group()
    assert said[1] == []
    assert [line.split(":")[0] for line in said[0]] == [
        f"stage 2 keeps the architecture of {path}",
        "resuming with this run's optim.lr=0.001 (the checkpoint had 0.003)",
    ]
