"""The training config: the released recipe's values, packaged YAMLs, overrides and their errors."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import yaml

from loftup.cli import main
from loftup.errors import LoftUpError, UsageError
from loftup.train.config import ModelConfig, default_config, load_config, packaged_configs


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


def test_gradients_are_clipped_to_1e_4_for_the_first_10_steps_of_stage_1_only():
    import math

    from loftup.train.loop import clip_limit

    s1, s2 = load_config("stage1_sa1b"), load_config("stage2_sa1b")
    assert [clip_limit(s1, step) for step in range(11)] == [1e-4] * 10 + [math.inf]
    assert clip_limit(s2, 0) == math.inf  # the recipe names no clipping in stage 2


def test_a_stage_2_config_built_in_python_trains_with_stage_2s_optimiser():
    # TrainConfig(stage=2) took stage 1's NAdam at lr 1e-4, no weight decay, clipped to 1e-4
    # for 10 steps: a stage 2 unlike the paper's (AdamW, lr 1e-3, weight decay 0.01), unsaid
    from loftup.train.config import OptimConfig, TrainConfig

    for stage in (1, 2):
        assert TrainConfig(stage=stage, init="x" if stage == 2 else None).optim == (
            default_config(stage).optim
        )
        assert type(TrainConfig(stage=stage, init="x" if stage == 2 else None).optim) is (
            OptimConfig
        )
    s2 = TrainConfig(stage=2, init="x").optim
    assert (s2.name, s2.lr, s2.weight_decay, s2.clip_steps) == ("adamw", 1e-3, 0.01, 0)
    # an optimiser given is kept, whatever the stage
    given = OptimConfig("nadam", 3e-4)
    assert TrainConfig(stage=2, init="x", optim=given).optim == given


def test_every_packaged_config_loads_by_name_and_by_path():
    names = packaged_configs()
    assert {"stage1_sa1b", "stage2_sa1b", "stage1_cpu", "stage2_cpu"} <= set(names)
    for name in names:
        assert load_config(name).stage in (1, 2)
    import loftup

    path = loftup.__file__.replace("__init__.py", "configs/stage1_cpu.yaml")
    assert load_config(path) == load_config("stage1_cpu")


def test_a_config_path_object_loads_and_other_sources_are_named(tmp_path):
    """load_config(Path(...)) (and so train(Path(...))) was a TypeError ("'PosixPath' object
    is not iterable"): it was taken for a dict. Something else is named with what may be
    given, and one override given as a string (not a list) is named, not read letter by
    letter ("override 'o' is not key=value")."""
    (tmp_path / "mine.yaml").write_text("stage: 1\nbatch_size: 2\n")
    assert load_config(tmp_path / "mine.yaml").batch_size == 2
    with pytest.raises(UsageError, match=r"a YAML file, a packaged config's name or a dict, "):
        load_config(["stage1_cpu"])
    with pytest.raises(UsageError, match=r"a list of key=value strings, e.g. \['batch_size=2'\]"):
        load_config("stage1_cpu", "batch_size=2")


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


def test_print_config_refuses_what_the_run_would_refuse_in_the_config(capsys):
    """--print-config printed stage1.image_size=4 (no patch fits) and model.num_heads=5 (does
    not divide the token width) without a word, configs that `loftup train` then refused."""
    for bad, words in (
        ("stage1.image_size=4", "stage1.image_size"),
        ("model.num_heads=5", "model.num_heads=5 does not divide"),
    ):
        argv = ["train", "--config", "stage1_cpu", "--data", "/imgs", bad, "--print-config"]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and words in err, err


# -- every value checked before any work --------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "override, words",
    [
        ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
        ("batch_size=-1", "batch_size must be an integer >= 1, got -1"),
        ("optim.lr=nan", "optim.lr must be a finite number > 0, got nan"),
        ("optim.lr=-1", "optim.lr must be a finite number > 0, got -1.0"),
        ("optim.lr=.inf", "optim.lr must be a finite number > 0, got inf"),
        ("stage1.image_size=0", "stage1.image_size must be an integer >= 1, got 0"),
        ("model.num_heads=0", "model.num_heads must be an integer >= 1, got 0"),
        ("log.ckpt_every=0", "log.ckpt_every must be an integer >= 1, got 0"),
        ("log.ckpt_every=-1", "log.ckpt_every must be an integer >= 1, got -1"),
        ("log.ckpt_minutes=-1", "log.ckpt_minutes must be a finite number >= 0 (minutes between"),
        ("log.ckpt_minutes=.inf", "0: only every log.ckpt_every steps), got inf"),
        ("log.ckpt_minutes=soon", "log.ckpt_minutes must be float, got 'soon'"),
        ("log=null", "config key log is a section and must be a mapping of its keys"),
        ("data.num_workers=-1", "data.num_workers must be an integer >= 0, got -1"),
        ("data.max_image_pixels=-1", "data.max_image_pixels must be an integer >= 0, got -1"),
        ("model.attention_window=0", "model.attention_window must be an integer >= 1, got 0"),
        ("recon.proj_dim=0", "recon.proj_dim must be an integer >= 1, got 0"),
        ("max_steps=-1", "max_steps must be an integer >= 0, got -1"),
        ("model.depth=0", "model.depth must be an integer >= 1, got 0"),
        ("stage1.tv_weight=nan", "stage1.tv_weight must be a finite number >= 0, got nan"),
        ("epochs=0", "epochs must be an integer >= 1, got 0"),
        ("log.out_dir=", "log.out_dir is empty; set it to the run's folder: --out DIR"),
        ("recon.dropout=1", "recon.dropout must be a finite number in [0, 1), got 1.0"),
        # an even box blur is centred half a pixel off: the downsampled grid would shift
        ("recon.blur=4", "recon.blur must be an integer 0 or 1 (none) or odd (a blur centred"),
        ("recon.blur=-1", "recon.blur must be an integer 0 or 1 (none) or odd"),
        ("stage1.mask_alpha=1.5", "stage1.mask_alpha must be a finite number in [0, 1]"),
        ("stage2.central=0", "stage2.central must be a finite number in (0, 1]"),
        ("recon.zoom=[1.2, 0.9]", "recon.zoom must be [low, high] with 0 < low <= high"),
        ("data.superpixels=[8, 0]", "data.superpixels (each item) must be an integer >= 1"),
        ("seed=-1", "seed must be an integer in [0, 4294967296)"),
        ("data.masks=sam2", "data.masks must be sa1b, sam or superpixels, got 'sam2'"),
        ("stage=3", "config key stage must be 1 or 2, got 3"),
        ("stage=one", "config key stage must be 1 or 2, got 'one'"),
        ("init=/nonexist.pt", "stage 1, which starts from random weights"),
    ],
)
def test_a_value_out_of_range_is_named_with_its_range(override, words):
    with pytest.raises(UsageError) as e:
        load_config("stage1_cpu", [override])
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_an_epochs_override_that_max_steps_outranks_is_refused():
    """`loftup train --config stage1_cpu epochs=3` trained stage1_cpu's 200 steps: max_steps,
    where set, is the run's length, and the override was taken and did nothing."""
    with pytest.raises(UsageError) as e:
        load_config("stage1_cpu", ["epochs=3"])
    assert str(e.value) == (
        "override epochs=3 has no effect: max_steps=200 (the config's) sets the run's length (it "
        "outranks epochs); give max_steps=null with it, or max_steps=N alone"
    )
    with pytest.raises(UsageError, match=r"^override epochs=2 has no effect: max_steps=5 sets"):
        load_config("stage1_sa1b", ["epochs=2", "max_steps=5"])
    assert load_config("stage1_cpu", ["epochs=3", "max_steps=null"]).epochs == 3
    assert load_config("stage1_sa1b", ["epochs=3"]).epochs == 3  # max_steps: null there
    assert load_config("stage1_cpu").epochs == 1  # a file's own epochs beside max_steps: as is


def test_a_mask_noise_override_that_stage_2_ignores_is_refused():
    """mask_noise noises stage 1's masks only: `--stage 2 mask_noise.drop=0.5` trained on the
    clean masks without a word. A file's mask_noise, and stage 1, are as they were."""
    said = (
        "has no effect in stage 2: mask noise is put on stage 1's masks only (stage 2 adjusts "
        "its teacher with the masks as they are); leave it out, or train --stage 1 with it"
    )
    with pytest.raises(UsageError) as e:
        load_config("stage2_cpu", ["mask_noise.max_radius=0.1", "mask_noise.drop=0.5"])
    assert str(e.value) == f"override mask_noise.drop=0.5 {said}"  # the level named
    assert load_config("stage1_cpu", ["mask_noise.drop=0.5"]).mask_noise.drop == 0.5
    assert load_config("stage2_cpu", ["mask_noise.drop=0"]).mask_noise.drop == 0  # none: as is
    assert load_config({"mask_noise": {"drop": 0.5}}, stage=2).mask_noise.drop == 0.5


def test_range_errors_are_one_line_from_the_cli_before_any_work(tmp_path, capsys):
    for override, words in [
        ("optim.lr=nan", "optim.lr must be a finite number > 0, got nan (the paper's recipe: "),
        ("batch_size=0", "batch_size must be an integer >= 1, got 0 (the paper's recipe: 8)"),
    ]:
        assert main(["train", "--config", "stage1_cpu", "--data", str(tmp_path), override]) == 2
        assert words in _one_error_line(capsys)
    # with --out a log=null cannot be followed by the folder: named, not a TypeError
    args = ["train", "--config", "stage1_cpu", "--out", str(tmp_path / "o"), "log=null"]
    assert main(args) == 2
    assert "earlier override set log to null, but it is a section" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "override, words",
    [
        (
            "stage1.image_size=13",
            "stage1.image_size must be at least the patch size of dinov2_tiny",
        ),
        ("model.num_heads=3", "model.num_heads=3 does not divide the token width 52"),
        # a blur wider than the map it blurs: torch's padding error, a traceback, at step 0
        (
            "recon.blur=225",
            "recon.blur=225 must be narrower than twice the smallest map it "
            "blurs (stage1.image_size 112)",
        ),
    ],
)
def test_sizes_that_depend_on_the_backbone_are_checked_from_its_registry(
    tmp_path, capsys, override, words
):
    out = tmp_path / "run"
    args = ["train", "--config", "stage1_cpu", "--data", str(tmp_path), "--out", str(out)]
    assert main([*args, override]) == 2
    assert words in _one_error_line(capsys)
    assert not out.exists()


def test_types_are_checked_before_the_backbone_is_looked_for(tmp_path, capsys, monkeypatch):
    """The default backbone (dinov2_vits14) is not here offline: a wrong type is still what is
    said, from a YAML file and from a TrainConfig changed in Python."""
    from loftup.train import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "two.yaml"
    config.write_text('batch_size: "two"\n')
    assert main(["train", "--config", str(config), "--data", str(tmp_path)]) == 2
    assert "config key batch_size must be int, got 'two'" in _one_error_line(capsys)
    cfg = load_config({}, [f"data.root={tmp_path}", f"log.out_dir={tmp_path / 'o'}"])
    cfg.batch_size = "two"
    with pytest.raises(UsageError, match="config key batch_size must be int, got 'two'"):
        train(cfg)
    cfg.batch_size, cfg.optim.lr = 8, float("nan")
    with pytest.raises(UsageError, match="optim.lr must be a finite number > 0, got nan"):
        train(cfg)
    with pytest.raises(UsageError, match="config key stage must be 1 or 2"):
        dataclasses.replace(cfg, stage=0)


def test_malformed_or_unsafe_yaml_is_one_line_naming_file_and_line(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: 1\nbatch_size: [4, 8\nseed: 0\n")
    assert main(["train", "--config", str(broken)]) == 2
    line = _one_error_line(capsys)
    assert str(broken) in line and "line 3" in line
    marker = tmp_path / "pwned"
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text(f"stage: 1\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["train", "--config", str(unsafe)]) == 2
    line = _one_error_line(capsys)
    assert str(unsafe) in line and "line 2" in line and "is not allowed" in line
    assert "python/object/apply:os.system" in line
    assert not marker.exists()
    # the same in an override's value, and a file that is not YAML text at all
    assert main(["train", "--config", "stage1_cpu", "seed=[1, 2"]) == 2
    assert "override seed=[1, 2:" in _one_error_line(capsys)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["train", "--config", str(binary)]) == 2
    assert "is not a text (YAML) file" in _one_error_line(capsys)


def test_stage_one_refuses_init(tmp_path, capsys):
    """Stage 1 starts from random weights (method.md §2); init is what stage 2 starts from."""
    args = ["train", "--stage", "1", "--config", "stage1_cpu", "--data", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "o"), "init=/nonexist.pt"]) == 2
    line = _one_error_line(capsys)
    assert "init=/nonexist.pt" in line and "stage 1, which starts from random weights" in line
    assert "init is the stage-1 checkpoint stage 2 starts from" in line
    assert not (tmp_path / "o").exists()


def test_paths_of_the_wrong_kind_are_named_for_what_they_are(tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    base = ["train", "--config", "stage1_cpu"]
    assert main([*base, "--data", str(tmp_path), "--out", str(image)]) == 2
    line = _one_error_line(capsys)
    assert f"{image} is a file" in line and "output (--out, log.out_dir) is a folder" in line
    assert main([*base, "--data", str(tmp_path), "--out", str(image / "sub")]) == 2
    assert f"{image / 'sub'} lies under {image}, which is a file" in _one_error_line(capsys)
    assert main([*base, "--data", str(image), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert f"data folder {image} is a file" in line and f"e.g. {tmp_path}" in line
    assert main([*base, "--out", str(tmp_path / "o"), "data.root="]) == 2
    assert "no data folder given: pass --data DIR" in _one_error_line(capsys)
    args = [*base, "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, f"backbone_weights={tmp_path / 'nothere'}"]) == 2
    assert f"{tmp_path / 'nothere'} does not exist" in _one_error_line(capsys)
    assert main([*args, f"backbone_weights={image}"]) == 2
    assert f"{image} is a file" in _one_error_line(capsys)


def test_an_output_folder_that_cannot_be_written_is_named_before_anything_loads(tmp_path, capsys):
    """A --out where no file can be made (a read-only disk, no permission) was found when the
    run first wrote there: after the data was listed and the models built (with masks=sam,
    after hours of SAM's masks). Now it is the first thing said, in one line."""
    if os.geteuid() == 0:  # root writes in any folder that chmod makes read-only
        out = Path("/proc") / "loftup-run"  # /proc takes no file, from anyone
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "run"
    args = ["train", "--config", "stage1_cpu", "--data", str(tmp_path), "--out", str(out)]
    assert main(args) == 2  # no images in --data: that would be said later
    line = _one_error_line(capsys)
    assert line.startswith(f"error: --out (log.out_dir) {out} cannot be written: ")
    assert line.endswith("; choose another folder")


def test_unreadable_files_are_counted_as_they_are(tmp_path):
    """3 unreadable images: 'none of the 3 files', not the retry limit (33); from a DataLoader
    worker the message comes without the worker's traceback."""
    pytest.importorskip("skimage")
    import torch

    from loftup.data.dataset import MaskedImages
    from loftup.errors import from_workers

    for i in range(3):
        (tmp_path / "bad" / f"x{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / f"x{i}.png").write_bytes(b"not an image")
    data = MaskedImages(
        tmp_path / "bad", size=28, masks="superpixels", cache_dir=tmp_path / "cache"
    )
    with pytest.raises(LoftUpError, match=r"^none of the 3 files under .*bad could be read"):
        data[1]
    many = MaskedImages(
        tmp_path / "bad", size=28, masks="superpixels", cache_dir=tmp_path / "c", max_retries=1
    )
    with pytest.raises(LoftUpError, match=r"^2 files in a row could not be read near item 0"):
        many[0]
    loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=1)
    with pytest.raises(LoftUpError) as e:
        next(iter(from_workers(loader)))
    assert str(e.value).startswith("none of the 3 files under") and "\n" not in str(e.value)


class _KillsItsWorker(torch.utils.data.Dataset):
    """Item 1 ends its worker process by ``sig``, as the kernel's OOM killer or a crash in a
    native reader (pycocotools, Pillow's decoders) does: no Python error is left to report."""

    def __init__(self, sig) -> None:
        self.sig = sig

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        if i == 1:
            os.kill(os.getpid(), self.sig)
        return torch.zeros(1)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSEGV"])
def test_a_worker_killed_by_the_system_is_one_line_with_the_fix(sig):
    """A DataLoader worker that dies without an error (out of host memory, a segfault) was
    PyTorch's RuntimeError 'DataLoader worker (pid(s) N) exited unexpectedly', which the command
    line shows as a traceback, with nothing to do about it."""
    import signal

    from loftup.errors import from_workers, worker_ignores_sigterm

    loader = torch.utils.data.DataLoader(
        _KillsItsWorker(getattr(signal, sig)), batch_size=1, num_workers=1,
        worker_init_fn=worker_ignores_sigterm,
    )  # fmt: skip
    with pytest.raises(LoftUpError) as e:
        list(from_workers(loader, "data.num_workers"))
    message = str(e.value)
    assert message.startswith("a data-loading worker process died without an error") and (
        "\n" not in message
    )
    assert "lower data.num_workers, or set it to 0" in message


def test_one_pattern_tells_a_data_worker_that_died():
    """PyTorch's words for a DataLoader worker that died are read by one pattern, which
    from_workers (any loader) and training's feed (naming each pid's file) share: two copies
    had begun to differ (one captured the pids, the other did not)."""
    import loftup
    from loftup.errors import WORKER_DIED

    for text, pids in (("DataLoader worker (pid(s) 12, 345) exited unexpectedly", "12, 345"),
                       ("DataLoader worker (pid 77) is killed by signal: Killed. ", "77")):  # fmt: skip
        assert WORKER_DIED.match(text).group(1) == pids
    sources = sorted(Path(loftup.__file__).parent.rglob("*.py"))
    said = [p.name for p in sources if r"DataLoader worker \(" in p.read_text()]
    assert said == ["errors.py"]


def test_a_run_whose_workers_find_nothing_readable_ends_instead_of_hanging(tmp_path):
    """The error a DataLoader worker raises ends the command with status 2 and one line: the
    workers are shut down with the run (they ignore SIGTERM; left alive, the interpreter's exit
    waited on them for ever)."""
    from processes import run_cli

    for i in range(4):
        (tmp_path / "bad" / f"b{i}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / f"b{i}.jpg").write_bytes(b"junk")
    args = ["train", "--stage", "1", "--config", "stage1_cpu", "--data", str(tmp_path / "bad"),
            "--out", str(tmp_path / "run"), "max_steps=2", "backbone=dinov2_tiny",
            "data.num_workers=2", "log.progress=false", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    done = run_cli(args, {"OMP_NUM_THREADS": "1"}, timeout=240)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].startswith("error: none of the 4 files under")


def test_stage_two_needs_an_init_that_exists_before_any_work(tmp_path, capsys):
    args = ["train", "--stage", "2", "--config", "stage2_cpu", "--data", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "o"), "init=null"]) == 2
    assert "stage 2 starts from a stage-1 result: set init=" in _one_error_line(capsys)
    assert main([*args, "--out", str(tmp_path / "o"), f"init={tmp_path / 'none.pt'}"]) == 2
    assert f"init {tmp_path / 'none.pt'} does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_more_workers_than_cpus_get_one_per_cpu(caplog):
    """The SA-1B recipes ask for 8 DataLoader workers (a GPU node); a machine with fewer CPUs
    gets one per CPU, said once (the data does not depend on it: draws are made per step)."""
    import logging
    import os

    from loftup.train.loader import worker_count as _workers

    cpus = len(os.sched_getaffinity(0))
    with caplog.at_level(logging.INFO, logger="loftup.train"):
        assert _workers(0, True) == 0 and _workers(min(cpus, 1), True) == min(cpus, 1)
        assert not caplog.records
        assert _workers(cpus + 8, False) == cpus and not caplog.records  # other ranks: quiet
        assert _workers(cpus + 8, True) == cpus
    (record,) = caplog.records
    assert f"data.num_workers={cpus + 8}, but this process has {cpus} CPUs" in record.getMessage()


def test_batch_size_errors_come_before_the_backbone_is_looked_for(tmp_path, capsys, monkeypatch):
    """The default backbone (dinov2_vits14) is not here offline: a global batch that torchrun's
    processes cannot share, or that the images cannot fill, is what is said (it was said only
    once the backbone had loaded; under torchrun, after the process group had been joined)."""
    from train_fixtures import write_sa1b

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_sa1b(tmp_path / "sa1b", 3, size=32)
    out = tmp_path / "o"
    args = ["train", "--stage", "1", "--data", str(data), "--out", str(out), "data.num_workers=0"]
    assert main([*args, "batch_size=4"]) == 2
    line = _one_error_line(capsys)
    assert "the dataset has 3 images, fewer than one batch of 4; lower batch_size to 3" in line
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([*args, "batch_size=3"]) == 2
    err = capsys.readouterr().err.strip()  # each rank says which it is
    assert err.startswith("[rank 0] error: batch_size 3 is not divisible by 2 processes; set ")
    assert "\n" not in err and not out.exists()


@pytest.fixture
def small_init(tmp_path):
    """A stage-1 result of another architecture than the default (depth 1, 2 heads)."""
    from loftup.hub import save_pretrained
    from loftup.model import LoftUp

    folder = tmp_path / "init"
    save_pretrained(LoftUp(dim=384, depth=1, num_heads=2, n_freqs=4), folder,
                    backbone="dinov2_vits14")  # fmt: skip
    return folder


def test_stage_two_refuses_a_model_key_that_contradicts_init(tmp_path, capsys, monkeypatch,
                                                             small_init):  # fmt: skip
    """Stage 2 keeps init's architecture: a model.* key set to another value was ignored with
    an INFO line; it is refused, naming the key, both values and the fix, before the backbone
    (not here offline) is looked for. The same value as init's is fine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "o"
    args = ["train", "--stage", "2", "--data", str(tmp_path), "--out", str(out),
            f"init={small_init}"]  # fmt: skip
    for extra in ([], ["--print-config"]):
        assert main([*args, "model.depth=3", *extra]) == 2
        line = _one_error_line(capsys)
        assert f"model.depth=3 contradicts init {small_init}, which has model.depth=1" in line
        assert "drop model.depth (only model.attention_window may change)" in line
    assert not out.exists()
    # --print-config shows the architecture stage 2 trains: init's (it showed the default)
    assert main([*args, "model.depth=1", "model.attention_window=3", "--print-config"]) == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    assert (model["depth"], model["num_heads"], model["n_freqs"]) == (1, 2, 4)
    assert model["attention_window"] == 3


def test_stage_two_starts_from_an_upsampler_of_ones_own_by_hub_id(tmp_path, capsys, monkeypatch,
                                                                  small_init):  # fmt: skip
    """init=ORG/NAME (an upsampler save_pretrained wrote and its owner pushed, which
    load_upsampler reads) was refused as a path that does not exist: it is read from the
    Hugging Face cache (here offline), and its architecture is what stage 2 checks against."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache

    files = {n: small_init / n for n in ("model.safetensors", "config.json")}
    make_hf_cache(tmp_path / "hub", "someone/my-up", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    out = tmp_path / "o"
    args = ["train", "--stage", "2", "--data", str(tmp_path), "--out", str(out)]
    assert main([*args, "init=someone/my-up", "model.depth=3"]) == 2
    line = _one_error_line(capsys)
    assert "model.depth=3 contradicts init someone/my-up, which has model.depth=1" in line
    # a hub id not in the cache offline is said as load_upsampler says it
    assert main([*args, "init=someone/other@v2", "model.depth=3"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(
        "error: upsampler someone/other@v2 (no file or folder someone/other@v2 in"
    )
    # a run folder not made yet (one slash: it reads as a hub id too) is said as both
    monkeypatch.chdir(tmp_path)
    assert main([*args, "init=runs/s1", "model.depth=3"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(
        f"error: upsampler runs/s1 (no file or folder runs/s1 in the current folder {tmp_path}, "
        "so taken for a hub repo id): file 'model.safetensors' of hub repo 'runs/s1' is not in "
        "the Hugging Face cache"
    )
    assert "or pass a local path instead" in line
    # what is neither is named with everything init takes
    assert main([*args, "init=not here/x.pt"]) == 2
    line = _one_error_line(capsys)
    assert "init not here/x.pt does not exist" in line and "the hub id ORG/NAME[@REVISION]" in line
    assert not out.exists()


def test_print_config_shows_a_hub_init_architecture_from_the_cache(tmp_path, capsys,
                                                                   monkeypatch, small_init):  # fmt: skip
    """--print-config with init=ORG/NAME showed the default architecture, not the one stage 2
    trains: it is read from config.json in the Hugging Face cache (no download), and where
    that is not cached the printed config says that its model keys are not init's."""
    from huggingface_hub import constants

    from hub_builders import make_hf_cache

    make_hf_cache(tmp_path / "hub", "someone/my-up", {"config.json": small_init / "config.json"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    args = ["train", "--stage", "2", "--data", str(tmp_path), "--print-config"]
    assert main([*args, "init=someone/my-up", "model.attention_window=3"]) == 0
    printed = capsys.readouterr().out
    model = yaml.safe_load(printed)["model"]
    assert (model["depth"], model["num_heads"], model["n_freqs"]) == (1, 2, 4)
    assert model["attention_window"] == 3 and "#" not in printed
    assert main([*args, "init=someone/my-up", "model.depth=3"]) == 2  # as the run refuses it
    assert "model.depth=3 contradicts init someone/my-up, which has model.depth=1" in (
        _one_error_line(capsys)
    )
    assert main([*args, "init=someone/other@v2"]) == 0  # not cached: said, above model
    printed = capsys.readouterr().out
    note = printed.split("\nmodel:\n")[0].splitlines()[-1]
    assert note.startswith("# model: stage 2 trains the architecture of init someone/other@v2,")
    assert note.endswith("the keys below are this config's, not necessarily init's")
    assert yaml.safe_load(printed)["model"]["depth"] == ModelConfig().depth


def test_stage_two_honours_model_attention_window(tmp_path, small_init):
    """The attention window changes no parameter: stage 2 trains init's weights with the
    window given (and records it), and keeps init's where none is given."""
    from loftup.train.build import build_upsampler

    base = [f"data.root={tmp_path}", f"init={small_init}"]
    for extra, window in (([], None), (["model.attention_window=3"], 3)):
        cfg = load_config({}, base + extra, stage=2)
        model, used, _ = build_upsampler(cfg, 384)
        assert model.config.attention_window == used.model.attention_window == window
        assert (model.config.depth, used.model.depth, used.model.num_heads) == (1, 1, 2)


REGION = "raise the smallest of stage2.global_sizes or lower stage2.load_size"


@pytest.mark.parametrize(
    "overrides, fixes, fixed",
    [  # what the message names is what would change it (a fix that would not is left out)
        (["stage2.central=0.01"], f"{REGION}, or raise stage2.central", "stage2.central=0.03"),
        (["stage2.affinity_max_side=1"], "raise stage2.affinity_max_side",
         "stage2.affinity_max_side=8"),
        (["stage2.global_sizes=[28, 448]"], REGION,  # 28^2 / 896: a 1 px region
         "stage2.global_sizes=[224, 448]"),
    ],
)  # fmt: skip
def test_a_stage2_affinity_over_a_single_position_is_refused(overrides, fixes, fixed):
    """The affinity of one position with itself is 1 whatever the features, so stage 2's
    distillation term was 0 at every such step, without a word; refused before anything loads,
    naming the view and the keys that fix it (each fix named does). Weight 0 (no such loss
    asked for) is taken."""
    import torch

    from loftup.train.config import check_backbone_fit
    from loftup.train.losses import affinity_loss

    one = torch.randn(2, 8, 1, 1)
    assert affinity_loss(one, torch.randn(2, 8, 1, 1), central=0.8).item() < 1e-12  # why
    with pytest.raises(UsageError) as e:
        check_backbone_fit(load_config("stage2_sa1b", overrides, stage=2))
    message = str(e.value)
    assert message.startswith("stage 2's affinity loss would be 0 at every step on the ")
    assert message.endswith(
        f"holds a single position; {fixes} (stage2.affinity_weight=0 trains without it)"
    )
    assert "\n" not in message
    check_backbone_fit(load_config("stage2_sa1b", [*overrides, "stage2.affinity_weight=0"]))
    check_backbone_fit(load_config("stage2_sa1b", [*overrides, fixed]))  # the fix named works


def test_stage2_crops_with_less_room_than_their_alignment_are_refused():
    """A crop with some room in the loaded image but less than stage2.crop_align was drawn at
    offset 0 every time (the teacher saw the top-left part of every image); refused before
    anything loads, naming the room. A crop of the whole image (no room) is taken."""
    from loftup.train.config import check_backbone_fit

    bad = ["stage2.load_size=448", "stage2.global_sizes=[224, 440]"]  # 8 px of room, align 16
    with pytest.raises(UsageError) as e:
        check_backbone_fit(load_config("stage2_sa1b", bad, stage=2))
    assert str(e.value) == (
        "stage 2's 440 px crops have 8 px of room in the 448 px image (stage2.load_size), less "
        "than stage2.crop_align=16, so every one would sit at the top-left corner; set "
        "stage2.crop_align to at most 8, or make stage2.load_size and stage2.global_sizes "
        "further apart"
    )
    check_backbone_fit(load_config("stage2_sa1b", [*bad, "stage2.crop_align=8"]))
    check_backbone_fit(load_config("stage2_sa1b", ["stage2.load_size=448",
                                                   "stage2.global_sizes=[224, 448]"]))  # fmt: skip
