"""The training config: the released recipe's values, packaged YAMLs, overrides and their errors."""

import dataclasses

import pytest
import yaml

from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.train.config import default_config, load_config, packaged_configs


def test_packaged_recipe_is_the_papers():
    s1 = load_config("stage1_sa1b")
    assert (s1.stage, s1.backbone, s1.batch_size, s1.epochs, s1.max_steps) == (
        1,
        "dinov2_vits14",
        8,
        1,
        None,
    )
    assert (s1.optim.name, s1.optim.lr, s1.optim.weight_decay) == ("nadam", 1e-4, 0.0)
    assert (s1.optim.clip_grad_norm, s1.optim.clip_steps) == (1e-4, 10)
    assert (s1.stage1.image_size, s1.stage1.n_jitters, s1.stage1.tv_weight) == (224, 4, 0.001)
    assert (s1.stage1.mask_alpha, s1.data.masks, s1.data.max_masks) == (0.8, "sa1b", 150)
    assert (s1.recon.proj_dim, s1.recon.max_shift, s1.recon.zoom) == (64, 8.0, [0.9, 1.1])
    assert (s1.recon.dropout, s1.recon.blur) == (0.2, 5)
    assert (s1.model.depth, s1.model.num_heads, s1.model.n_freqs) == (2, 4, 20)
    assert s1.model.coords and s1.model.attention_window is None
    s2 = load_config("stage2_sa1b")
    assert (s2.optim.name, s2.optim.lr, s2.optim.weight_decay) == ("adamw", 1e-3, 0.01)
    st = s2.stage2
    assert (st.load_size, st.n_jitters, st.crop_align, st.teacher_alpha) == (896, 2, 16, 0.5)
    assert (st.affinity_weight, st.central, st.tv_weight) == (20.0, 0.8, 0.05)
    assert (st.ema_beta, st.ema_every, st.teacher_view) == (0.99, 10, "crops")
    # the YAMLs only spell out the defaults (apart from where to write and how many workers)
    for stage, cfg, differ in ((1, s1, ["data", "log"]), (2, s2, ["init", "data", "log"])):
        a, b = dataclasses.asdict(default_config(stage)), dataclasses.asdict(cfg)
        assert [k for k in a if a[k] != b[k]] == differ
        assert {k for k in a["data"] if a["data"][k] != b["data"][k]} == {"num_workers"}


def test_every_packaged_config_loads_by_name_and_by_path():
    names = packaged_configs()
    assert {"stage1_sa1b", "stage2_sa1b", "stage1_cpu", "stage2_cpu"} <= set(names)
    for name in names:
        assert load_config(name).stage in (1, 2)
    import loftup

    path = loftup.__file__.replace("__init__.py", "configs/stage1_cpu.yaml")
    assert load_config(path) == load_config("stage1_cpu")


def test_overrides_are_typed_and_checked():
    cfg = load_config(
        "stage1_sa1b", ["optim.lr=3e-4", "model.attention_window=5", "data.superpixels=[4, 8]"]
    )
    assert cfg.optim.lr == 3e-4 and cfg.model.attention_window == 5
    assert cfg.data.superpixels == [4, 8]
    assert load_config({}, ["model.coords=false"]).model.coords is False
    for bad, message in [
        (["optim.lrr=1"], "unknown config key optim.lrr; known keys here: name, lr"),
        (["batch_size=eight"], "batch_size must be int"),
        (["model.coords=1"], "model.coords must be true or false"),
        (["stage2.teacher_view=side"], "teacher_view must be crops, full or both"),
        (["mask_noise.erode=2"], "mask_noise.erode must be a level in"),
        (["lr"], "is not key=value"),
    ]:
        with pytest.raises(LoftUpError, match=message):
            load_config({}, bad)
    with pytest.raises(LoftUpError, match="packaged configs: stage1_cpu"):
        load_config("stage3_nowhere")


def test_cli_prints_the_resolved_config_and_rejects_a_stage_mismatch(capsys):
    assert main(["train", "--stage", "2", "--config", "stage2_cpu", "--data", "/imgs",
                 "stage2.teacher_view=both", "--print-config"]) == 0  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["root"] == "/imgs" and printed["stage2"]["teacher_view"] == "both"
    assert printed["optim"]["name"] == "adamw"
    assert main(["train", "--stage", "2", "--config", "stage1_cpu"]) == 2
    assert "--stage 2 disagrees with the config's stage: 1" in capsys.readouterr().err
