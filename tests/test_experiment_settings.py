"""`loftup experiment` settings: the demo's unless set, bad ones refused, the variants' switches
and the ``key=value`` overrides as the training configs receive them."""

from __future__ import annotations

import pytest

from loftup.errors import LoftUpError
from loftup.experiments import EXPERIMENTS, ExperimentSettings
from loftup.experiments.runs import Variant, stage_configs


def test_settings_follow_the_demo_unless_set():
    from loftup.world.demo import DemoConfig

    demo = DemoConfig()
    s = ExperimentSettings("coords").resolved()
    assert (s.size, s.train_scenes, s.stage1_lr, s.probe_epochs) == (
        demo.size, demo.train_scenes, demo.stage1_lr, demo.probe_epochs
    )  # fmt: skip
    assert s.seeds == 3 and s.out == "experiments/coords" and s.eval_count == demo.val_scenes
    q = ExperimentSettings("stages", quick=True, size=48).resolved()
    assert q.size == 48 and q.seeds == 2 and q.stage1_steps == 2 and q.stage2_steps == 1
    assert ExperimentSettings("coords", quick=True).resolved().stage2_steps == 0
    assert ExperimentSettings("grid").resolved().eval_count == min(16, demo.val_scenes)
    noise = ExperimentSettings("mask-noise", noise_kinds=["drop"]).resolved()
    assert noise.noise_kinds == ["drop"] and noise.noise_levels == [0.25, 0.5, 1.0]
    assert set(EXPERIMENTS) == {"coords", "attention", "stages", "mask-noise", "distill-view",
                                "grid"}  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "colour"}, "unknown experiment 'colour'"),
        ({"name": "coords", "seeds": 0}, "--seeds must be an integer >= 1"),
        # a count of 2.0 (Python) failed late, in range() or a slice, after the scenes were written
        ({"name": "coords", "seeds": 2.0}, r"--seeds must be an integer >= 1, got 2\.0"),
        ({"name": "coords", "seeds": True}, "--seeds must be an integer >= 1, got True"),
        ({"name": "coords", "eval_count": 4.0}, r"--eval-count must be an integer >= 2, got 4\.0"),
        ({"name": "coords", "stage1_steps": 2.5}, "--stage1-steps must be an integer >= 1"),
        ({"name": "coords", "eval_dataset": "voc"}, "--eval-dataset needs --eval-root"),
        ({"name": "coords", "masks": "slic"}, "masks must be sa1b, superpixels or sam"),
        ({"name": "mask-noise", "noise_kinds": ["blur"]}, "unknown mask-noise kind 'blur'"),
        (
            {"name": "mask-noise", "noise_levels": [0.0]},
            r"--levels \(noise levels\) must be in \(0, 1\]",
        ),
        # another experiment's option is named as such, before its values are judged
        ({"name": "coords", "noise_levels": [2.0]}, "--levels applies to the mask-noise"),
        ({"name": "stages", "stage2_steps": 0}, "--stage2-steps must be an integer >= 1, got 0"),
        # a repeated kind or level was one variant scored once per repeat at every seed: its
        # row's spread, and so its verdict, came from copies of the same runs
        (
            {"name": "mask-noise", "noise_kinds": ["drop", "erode", "drop"]},
            "--kinds names drop twice; give each kind once",
        ),
        (
            {"name": "mask-noise", "noise_levels": [0.5, 1, 0.50]},
            "--levels gives 0.5 twice; give each level once",
        ),
        ({"name": "coords", "stage2_steps": 50}, "coords trains stage 1 only; --stage2-steps"),
        # no cell of the grid is 4 px or less: it trained, then failed with a StopIteration
        ({"name": "grid", "max_side": 4}, r"--max-side 4 leaves no cell.*--max-side 8 or more"),
        # options another experiment reads were ignored without a word
        ({"name": "coords", "max_side": 256}, "--max-side applies to the grid experiment only"),
        ({"name": "stages", "noise_kinds": ["drop"]}, "--kinds applies to the mask-noise exp"),
        ({"name": "grid", "noise_levels": [0.5]}, "--levels applies to the mask-noise experiment"),
        # an empty list trained the clean masks alone, then its loss curves divided by zero
        ({"name": "mask-noise", "noise_kinds": []}, "--kinds needs at least one value"),
        ({"name": "mask-noise", "noise_levels": []}, "--levels needs at least one value"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(LoftUpError, match=message):
        ExperimentSettings(**kwargs)


def test_size_must_fit_the_patch():
    with pytest.raises(LoftUpError, match="multiple of 8"):
        ExperimentSettings("coords", size=60).resolved()


def test_paths_are_expanded_and_a_quick_run_has_a_folder_of_its_own(tmp_path, monkeypatch):
    """--out=~/x (no shell expands that ~) put the scenes and runs in ~/x (DemoConfig expands
    it) and the report in ./~/x. A --quick run in the full run's default folder was refused
    there ("another world"), with the advice to delete that folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    s = ExperimentSettings("coords", out="~/x", data="~/d", backbone_weights="~/w").resolved()
    assert (s.out, s.data, s.backbone_weights) == tuple(str(tmp_path / n) for n in "xdw")
    assert s.demo(0).out == s.out
    assert ExperimentSettings("coords", quick=True).resolved().out == "experiments/coords-quick"
    assert ExperimentSettings("coords").resolved().out == "experiments/coords"


def test_variant_switches_reach_the_training_configs(tmp_path):
    s = ExperimentSettings(
        "coords", overrides=["stage1.n_jitters=2"], backbone_weights="/w"
    ).resolved()
    v = Variant("no coords", {"model": {"coords": False}}, stage2={"stage2": {"teacher_view": "full"}},
                stage1_run="shared")  # fmt: skip
    one, two = stage_configs(s, v, 2, tmp_path / "train", tmp_path / "runs")
    assert one["model"]["coords"] is False and one["seed"] == 2
    assert one["stage1"]["n_jitters"] == 2 and one["stage1"]["image_size"] == s.size
    assert one["backbone_weights"] == "/w" and one["max_steps"] == s.stage1_steps
    assert one["log"]["out_dir"] == str(tmp_path / "runs" / "seed2" / "shared" / "stage1")
    assert two["init"] == str(tmp_path / "runs" / "seed2" / "shared" / "stage1" / "checkpoint.pt")
    assert two["stage2"]["teacher_view"] == "full" and two["stage"] == 2
    assert two["log"]["out_dir"] == str(tmp_path / "runs" / "seed2" / "no-coords" / "stage2")
    assert stage_configs(s, Variant("a"), 0, tmp_path, tmp_path)[1] is None


def test_overrides_paths_are_expanded_as_loftup_trains_are(tmp_path, monkeypatch):
    """`loftup experiment coords data.cache_dir=$CACHE/m` (quoted, or a ~ after '=', which no
    shell expands) cached the masks in a folder named '$CACHE' under the current one, where
    `loftup train` with the same override expands it; an unset variable is the same one line."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("NOT_SET", raising=False)
    given = ["data.cache_dir=$CACHE/m", "data.sam_weights=~/sam", "stage1.n_jitters=2"]
    s = ExperimentSettings("coords", overrides=given).resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert one["data"]["cache_dir"] == str(tmp_path / "c" / "m")
    assert one["data"]["sam_weights"] == str(tmp_path / "sam")
    assert one["stage1"]["n_jitters"] == 2
    s = ExperimentSettings("coords", overrides=["data.cache_dir=$NOT_SET/m"]).resolved()
    with pytest.raises(LoftUpError) as e:
        stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert str(e.value) == (
        "config key data.cache_dir ('$NOT_SET/m', given as an override): the environment "
        "variable NOT_SET is not set; export NOT_SET=... before the run, or write the path out "
        "($$ for a literal $)"
    )


def test_overrides_are_read_by_loftup_trains_own_reader(tmp_path):
    """The experiment read its overrides with its own copy of `loftup train`'s steps, which
    missed the check of a Python string (overrides="seed=1" was read a character each: "override
    's' is not key=value"): the one reader says what to give instead."""
    s = ExperimentSettings("coords", overrides="stage1.n_jitters=2").resolved()
    with pytest.raises(LoftUpError) as e:
        stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    assert str(e.value).startswith("overrides are a list of key=value strings, e.g. ")


@pytest.mark.parametrize(
    "override, instead",
    [
        ("seed=1", "give --seeds N (runs of seeds 0 to N-1)"),
        ("log.out_dir=x", "give --out"),
        ("data.root=d", "give --data"),
        ("max_steps=5", "give --stage1-steps or --stage2-steps"),
        ("epochs=3", "its max_steps outranks epochs: give --stage1-steps or --stage2-steps"),
        ("stage=2", "it trains the stages each variant needs"),
        ("init=runs/s1/checkpoint.pt", "stage 2 starts from the variant's own stage-1 run"),
        ("backbone=dinov2_vits14", "give --backbone"),
        ("backbone_weights=/w", "give --backbone-weights"),
        ("data.masks=superpixels", "give --masks"),
    ],
)
def test_an_override_of_what_each_run_sets_is_refused_before_any_work(override, instead, tmp_path):
    """`loftup experiment coords seed=1` trained every "seed" with seed 1: the spread over the
    seeds was nil, so that any difference was reported as a finding; log.out_dir=x put every
    run in one folder. Such an override is one line naming the option to use, said before
    anything is written."""
    from loftup.experiments import run_experiment

    s = ExperimentSettings("coords", out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    key = override.split("=")[0]
    assert str(e.value).startswith(f"override {key}=... cannot be given to an experiment: it ")
    assert f"it sets {key} for each run itself; {instead}" in str(e.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "name, override, key",
    [
        ("coords", "model.coords=false", "model.coords"),
        ("coords", "model={coords: true}", "model.coords"),
        ("attention", "model.attention_window=3", "model.attention_window"),
        ("distill-view", "stage2.teacher_view=full", "stage2.teacher_view"),
        ("mask-noise", "mask_noise.erode=0.5", "mask_noise.erode"),
    ],
)
def test_an_override_of_what_the_variants_compare_is_refused_before_any_work(
    name, override, key, tmp_path
):
    """`loftup experiment coords model.coords=false` trained both variants without coordinates
    (the overrides come after the variants' switches) and reported their noise as the effect
    of the encoding: one line naming the key and a variant that sets it, before any work."""
    from loftup.experiments import run_experiment

    s = ExperimentSettings(name, out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    assert str(e.value).startswith(f"override {key}=... cannot be given to experiment {name}: ")
    assert "it is what its variants compare (variant " in str(e.value)
    assert str(e.value).endswith(f" sets {key}); leave it out")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "name, override",
    [("coords", "log=out_dir"), ("coords", "data=root"), ("stages", "log=null")],
)
def test_a_section_set_to_a_word_is_not_read_as_an_override_of_a_key_of_it(
    name, override, tmp_path
):
    """log=out_dir was refused as an override of log.out_dir (the word was searched for in the
    text as in a section): the error is the config's own, naming the section as given. (An
    experiment with stage 2 read its stage-1 folder from the merged config: log=null was a
    TypeError traceback.)"""
    from loftup.experiments import run_experiment

    s = ExperimentSettings(name, out=str(tmp_path / "x"), overrides=[override], quick=True)
    with pytest.raises(LoftUpError) as e:
        run_experiment(s)
    assert not str(e.value).startswith("override "), str(e.value)
    assert override.split("=")[0] in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()
