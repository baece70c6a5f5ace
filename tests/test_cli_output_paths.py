"""The files a command is told to write (``--json``, ``--figure``) go where they were checked:
``~`` at the home folder, a link's target; names the file system cannot hold, and names
stdout cannot print, are said as errors, not tracebacks."""

from __future__ import annotations

import json
import os

import pytest

from loftup.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    """$HOME a fresh folder, and the current folder another: where a literal ``./~`` shows."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


def test_a_json_path_under_home_is_written_at_home_not_in_a_tilde_folder(home, capsys):
    """``--json=~/info.json`` (no shell expands it after ``=``) was checked at $HOME but
    written to ./~/info.json."""
    assert main(["info", "--json=~/info.json"]) == 0
    assert isinstance(json.loads((home / "info.json").read_text()), list)
    assert not (home.parent / "cwd" / "~").exists()
    assert f"wrote {home / 'info.json'}" in capsys.readouterr().out


def test_bench_json_and_figure_under_home_are_written_at_home(home):
    pytest.importorskip("matplotlib")
    tiny = ["bench", "--sizes", "16", "--dim", "32", "--grid", "4", "--repeats", "1"]
    tiny += ["--warmup", "0", "--no-peak", "--threads", "1"]
    assert main([*tiny, "--json=~/b.json", "--figure=~/figs/b.png"]) == 0
    assert (home / "b.json").is_file() and (home / "figs" / "b.png").is_file()
    assert main([*tiny, "--json=~/c.json"]) == 0  # its figure beside it
    assert (home / "c.json").is_file() and (home / "c.png").is_file()
    assert not (home.parent / "cwd" / "~").exists()


def test_eval_results_and_figure_under_home_are_written_at_home(home):
    from loftup.eval.config import EvalConfig
    from loftup.eval.results import finish

    drawn = []
    cfg = EvalConfig("seg", "ade20k", "data", "dinov2_vits14", "bilinear", json="~/r.json")
    results = finish(cfg, {"metrics": {}}, drawn.append)
    assert json.loads((home / "r.json").read_text())["figure"] == str(home / "r.png")
    assert drawn == [str(home / "r.png")]
    cfg.figure = "~/f.png"
    finish(cfg, results, drawn.append)
    assert drawn[-1] == str(home / "f.png")
    assert not (home.parent / "cwd" / "~").exists()


def test_a_name_too_long_for_the_file_system_is_refused_before_any_work(tmp_path, capsys):
    """A 305-byte --json name passed the checks and ended in a traceback (ENAMETOOLONG);
    a 300-byte -o was "its upsample.json cannot be read ... move the file away"."""
    long = tmp_path / ("a" * 300 + ".json")
    assert main(["info", "--json", str(long)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --json {long} cannot be written: a name in it (")
    assert "is 305 bytes, over the 255 this file system allows; choose a shorter name" in err
    out = tmp_path / ("o" * 300) / "features"
    assert main(["upsample", str(tmp_path), "-m", "no-such-model", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"-o {out} cannot be written: a name in it" in err and "300 bytes" in err
    assert "move the file away" not in err and list(tmp_path.iterdir()) == []


def test_eval_names_its_default_figure_short_whatever_the_checkpoint_path(tmp_path, monkeypatch):
    """The default figure is named after the upsampler: a long checkpoint path made a name of
    302 bytes, refused with "choose a shorter name", a name the user never chose."""
    from loftup.errors import UsageError
    from loftup.eval.config import EvalConfig
    from loftup.eval.results import check_outputs, figure_path
    from loftup.paths import check_file_output

    monkeypatch.chdir(tmp_path)
    folder = "/data/checkpoints/" + "loftup_dinov2s_stage2_lr1e-4_bs32_img448_" * 6
    names = []
    for run in ("a", "b"):  # one letter apart, in the middle of the path
        cfg = EvalConfig("seg", "ade20k", "data", "dinov2_vits14", f"{folder}{run}{folder}/m.pt")
        check_outputs(cfg)  # no UsageError
        names.append(figure_path(cfg))
        assert names[-1].startswith("eval_seg_ade20k_dinov2_vits14__data_checkpoints_")
        assert names[-1].endswith("_img448__m_pt.png")
        assert len(names[-1].encode()) <= 140  # the backbone, then at most 100 bytes
    assert names[0] != names[1]
    cfg = EvalConfig("seg", "ade20k", "data", "dinov2_vits14", "loftup_dinov2s")
    assert figure_path(cfg) == "eval_seg_ade20k_dinov2_vits14_loftup_dinov2s.png"  # short
    with pytest.raises(UsageError, match="allows; give --figure another path$"):
        check_file_output("e" * 300 + ".png", "the figure", "give --figure another path")


def test_a_path_too_long_or_a_loop_of_links_is_an_error_not_a_traceback(tmp_path, capsys):
    """Each name fits but the whole path is longer than the system takes (4096 bytes)."""
    deep = tmp_path.joinpath(*["d" * 200] * 25, "x.json")
    assert main(["info", "--json", str(deep)]) == 2
    assert capsys.readouterr().err.endswith(": File name too long\n")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert main(["info", "--json", str(tmp_path / "a" / "x.json")]) == 2
    assert "a link to b, which leads back to it (a loop)" in capsys.readouterr().err


def test_a_record_name_too_long_is_not_a_file_to_move(tmp_path):
    from loftup.errors import LoftUpError
    from loftup.extract.record import read_record

    with pytest.raises(LoftUpError, match=r"File name too long.*; choose another out$") as e:
        read_record(tmp_path / ("o" * 300), resume=False)
    assert "move the file away" not in str(e.value)


def test_a_json_link_is_checked_where_its_file_is_written(tmp_path, capsys):
    """The link's own folder was checked, the file it names written: a link into a file, or
    into a folder that takes no files, passed the check and failed after the work, naming a
    temporary file (``/sys/kernel/.x.json.cnpxyngb.tmp: Permission denied``)."""
    (tmp_path / "afile").write_text("")
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "afile" / "x.json")
    assert main(["info", "--json", str(link)]) == 2
    err = capsys.readouterr().err
    assert f"it is a link to {tmp_path / 'afile' / 'x.json'}, and {tmp_path / 'afile'} is a " in err
    if not _takes_no_files("/sys/kernel"):
        pytest.skip("/sys/kernel takes files here")
    link.unlink()
    link.symlink_to("/sys/kernel/x.json")
    assert main(["info", "--json", str(link)]) == 2
    assert "it is a link to /sys/kernel/x.json, and /sys/kernel takes no new files" in (
        capsys.readouterr().err
    )


def _takes_no_files(folder: str) -> bool:
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.unlink(tmp)
    return False


def test_a_write_that_fails_names_the_file_asked_for_not_its_temporary_file(tmp_path):
    from loftup.atomic import replace_durably, temp_beside

    (tmp_path / "folder" / "inside").mkdir(parents=True)  # a rename onto it fails
    tmp = temp_beside(tmp_path / "x.json")
    with pytest.raises(OSError) as e:
        replace_durably(tmp, tmp_path / "folder")
    assert e.value.filename == str(tmp_path / "folder")
    os.unlink(tmp)
    if not _takes_no_files("/sys/kernel"):
        pytest.skip("/sys/kernel takes files here")
    with pytest.raises(OSError) as e:
        temp_beside("/sys/kernel/x.json")
    assert e.value.filename == "/sys/kernel/x.json"


def test_a_path_that_is_no_utf8_is_said_on_a_strict_stdout(tmp_path):
    """``-o $'out\\xfe'`` with PYTHONIOENCODING=utf-8:strict: every file written, then a
    UnicodeEncodeError and status 1 on the "wrote" line. The byte is said as the byte,
    ``\\xfe`` (``\\udcfe`` was Python's name for it, not the file's)."""
    from processes import run_cli

    name = os.fsdecode(b"info\xfe.json")  # as the command line hands such bytes to Python
    done = run_cli(["info", "--json", name], env={"PYTHONIOENCODING": "utf-8:strict"},
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote info\\xfe.json" in done.stdout
    assert json.loads((tmp_path / name).read_text())


def _scenes_folder_in(out):
    """``out/scenes/train``, where the demo and the experiments write their training scenes."""
    (out / "scenes").mkdir(parents=True)
    return out / "scenes" / "train"


@pytest.mark.parametrize("command", [["experiment", "coords", "--quick"], ["demo"]])
def test_a_scenes_folder_that_cannot_be_written_is_said_with_out_as_typed(
    tmp_path, capsys, command
):
    """A file where ``OUT/scenes/train`` goes, or that folder of mode 600 (this user may not
    search it), was "--out OUT/scenes/train ...", a path the user never typed."""
    out = tmp_path / "out"
    _scenes_folder_in(out).write_text("")
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --out {out} cannot be written: {out}/scenes/train is a file, where the run "
        "makes a folder; move it away or choose another folder"
    )
    from file_modes import where_modes_apply

    locked = tmp_path / "locked"
    _scenes_folder_in(locked).mkdir(mode=0o600)
    said = where_modes_apply(f"""
import contextlib, io
from loftup.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    main({[*command, "--out", str(locked)]!r})
result = err.getvalue().strip()
""")
    assert said == (
        f"error: --out {locked} cannot be written: {locked}/scenes/train takes no new files "
        f"({os.strerror(13)}); choose another folder"
    )
