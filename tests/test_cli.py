"""The command line's core commands, run in-process through main(argv)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from loftup.cli import main
from processes import run_python, run_scripts, src_env


def test_info_lists_every_released_checkpoint(capsys, tmp_path):
    assert main(["info", "--json", str(tmp_path / "info.json")]) == 0
    out = capsys.readouterr().out
    assert "loftup_siglip2" in out and "siglip2_vitb16" in out and "14x14" in out
    rows = json.loads((tmp_path / "info.json").read_text())
    assert len(rows) == 7 and {r["dim"] for r in rows} == {384, 512, 768}


def test_a_reader_that_stops_reading_ends_the_command_quietly(capsys, monkeypatch):
    """`loftup info --json - | head`: the pipe closes under the command, whose output is not
    wanted any more; it ends as the shell's tools do (status 141), not with a traceback."""
    import errno

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            pass

    assert main(["info"]) == 0
    table = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", "--json", "-"]) == 141
    assert capsys.readouterr().err == table  # the table, as --json - puts it, and no traceback


def _commands_with_json() -> set[str]:
    """Every (sub)command of the parser that takes --json, as "world probe"."""
    import argparse

    from loftup.cli import build_parser

    found = set()

    def walk(parser, words):
        for action in parser._actions:
            if "--json" in action.option_strings:
                found.add(" ".join(words))
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])

    walk(build_parser(), [])
    return found


def _fake_experiment(monkeypatch, tmp_path):
    """run_experiment writing its report folder at once (the real one trains for minutes);
    the command line's part, and where it sends --json, is what is tested."""
    import loftup.experiments as experiments
    from loftup.atomic import write_json

    def fake(settings, json_path=None):
        results = {"settings": {"out": str(tmp_path / "x")}, "figures": ["a.png"], "d": 0.5}
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "report.md").write_text("| variant | mIoU |\n")
        if json_path:
            write_json(json_path, results)
        return results

    monkeypatch.setattr(experiments, "run_experiment", fake)


JSON_TO_STDOUT = {  # each command's fast run, and a line of what it prints for a reader
    "info": (["info"], "loftup_dinov2s"),
    "bench": (
        [
            "bench",
            "--sizes",
            "16",
            "--dim",
            "8",
            "--grid",
            "4",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--no-peak",
        ],
        "bicubic",
    ),  # fmt: skip
    "world probe": (["world", "probe", "--count", "2", "--size", "32"], "patch_accuracy"),
    "experiment": (["experiment", "coords", "--quick", "--out", "x"], "| variant | mIoU |"),
}


def test_every_command_with_json_takes_a_dash_for_stdout():
    """A new --json is added to JSON_TO_STDOUT (eval's: tests/test_eval_cli_errors.py)."""
    evals = {f"eval {task}" for task in ("seg", "depth", "normals", "davis")}
    assert _commands_with_json() == {*JSON_TO_STDOUT, *evals}


@pytest.mark.parametrize("command", sorted(JSON_TO_STDOUT))
def test_json_dash_puts_the_json_alone_on_stdout(command, capsys, monkeypatch, tmp_path):
    """`loftup CMD --json - | jq`: stdout is the JSON alone, strict; what the command prints
    for a reader goes to stderr; no file named '-' (bench, world probe and experiment wrote
    one)."""
    monkeypatch.chdir(tmp_path)
    if command == "experiment":
        _fake_experiment(monkeypatch, tmp_path)
    argv, shown = JSON_TO_STDOUT[command]
    assert main([*argv, "--json", "-"]) == 0
    said = capsys.readouterr()

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(said.out, parse_constant=refuse)  # nothing but the JSON
    assert shown in said.err and "wrote -" not in said.err
    assert not (tmp_path / "-").exists()


def test_bench_writes_json_with_machine_and_baselines(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--sizes",
                "32",
                "48",
                "--dim",
                "32",
                "--grid",
                "4",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    methods = {(r["method"], r["size"]) for r in report["results"]}
    assert methods == {(m, s) for m in ("loftup", "bilinear", "bicubic") for s in (32, 48)}
    assert report["machine"]["torch_threads"] >= 1
    assert all(r["median_s"] > 0 for r in report["results"])


def test_user_errors_are_one_line_with_status_2(capsys, tmp_path):
    assert main(["download", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown name 'no_such_model'")
    assert "loftup_dinov2s" in err and "dinov2_vits14" in err
    assert len(err.strip().splitlines()) == 1
    for path in ("../x", str(tmp_path)):  # it spoke of data.sam_weights, training's key
        assert main(["download", path]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path!r} is a local path: it needs no download"), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_a_device_that_cannot_be_used_is_named_not_a_traceback(capsys, tmp_path):
    """Training and extraction choose their device the same way, and say why one is unusable
    before anything is written (it was PyTorch's "Torch not compiled with CUDA" traceback)."""
    out = tmp_path / "run"
    args = ["train", "--config", "stage1_cpu", "device=cuda", "--data", str(tmp_path)]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err == "error: device cuda was asked for, but no CUDA device is available here; use cpu\n"
    )
    assert not out.exists()
    # every command's --device is checked before it starts
    for cmd in (
        ["upsample", "x.png", "-o", str(tmp_path / "feats")],
        ["bench"],
        ["eval", "seg", "--root", str(tmp_path), "--upsampler", "bilinear"],
    ):
        assert main([*cmd, "--device", "cuda:1"]) == 2, cmd
        err = capsys.readouterr().err
        assert err.startswith("error: device cuda:1 was asked for, but no CUDA device"), cmd
    assert main(["upsample", "x.png", "-o", str(tmp_path / "feats"), "--device", "gpu"]) == 2
    assert capsys.readouterr().err == "error: unknown device 'gpu': use auto, cpu, cuda or cuda:N\n"
    assert not (tmp_path / "feats").exists()


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes anywhere: chmod makes no folder read-only"
)
def test_an_output_folder_that_cannot_be_written_is_named_before_any_model_loads(capsys, tmp_path):
    """Named at once (a missing -o by the folder that would hold it), not after the models
    load and by the hidden temporary file the first write failed on; in the words every
    command uses for its output folder (loftup.paths.check_folder_output)."""
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    for out in (ro, ro / "feats"):
        assert main(["upsample", str(tmp_path), "-m", "nosuch", "-o", str(out)]) == 2
        assert capsys.readouterr().err == (
            f"error: -o {out} cannot be written: {ro} takes no new files (Permission denied); "
            "choose another folder\n"
        )
    assert list(ro.iterdir()) == []  # nothing made, not even the missing feats/


def test_an_output_path_taken_by_a_file_is_named_not_a_traceback(capsys, tmp_path):
    taken = tmp_path / "taken.jpg"
    taken.write_bytes(b"x")
    args = ["upsample", str(taken), "-m", "nosuch", "-o", str(taken)]
    assert main(args) == 2  # said before the upsampler is looked for
    assert capsys.readouterr().err == f"error: -o {taken} is a file; give a folder\n"
    args = ["upsample", str(taken), "-m", "nosuch", "-o", str(taken / "feats")]
    assert main(args) == 2  # under a file: the file in the way is named
    assert capsys.readouterr().err == (
        f"error: -o {taken / 'feats'} cannot be written: {taken} is a file, not a folder; "
        "choose another folder\n"
    )
    # the same mistake anywhere else: the path and the reason, status 2
    out = taken / "run"
    args = ["train", "--config", "stage1_cpu", "device=cpu", "--data", str(tmp_path)]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out} lies under {taken}, which is a file, but a run's ")
    assert "give a folder path" in err
    assert len(err.strip().splitlines()) == 1 and taken.read_bytes() == b"x"


# 12 s: slow; out of memory told apart and said in one line, in the default suite:
# test_upsample_limits.py::test_out_of_memory_is_told_apart_and_read
@pytest.mark.slow
def test_a_run_out_of_memory_is_one_line_with_what_to_lower(tmp_path):
    """Training asked for more than the machine has (here: a process allowed 3.3 GiB of address
    space beyond what importing torch maps, 0.6 GB for a CPU build and 3 GB for torch 2.4's CUDA
    build, and 12000-pixel training images: the 0.4 GB image is made, the superpixels' 3.2 GB
    float copy of it is not) ends with the allocation that failed and the settings to lower,
    not PyTorch's or NumPy's traceback."""
    code = (
        "import re, resource, sys, torch; status = open('/proc/self/status').read(); "
        "mapped = int(re.search(r'VmSize:\\s+(\\d+)', status).group(1)) << 10; "
        "resource.setrlimit(resource.RLIMIT_AS, (mapped + (3400 << 20),) * 2); "
        "from loftup.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):  # one batch
        Image.new("RGB", (64, 48), (90, 140, 30 * i)).save(data / f"{i}.png")
    args = ["train", "--config", "stage1_cpu", "batch_size=4", "stage1.image_size=12000"]
    args += ["--data", str(data)]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "max_steps=1", "--out", str(tmp_path / "run")],
        env=src_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith("error: out of memory in loftup train: the host could not allocate ")
    assert line.endswith("try a smaller batch_size, stage1.image_size or stage2.load_size "
                         "(a run that wrote a checkpoint goes on from it with --resume)")  # fmt: skip


def test_memory_errors_are_told_apart_and_read():
    from loftup.errors import memory_shortfall, out_of_memory

    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 28800000000 bytes. Error code 12 (Cannot allocate memory)"
    )
    numpy = MemoryError("Unable to allocate 6.31 GiB for an array with shape (16800, 16800, 3)")
    assert out_of_memory(cpu) and out_of_memory(numpy) and out_of_memory(MemoryError())
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert memory_shortfall(cpu) == "the host could not allocate 28.8 GB"
    assert memory_shortfall(numpy) == "the host could not allocate 6.31 GiB"
    whole = MemoryError("Unable to allocate 149. GiB for an array with shape (100000, 100000, 16)")
    assert memory_shortfall(whole) == "the host could not allocate 149 GiB"  # NumPy's "149."
    assert memory_shortfall(MemoryError()) == "the host ran out of memory"


def test_out_of_memory_in_a_world_command_says_what_to_lower(tmp_path, capsys, monkeypatch):
    """A world command out of memory (world scenes at 100000 px asks NumPy for 149 GiB at
    once; raised here as NumPy raises it, so that no machine tries): one line naming the world
    commands' own options, not 'smaller inputs'."""
    import loftup.data.scene_files as scene_files

    def too_big(*args):
        raise MemoryError("Unable to allocate 149. GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(scene_files, "generate_scene", too_big)
    assert main(["world", "scenes", "--count", "1", "--out", str(tmp_path / "w")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        "error: out of memory in loftup world: the host could not allocate 149 GiB; try a "
        "smaller --size (scenes, probe), --count (probe) or --batch-size (backbone)"
    )


@pytest.mark.parametrize("task", ["davis", "depth"])
def test_out_of_memory_in_eval_names_the_tasks_own_options(tmp_path, capsys, monkeypatch, task):
    """eval out of memory: a probe's task names --probe-batch-size after --batch-size; davis,
    which trains no probe (and refuses that option), names --batch-size alone. (Raised where
    the evaluation starts, as NumPy raises it.)"""
    import loftup.eval as ev

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 149. GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr(ev, "evaluate", too_big)
    assert main(["eval", task, "--root", str(tmp_path), "--upsampler", "bilinear"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    fix = (
        "" if task == "davis" else " (then --probe-batch-size, which changes the probe's training)"
    )
    assert line == (
        f"error: out of memory in loftup eval: the host could not allocate 149 GiB; try a "
        f"smaller --batch-size{fix}"
    )


def test_numbers_are_written_as_strict_json_that_any_reader_takes(tmp_path):
    """A NaN or an infinity (a metric over no pixels, a ratio over a zero time) is written as
    null, not as Python's NaN/Infinity, which strict readers (JavaScript, jq) refuse; a value
    JSON cannot hold leaves neither the file nor a temporary one."""
    from loftup.atomic import write_json

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))

    obj = {"miou": float("nan"), "rows": [{"ms": float("inf"), "n": 3}, (1.5, -float("inf"))]}
    path = write_json(tmp_path / "r.json", obj, sort_keys=True)
    assert strict(path.read_text()) == {"miou": None, "rows": [{"ms": None, "n": 3}, [1.5, None]]}
    assert path.read_text().endswith("}\n") and path.stat().st_size > 0
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(tmp_path / "s.json", {"a": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_bad_paths_and_sizes_are_refused_before_the_work(capsys, tmp_path, monkeypatch):
    # --json naming a folder: said before the benchmark runs, not by the temporary file's name
    # after it
    assert main(["bench", "--sizes", "32", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: --json {tmp_path} is a folder; give a file name, e.g. {tmp_path}/out.json\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))  # a folder written with ~: the same advice
    assert main(["bench", "--sizes", "32", "--json", "~"]) == 2
    assert (
        capsys.readouterr().err
        == "error: --json ~ is a folder; give a file name, e.g. ~/out.json\n"
    )
    # the same in the library's atomic writer, naming the destination
    from loftup.atomic import atomic_write_bytes

    with pytest.raises(IsADirectoryError, match="is a folder; a file name was expected here"):
        atomic_write_bytes(tmp_path, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left
    # a backbone size of 0 (was a ValueError traceback from deep inside, after loading)
    args = ["upsample", "x.png", "-o", str(tmp_path / "o"), "--backbone-size", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--backbone-size is the shorter side in pixels" in err
    assert "None" not in err  # a value the command line cannot give
    import loftup
    from loftup.errors import LoftUpError

    for bad in (0, True, 224.0):  # True is an int to Python: a 1-pixel side, without a word
        with pytest.raises(LoftUpError, match="backbone_size is the shorter side in pixels"):
            loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=bad)
    # a NumPy integer is a size, as it is for size=
    import numpy as np

    pipe = loftup.load_pipeline(
        loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=np.int64(28)
    )
    assert pipe.backbone_size == 28 and type(pipe.backbone_size) is int


def test_a_wrong_data_folder_is_said_before_the_backbone_is_looked_for(capsys, tmp_path):
    """The released recipe's backbone is not here (offline): a mistyped --data must still be the
    error the user sees, at once, not the backbone's."""
    args = ["train", "--config", "stage1_sa1b", "--data", str(tmp_path / "sa1b")]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    missing = tmp_path / "sa1b"
    assert (
        err
        == f"error: data folder {missing} does not exist (pass --data /path/to/images, or data.root=)\n"
    )
    assert not (tmp_path / "run").exists()


def test_every_option_of_every_command_says_what_it_does():
    """`loftup COMMAND --help` explains each option; one with a default other than off or none
    says that default."""
    import argparse

    from loftup.cli import build_parser

    def options(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from options(sub, f"{name} {sub_name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield name, action

    silent, no_default = [], []
    for name, action in options(build_parser(), "loftup"):
        flag = "/".join(action.option_strings) or action.dest
        if not action.help:
            silent.append(f"{name} {flag}")
        elif (
            action.option_strings
            and action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and "default" not in action.help
        ):
            no_default.append(f"{name} {flag} (default {action.default!r})")
    assert not silent, f"options without help: {silent}"
    assert not no_default, f"options whose help does not give the default: {no_default}"


def test_help_and_import_load_no_torch():
    """``import loftup`` and every ``loftup COMMAND --help`` answer without importing torch
    (it costs seconds; the library's names are loaded on first use), and the lazy names are
    the real ones."""
    code = (
        "import sys, contextlib, io\n"
        "import loftup\n"
        "from loftup.cli import build_parser, main\n"
        "assert 'torch' not in sys.modules, 'import loftup loaded torch'\n"
        "names = [n for n in build_parser()._subparsers._group_actions[0].choices]\n"
        "for name in [None, *names]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(['--help'] if name is None else [name, '--help'])\n"
        "    assert 'torch' not in sys.modules, f'{name} --help loaded torch'\n"
        "print(len(names))\n"
        "from loftup import LoftUp, load_upsampler\n"
        "import loftup.model, loftup.hub\n"
        "assert LoftUp is loftup.model.LoftUp and load_upsampler is loftup.hub.load_upsampler\n"
    )
    done = run_python(code, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 9  # every command was asked for its help


def _warns_script(bar: bool) -> str:
    return (
        "import sys, warnings; from tqdm import tqdm; from loftup import cli\n"
        "from loftup.cli import checkpoints\n"
        "before = warnings.showwarning\n"
        "def warns(args):\n"
        f"    bar = tqdm(total=2, file=sys.stderr, disable={not bar})\n"
        "    bar.update(1)\n"
        "    warnings.warn('Image size (144000000 pixels) exceeds limit of\\n 89478485 pixels')\n"
        "    bar.close()\n"
        "checkpoints._cmd_info = warns\n"
        "code = cli.main(['info'])\n"
        "sys.exit(code if warnings.showwarning is before else 3)\n"
    )


#: Scripts that need a process without pytest's capture of warnings and logging, each ending
#: with its exit status (0: its own checks passed). They share one process (run_scripts); the
#: one that leaves a bar open runs last, so that nothing of its bar lands in another's output.
_SCRIPTS = {
    "warning alone": _warns_script(bar=False),
    "warning under a progress bar": _warns_script(bar=True),
    "logs beside a bar": (
        "import logging, sys; from tqdm import tqdm; from loftup.cli import train\n"
        "logger = logging.getLogger('loftup')\n"
        "with train._log_beside_bars(logger):\n"
        "    bar = tqdm(total=2, file=sys.stderr)\n"
        "    bar.update(1)\n"
        "    logging.getLogger('loftup.data').warning('skipping unreadable x.jpg')\n"
        "    logging.getLogger('loftup.train').info('resuming at step 1')\n"
        "    logging.getLogger('httpx').info('HTTP Request: GET https://huggingface.co')\n"
        "    bar.close()\n"
        "sys.exit(0 if not logger.handlers and logger.level == 0 else 3)\n"
    ),
    "error under an open bar": (
        "import sys; from tqdm import tqdm; from loftup import cli; from loftup.errors import "
        "LoftUpError\n"
        "from loftup.cli import checkpoints\n"
        "def fails(args):\n"
        "    bar = tqdm(total=2, file=sys.stderr, desc='stage 1')\n"
        "    raise LoftUpError('none of the 4 files could be read')\n"
        "checkpoints._cmd_info = fails\n"
        "sys.exit(0 if cli.main(['info']) == 2 else 3)\n"
    ),
}


@pytest.fixture(scope="module")
def own_process() -> dict:
    """What each of _SCRIPTS printed (processes.run_scripts); each must exit with 0."""
    done = run_scripts(_SCRIPTS, timeout=300)
    assert {name: d.returncode for name, d in done.items()} == dict.fromkeys(_SCRIPTS, 0), done
    return done


@pytest.mark.parametrize("bar", [False, True], ids=["alone", "under a progress bar"])
def test_a_warning_under_the_command_line_is_one_line(own_process, bar):
    """A library's warning (Pillow's decompression-bomb note, say) is printed as the errors
    are, one line, not with the source path and line of whoever warned, and on a line of its
    own while a progress bar is drawn; Python's own printing is back after the command. (A
    process of its own: pytest records warnings itself.) Its own newline is written as
    ``\\n``, as a path's is: a newline is never made a space, which would misname a file."""
    done = own_process["warning under a progress bar" if bar else "warning alone"]
    line = "warning: Image size (144000000 pixels) exceeds limit of\\n 89478485 pixels"
    if not bar:
        assert done.stderr == line + "\n"
    else:  # the bar is drawn before and after it, never on its line
        pieces = re.split(r"[\r\n]", done.stderr)
        assert line in pieces, done.stderr
        assert sum("warning" in p for p in pieces) == 1 and "1/2" in done.stderr


def test_train_logs_its_own_lines_beside_the_progress_bar(own_process):
    """What `loftup train` logs (a skipped file, a resume) is a bare line of its own while the
    bar is drawn, and the hub client's INFO lines (one per HTTP request) are not printed;
    afterwards the logger is as it was. (A process of its own: pytest captures logging.)"""
    done = own_process["logs beside a bar"]
    pieces = re.split(r"[\r\n]", done.stderr)
    assert "skipping unreadable x.jpg" in pieces and "resuming at step 1" in pieces, done.stderr
    assert "HTTP" not in done.stderr and "1/2" in done.stderr and done.stdout == ""


def test_an_error_under_an_open_progress_bar_is_a_line_of_its_own(own_process):
    """A command that fails while its bar is drawn (training on a folder of unreadable files)
    closes the bar before the error line, which used to land on the end of the bar's line."""
    lines = own_process["error under an open bar"].stderr.split("\n")
    assert "error: none of the 4 files could be read" in lines, lines


def test_a_json_path_that_cannot_be_written_is_refused_before_the_work(capsys, tmp_path):
    """``--json`` under a file (or in a folder that takes no files) is said before the command
    runs, naming the option and the file in the way: ``world probe`` scored its scenes first
    and `info` printed its table, and both then ended with 'FILE: File exists'."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    for argv in (["info"], ["world", "probe", "--count", "2", "--size", "16"]):
        assert main([*argv, "--json", str(blocker / "out.json")]) == 2
        out, err = capsys.readouterr()
        assert out == ""  # nothing ran
        assert err == (
            f"error: --json {blocker}/out.json cannot be written: {blocker} is a file, not a "
            "folder; choose another path\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_work(capsys, tmp_path):
    """``--out`` under a file is said before any scene is drawn or step trained, naming the
    option: `world backbone` trained and then ended with 'afile/sub: Not a directory', `demo`
    and `experiment` ended with that line (or 'afile: File exists') and no fix."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    commands = (
        ["world", "backbone", "--steps", "1", "--scenes", "1", "--batch-size", "1"],
        ["demo"],
        ["experiment", "coords", "--quick"],
    )
    for argv in commands:
        assert main([*argv, "--out", str(blocker / "sub")]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"error: --out {blocker}/sub cannot be written: {blocker} is a file, not a folder; "
            "choose another folder\n"
        )
    for argv in commands:  # --out a file: one message, the same from every command
        assert main([*argv, "--out", str(blocker)]) == 2
        assert capsys.readouterr() == ("", f"error: --out {blocker} is a file; give a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_error_with_stderr_gone_still_exits_with_its_status(tmp_path, monkeypatch):
    """``loftup train ... 2>&1 | tee log``: the Ctrl-C that stops the run ends tee too, and the
    one-line error then met a broken pipe: a traceback and status 1 instead of the status that
    says what happened (scripts branch on it)."""

    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Gone())
    assert main(["upsample", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["upsample", "~loftup_no_such_user/a.png", "-o", "OUT"],
        ["upsample", "IMAGES", "-o", "~loftup_no_such_user/out"],
        ["bench", "--json", "~loftup_no_such_user/x.json"],
    ],
)
def test_a_path_of_a_home_that_does_not_exist_is_one_line(argv, tmp_path, capsys):
    """~user of no user of this machine: Path.expanduser's RuntimeError ended the command with
    a traceback; the path is named."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    argv = [str(tmp_path / "a.png") if a == "IMAGES" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: path ~loftup_no_such_user/") and err.count("\n") == 1
    assert "no user loftup_no_such_user on this machine" in err
