"""Bad command-line input: one line ``error: ...`` naming the problem, exit status 2, no
traceback, and nothing written, said before any work (all in-process through main(argv))."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from loftup.cli import main
from loftup.errors import UsageError
from loftup.train.config import load_config


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


BENCH = [
    (["--sizes", "0"], ["--sizes", ">= 1", "got 0"]),
    (["--sizes", "-5"], ["--sizes", ">= 1", "-5"]),
    (["--sizes", "16", "0"], ["--sizes", "16 0"]),
    (["--dim", "0"], ["--dim", "multiple of 4", "got 0"]),
    (["--dim", "-1"], ["--dim", "multiple of 4", "got -1"]),
    (["--dim", "7"], ["--dim", "multiple of 4", "4 heads", "got 7"]),
    (["--grid", "0"], ["--grid", ">= 1", "got 0"]),
    (["--grid", "-2"], ["--grid", ">= 1", "got -2"]),
    (["--batch", "0"], ["--batch", ">= 1", "got 0"]),
    (["--batch", "-1"], ["--batch", ">= 1", "got -1"]),
    (["--repeats", "0"], ["--repeats", ">= 1", "got 0"]),
    (["--warmup", "-1"], ["--warmup", ">= 0", "got -1"]),
    (["--threads", "-3"], ["--threads", "at least 1", "got -3"]),
    (["--threads", "0"], ["--threads", "at least 1", "got 0"]),
    (["--tile-size", "-1"], ["--tile-size", ">= 1", "got -1"]),
    (["--chunk-size", "0"], ["--chunk-size", ">= 1", "got 0"]),
    (["--stream", "-1"], ["--stream", ">= 1", "got -1"]),
    (["--stream", "0"], ["--stream", ">= 1", "got 0"]),
    (["--suite", "smoke", "--stream", "-1"], ["--stream", ">= 1"]),
]


@pytest.mark.parametrize("flags, words", BENCH, ids=[" ".join(f) for f, _ in BENCH])
def test_bench_settings_are_checked_before_anything_is_timed(flags, words, capsys, tmp_path):
    out = tmp_path / "bench.json"
    table = [] if "--suite" in flags else ["--no-peak"]  # a table's option, refused by a suite
    assert main(["bench", *table, "--json", str(out), *flags]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


def test_bench_reference_file_problems_name_the_file_and_what_is_wrong(capsys, tmp_path):
    syntax = tmp_path / "broken.py"
    syntax.write_text("class ReferenceLoftUp:\n    def f(:\n        pass\n")
    importing = tmp_path / "imports.py"
    importing.write_text("import loftup_no_such_module\n")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    text = tmp_path / "notes.txt"
    text.write_text("x = 1\n")
    cases = {
        tmp_path / "missing.py": ["missing.py", "no such file", "benchmarks/reference_impl.py"],
        tmp_path: [str(tmp_path), "is a folder"],
        syntax: ["broken.py", "syntax error at line 2"],
        importing: ["imports.py", "ModuleNotFoundError", "loftup_no_such_module"],
        empty: ["empty.py", "defines no ReferenceLoftUp"],
        text: ["notes.txt", "not a Python"],
    }
    for path, words in cases.items():
        assert main(["bench", "--sizes", "16", "--reference", str(path)]) == 2, path
        _one_line_error(capsys, *words)


def test_the_library_says_the_same_as_a_value_error():
    from loftup.bench import bench_forward, load_reference_class

    with pytest.raises(ValueError, match="repeats"):
        bench_forward([16], dim=8, grid=2, repeats=0, peak=False, progress=False)
    with pytest.raises(UsageError, match="no such file"):
        load_reference_class("/no/such/reference.py")


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "mps:0"])
def test_device_types_this_build_cannot_run_are_refused_by_name(device, capsys, tmp_path):
    from loftup.api import resolve_device

    with pytest.raises(ValueError, match=f"device {device} is not supported.*cpu.*cuda"):
        resolve_device(device)
    feats = tmp_path / "feats"
    for argv in (
        ["upsample", "x.png", "-o", str(feats), "--device", device],
        ["bench", "--sizes", "16", "--device", device],
        ["world", "backbone", "--out", str(tmp_path / "bb"), "--device", device],
        ["train", "--config", "stage1_cpu", f"device={device}", f"data.root={tmp_path}",
         "--out", str(tmp_path / "run")],
    ):  # fmt: skip
        assert main(argv) == 2, argv
        _one_line_error(capsys, f"device {device} is not supported", "cpu", "cuda")
    assert not feats.exists() and not (tmp_path / "run").exists()


def test_an_unknown_device_keeps_its_message(capsys):
    assert main(["bench", "--device", "tpu"]) == 2
    _one_line_error(capsys, "unknown device 'tpu'", "auto, cpu, cuda or cuda:N")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_is_named(capsys, tmp_path):
    """``-o /proc/x``: mkdir fails with ENOENT (not EACCES); the path, no traceback."""
    from PIL import Image

    import loftup
    from loftup.hub import save_pretrained

    try:
        os.mkdir("/proc/loftup_cannot_be_made")
    except OSError as e:
        if e.errno != errno.ENOENT:
            pytest.skip(f"/proc here answers mkdir with {errno.errorcode[e.errno]}")
    else:  # pragma: no cover - a /proc that takes folders
        os.rmdir("/proc/loftup_cannot_be_made")
        pytest.skip("this /proc takes new folders")
    model = tmp_path / "up"
    save_pretrained(loftup.LoftUp(dim=64), model, backbone="scenes_vit_p8")
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    out = "/proc/loftup_cannot_be_made"
    assert main(["upsample", str(tmp_path / "x.png"), "-m", str(model), "-o", out]) == 2
    _one_line_error(capsys, out, "No such file or directory")


SCENES = [
    (["--count", "0"], ["--count", "at least 1", "got 0"]),
    (["--classes", "1"], ["--classes", "between 2 and 12", "got 1"]),
    (["--classes", "13"], ["--classes", "between 2 and 12", "got 13"]),
    (["--scale", "-1"], ["--scale", "> 0", "-1"]),
    (["--scale", "nan"], ["--scale", "finite", "nan"]),
    (["--scale", "0"], ["--scale", "> 0"]),
    (["--scale", "inf"], ["--scale", "finite"]),
    (["--texture-scale", "2", "1"], ["--texture-scale", "MIN <= MAX", "got 2 1"]),
    (["--texture-scale", "0", "0"], ["--texture-scale", "0 < MIN", "got 0 0"]),
    (["--texture-scale", "1", "nan"], ["--texture-scale", "finite"]),
    (["--texture-contrast", "0.3", "0.1"], ["--texture-contrast", "MIN <= MAX", "0.3 0.1"]),
    (["--texture-contrast", "0.1", "2"], ["--texture-contrast", "<= 1"]),
    (["--quality", "0"], ["--quality", "between 1 and 100", "got 0"]),
    (["--quality", "101"], ["--quality", "between 1 and 100", "got 101"]),
    (["--start", "-1"], ["--start", ">= 0", "got -1"]),
    (["--seed", "-1"], ["--seed", ">= 0", "got -1"]),
]


@pytest.mark.parametrize("flags, words", SCENES, ids=[" ".join(f) for f, _ in SCENES])
def test_world_scenes_options_are_checked_before_a_file_is_written(flags, words, capsys, tmp_path):
    out = tmp_path / "world"
    assert main(["world", "scenes", "--out", str(out), "--count", "2", *flags]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


WORLD_OTHER = [
    (["world", "probe", "--count", "1"], ["count", "at least 2", "half"]),
    (["world", "probe", "--count", "0"], ["count", "at least 2"]),
    (["world", "backbone", "--out", "OUT", "--steps", "0"], ["--steps", ">= 1", "got 0"]),
    (["world", "backbone", "--out", "OUT", "--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["world", "backbone", "--out", "OUT", "--scenes", "0"], ["--scenes", ">= 1"]),
    (["world", "backbone", "--out", "OUT", "--seed", "-1"], ["--seed", ">= 0"]),
    (["world", "backbone", "--out", "OUT", "--threads", "-1"], ["--threads", "at least 1"]),
]


@pytest.mark.parametrize("argv, words", WORLD_OTHER, ids=[" ".join(a) for a, _ in WORLD_OTHER])
def test_world_probe_and_backbone_options_are_checked_first(argv, words, capsys, tmp_path):
    out = tmp_path / "bb"
    assert main([str(out) if a == "OUT" else a for a in argv]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


DEMO = [
    (["--size", "0"], ["--size", "multiple of 8", "got 0"]),
    (["--size", "12"], ["--size", "multiple of 8", "got 12"]),
    (["--size", "-8"], ["--size", "multiple of 8"]),
    (["--train-scenes", "0"], ["--train-scenes", ">= 1", "got 0"]),
    (["--train-scenes", "3"], ["--train-scenes 3", "one batch", "--batch-size 4"]),
    (["--val-scenes", "0"], ["--val-scenes", ">= 2", "half"]),
    (["--val-scenes", "1"], ["--val-scenes", ">= 2"]),
    (["--batch-size", "0"], ["--batch-size", ">= 1", "got 0"]),
    (["--stage1-steps", "0"], ["--stage1-steps", ">= 1"]),
    (["--stage2-steps", "-1"], ["--stage2-steps", ">= 1"]),
    (["--stage1-lr", "nan"], ["--stage1-lr", "finite number > 0", "nan"]),
    (["--stage2-lr", "0"], ["--stage2-lr", "> 0"]),
    (["--probe-lr", "inf"], ["--probe-lr", "finite"]),
    (["--probe-epochs", "0"], ["--probe-epochs", ">= 1"]),
    (["--threads", "-1"], ["--threads", "at least 1", "got -1"]),
    (["--seed", "-1"], ["--seed", ">= 0", "got -1"]),
]


@pytest.mark.parametrize("flags, words", DEMO, ids=[" ".join(f) for f, _ in DEMO])
def test_demo_options_are_checked_before_any_scene_is_written(flags, words, capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *flags]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


def test_demo_config_refuses_bad_values_in_the_library_too():
    from loftup.world.demo import DemoConfig

    with pytest.raises(ValueError, match="multiple of 8"):
        DemoConfig(size=12)
    with pytest.raises(ValueError, match="val-scenes"):
        DemoConfig(val_scenes=1)


def test_an_interrupted_demo_goes_on_with_resume(capsys, caplog, monkeypatch, tmp_path):
    """SIGTERM in stage 1: the checkpoint is kept and the advice given (run the same command
    with --resume) is true; without --resume the folder is refused with that advice; with
    other options it is refused by name; with --resume the demo finishes, stage 1 going on from
    its checkpoint (each step once)."""
    from loftup.train import loop

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--size", "8", "--train-scenes", "4", "--val-scenes", "2"]
    argv += ["--stage1-steps", "3", "--stage2-steps", "1", "--probe-epochs", "1"]
    real = loop.draw_step

    def interrupted(cfg, step, *args, **kwargs):
        if cfg.stage == 1 and step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's cancel, mid-step
        return real(cfg, step, *args, **kwargs)

    monkeypatch.setattr(loop, "draw_step", interrupted)
    with caplog.at_level("WARNING"):
        assert main(argv) == 143
    assert "with --resume to go on" in caplog.text
    monkeypatch.setattr(loop, "draw_step", real)
    ckpt = out / "runs" / "stage1" / "checkpoint.pt"
    assert ckpt.is_file() and not (out / "report.json").exists()
    capsys.readouterr()

    assert main(argv) == 2  # the same command without --resume: told to add it
    _one_line_error(capsys, "interrupted demo", "--resume", "another --out")
    assert main([*argv, "--resume", "--seed", "1"]) == 2  # other options: named
    _one_line_error(capsys, "other options", "--seed 0")

    assert main([*argv, "--resume"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) >= {"stage1", "stage2"}
    rows = (out / "runs" / "stage1" / "metrics.csv").read_text().splitlines()
    steps = [int(float(r.split(",")[0])) for r in rows[1:]]
    assert steps == [0, 1, 2]
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2  # a finished demo is never overwritten
    _one_line_error(capsys, "already holds a demo report")


EXPERIMENT = [
    (["--threads", "-1"], ["--threads", "at least 1", "got -1"]),
    (["--seeds", "0"], ["--seeds", ">= 1", "got 0"]),
    (["--size", "12"], ["--size", "multiple of 8"]),
    (["--stage1-steps", "0"], ["--stage1-steps", ">= 1"]),
    (["--stage1-lr", "nan"], ["--stage1-lr", "finite"]),
    (["--train-scenes", "2"], ["--train-scenes 2", "one batch"]),
    (["--eval-count", "1"], ["--eval-count", ">= 2"]),
    (["--eval-count", "10"], ["--eval-count 10", "the 8 held-out scenes", "--val-scenes"]),
    (["model.num_heads=0"], ["model.num_heads"]),
    (["optim.no_such_key=1"], ["unknown config key optim.no_such_key"]),
    (["--out", "OUT", "optim.no_such_key=1"], ["unknown config key optim.no_such_key"]),
]


@pytest.mark.parametrize("flags, words", EXPERIMENT, ids=[" ".join(f) for f, _ in EXPERIMENT])
def test_experiment_settings_and_overrides_are_checked_before_work(flags, words, capsys, tmp_path):
    out = tmp_path / "exp"
    flags = [str(out) if f == "OUT" else f for f in flags]
    assert main(["experiment", "mask-noise", "--quick", "--out", str(out), *flags]) == 2
    _one_line_error(capsys, *words)
    assert not out.exists()


def test_experiment_takes_key_value_overrides_after_its_options(monkeypatch, tmp_path):
    """As ``train`` does: KEY=VALUE anywhere after NAME, in the order written."""
    import loftup.experiments as experiments

    seen = {}

    def fake(settings, json_path=None):
        seen["settings"] = settings
        raise UsageError("stop here")

    monkeypatch.setattr(experiments, "run_experiment", fake)
    argv = ["experiment", "mask-noise", "a.b=1", "--quick", "--out", str(tmp_path / "x")]
    assert main([*argv, "optim.lr=1e-3", "--threads", "1", "stage1.n_jitters=2"]) == 2
    assert seen["settings"].overrides == ["a.b=1", "optim.lr=1e-3", "stage1.n_jitters=2"]
    assert seen["settings"].threads == 1


def test_train_takes_overrides_on_both_sides_of_its_options(capsys, tmp_path):
    argv = ["train", "--config", "stage1_cpu", "optim.lr=0.5", "--out", str(tmp_path / "r")]
    assert main([*argv, "batch_size=3", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "lr: 0.5" in printed and "batch_size: 3" in printed


@pytest.mark.parametrize(
    "name", ["2024", "yes", "runs #2", "a: b", "[x] y", '~/é \\ "q"', "$HOME", "a$$b ${x"]
)
def test_train_takes_the_data_and_out_folders_as_written(capsys, tmp_path, name):
    """--data and --out are paths, not YAML: a folder named 2024 or yes was refused as a
    number or a boolean, and --out 'runs #2' silently trained into runs (the rest a comment);
    the shell has expanded them, so a $ left is the folder's own (a config file's expand); a
    leading ~ is the home folder, as the run reads every path."""
    argv = ["train", "--config", "stage1_cpu", "--data", name, "--out", name, "--print-config"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    used = Path(name).expanduser()  # the folder the run reads (and writes)
    assert yaml.safe_load(printed)["data"]["root"] == str(used).replace("$", "$$")
    # the printed config read back as a file holds the same folders ($ written $$)
    (tmp_path / "run.yaml").write_text(printed, encoding="utf-8")
    cfg = load_config(str(tmp_path / "run.yaml"))
    assert Path(cfg.data.root) == used and Path(cfg.log.out_dir) == used


def test_a_stray_argument_is_still_unrecognized(capsys):
    with pytest.raises(SystemExit) as e:
        main(["experiment", "mask-noise", "--quick", "stray"])
    assert e.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err


EMPTY_OUT = [
    (["upsample", "x.png", "-o", ""], "-o is empty; give a folder"),
    (["demo", "--out", ""], "--out is empty; give a folder"),
    (["world", "scenes", "--out", "", "--count", "1"], "--out is empty; give a folder"),
    (["world", "backbone", "--out", "", "--steps", "1"], "--out is empty; give a folder"),
]


@pytest.mark.parametrize("argv, said", EMPTY_OUT, ids=[a[0] + " " + a[1] for a, _ in EMPTY_OUT])
def test_an_empty_out_folder_is_refused_not_the_current_folder(
    argv, said, capsys, monkeypatch, tmp_path
):
    """``--out "$OUT"`` with OUT unset: refused, not a run written into the current folder
    (Path("") is "."; upsample, demo and world wrote there)."""
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert _one_line_error(capsys) == f"error: {said}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


HUB_IDS = [
    (["download", "org/-x"], "org/-x"),
    (["download", "a b/c"], "a b/c"),
]


@pytest.mark.parametrize("argv, name", HUB_IDS, ids=[" ".join(a[:2]) for a, _ in HUB_IDS])
def test_a_name_that_is_no_hub_id_nor_a_folder_is_one_line(
    argv, name, capsys, monkeypatch, tmp_path
):
    """huggingface_hub's ValueError for a mistyped hub id (or a folder that is not there,
    taken for one) was a traceback and status 1. (Backbone weights are named by
    get_featurizer itself: tests/test_featurizer_weights.py.)"""
    from PIL import Image

    import loftup

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (16, 16)).save("x.png")
    loftup.LoftUp(dim=32).save_pretrained("up", backbone="dinov2_tiny")
    assert main(argv) == 2
    line = _one_line_error(capsys, "error: no hub id ORG/NAME: ", f"'{name}' (nor a file or folder")
    assert line.endswith("(nor a file or folder here); check the name or the path")
