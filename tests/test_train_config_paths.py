"""Paths in a training config are written as in a shell: ``~``, ``$VAR`` and ``${VAR}`` expand
when the config is loaded (a config file and key=value overrides, the command line's included);
an unset or empty variable is refused naming it and the key, never read as a folder named
``$DATA`` that "does not exist"."""

from pathlib import Path

import pytest
import yaml

from loftup.cli import main
from loftup.errors import UsageError
from loftup.train.config import load_config
from loftup.train.config.paths import PATH_KEYS


def _config(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_variables_and_home_expand_in_every_path_key_of_a_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RUNS", "/scratch/runs")
    monkeypatch.setenv("HOME", "/home/me")
    cfg = load_config(
        _config(
            tmp_path,
            "stage: 2\ninit: $RUNS/s1/checkpoint.pt\nbackbone_weights: ~/w/dinov2\n"
            "data:\n  root: $DATA/sa1b\n  cache_dir: ${DATA}_cache/masks\n"
            "  sam_weights: '~'\nlog:\n  out_dir: ${RUNS}/s2\n",
        )
    )
    assert cfg.data.root == f"{tmp_path}/data/sa1b"
    assert cfg.data.cache_dir == f"{tmp_path}/data_cache/masks"  # braces end the name
    assert cfg.init == "/scratch/runs/s1/checkpoint.pt"
    assert cfg.backbone_weights == "/home/me/w/dinov2"
    assert cfg.data.sam_weights == "/home/me"
    assert cfg.log.out_dir == "/scratch/runs/s2"


def test_overrides_and_the_command_line_expand_and_print_the_expanded_path(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DATA", "/datasets")
    cfg = load_config("stage1_cpu", ["data.root=$DATA/sa1b", "log.out_dir=${DATA}/runs/x"])
    assert (cfg.data.root, cfg.log.out_dir) == ("/datasets/sa1b", "/datasets/runs/x")
    # --data and --out are the shell's: what it left of them ('$DATA/x' quoted) is a name
    out = tmp_path / "out"
    argv = ["train", "--config", "stage1_cpu", "--data", "$DATA/x", "--out", str(out)]
    assert main([*argv, "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["root"] == "$$DATA/x"  # as written
    assert main([*argv, "data.root=$DATA/x", "--print-config"]) == 2  # another folder: refused
    assert "--data $DATA/x and the override data.root=/datasets/x disagree" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("value", ["$LOFTUP_TEST_UNSET/sa1b", "${LOFTUP_TEST_UNSET}/sa1b"])
def test_an_unset_variable_names_the_variable_the_key_and_the_file(tmp_path, monkeypatch, value):
    monkeypatch.delenv("LOFTUP_TEST_UNSET", raising=False)
    config = _config(tmp_path, f"data:\n  root: {value}\n")
    with pytest.raises(UsageError) as e:
        load_config(config)
    message = str(e.value)
    assert "\n" not in message
    assert f"config key data.root ('{value}', in config {config})" in message
    assert "the environment variable LOFTUP_TEST_UNSET is not set" in message
    assert "export LOFTUP_TEST_UNSET=" in message


def test_an_empty_variable_or_a_shell_form_is_refused_from_an_override(monkeypatch):
    """``$DATA/sa1b`` with DATA empty would read /sa1b; ``${DATA:-x}`` is a shell default that
    a config does not take: both are said, not read as some other folder."""
    monkeypatch.setenv("EMPTY", "")
    with pytest.raises(UsageError, match=r"'\$EMPTY/c', given as an override\): the environ"
                       r"ment variable EMPTY is set but empty"):  # fmt: skip
        load_config(None, ["data.cache_dir=$EMPTY/c"])
    for value in ("${DATA:-/x}/y", "${DATA", "${}"):
        with pytest.raises(UsageError, match="is not a variable; write \\$NAME or \\$\\{NAME\\}"):
            load_config(None, [f"log.out_dir='{value}'"])


def test_what_is_not_a_variable_stays_as_written(monkeypatch):
    monkeypatch.setenv("X", "$HOME")  # a value is not expanded again
    for written, read in [
        ("//server/share$/data", "//server/share$/data"),  # $ before no name
        ("/data/a$$b", "/data/a$b"),  # $$: a literal $
        ("/data/$X/y", "/data/$HOME/y"),
        ("/data/x~y", "/data/x~y"),  # ~ expands at the start only
        ("runs/$1", "runs/$1"),
    ]:
        assert load_config(None, [f"log.out_dir='{written}'"]).log.out_dir == read, written


def test_only_path_keys_expand_and_a_replaced_value_is_never_read(tmp_path, monkeypatch):
    """``backbone`` is a name, not a path; a file's ``$UNSET`` that an override replaces is
    never used, so it is not an error (``--data DIR`` on a config written for another
    machine)."""
    monkeypatch.delenv("LOFTUP_TEST_UNSET", raising=False)
    assert load_config(None, ["backbone=$LOFTUP_TEST_UNSET"]).backbone == "$LOFTUP_TEST_UNSET"
    config = _config(tmp_path, "data:\n  root: $LOFTUP_TEST_UNSET/sa1b\n")
    assert load_config(config, ["data.root=/data/sa1b"]).data.root == "/data/sa1b"


def test_a_dict_is_taken_as_python_gives_it():
    """A dict comes from Python, whose paths are never shell words: a folder named with a $
    is read as it is."""
    cfg = load_config({"data": {"root": "/data/$NOT_A_VARIABLE"}})
    assert cfg.data.root == "/data/$NOT_A_VARIABLE"


def test_every_path_key_is_expanded(monkeypatch):
    """The keys expanded are :data:`PATH_KEYS`, and every one of them (a key added there is
    expanded with nothing else written)."""
    monkeypatch.setenv("P", "/p")
    overrides = [f"{key}=$P/{key}" for key in PATH_KEYS] + ["stage=2"]
    cfg = load_config(None, overrides).to_dict()
    for key in PATH_KEYS:
        value = cfg
        for part in key.split("."):
            value = value[part]
        assert value == f"/p/{key}", key


def test_a_runs_saved_config_reads_back_to_the_same_paths(tmp_path, monkeypatch):
    """config.yaml holds the expanded paths; a folder's own $ (written $$, or from --out)
    was expanded again when the file was reused with --config."""
    from loftup.train.monitor import write_run_record

    monkeypatch.setenv("x", "/elsewhere")
    cfg = load_config("stage1_cpu", paths={"data.root": "d~ata/$x", "log.out_dir": "r$x"})
    assert (cfg.data.root, cfg.log.out_dir) == ("d~ata/$x", "r$x")
    write_run_record(tmp_path, cfg.to_dict(), 1)
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.data.root == "d~ata/$x" and again.log.out_dir == "r$x"


def test_a_saved_config_names_the_home_folder_the_run_used(tmp_path, monkeypatch):
    """``--out '~/runs/x'`` (quoted, so the shell left the ~) trains into the home folder, as
    every path of a run is read (``Path.expanduser``); --print-config and config.yaml wrote
    ``./~/runs/x``, a folder of the current one to whoever reads it (pathlib reads it as
    ``~/runs/x`` again). They name the folder the run uses, and read back to it."""
    from loftup.train.monitor import write_run_record

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    cfg = load_config("stage1_cpu", paths={"data.root": "~/d$x", "log.out_dir": "~/runs/x"})
    used = [Path(p).expanduser() for p in (cfg.data.root, cfg.log.out_dir)]
    assert used == [home / "d$x", home / "runs" / "x"]
    write_run_record(tmp_path, cfg.to_dict(), 1)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert (saved["data"]["root"], saved["log"]["out_dir"]) == (f"{home}/d$$x", f"{home}/runs/x")
    again = load_config(str(tmp_path / "config.yaml"))
    assert [Path(p) for p in (again.data.root, again.log.out_dir)] == used


@pytest.mark.parametrize("value", ["~loftup_no_such_user/runs", "~loftup_no_such_user"])
def test_a_home_folder_of_no_user_is_refused_in_one_line(tmp_path, monkeypatch, value):
    """``~bob/runs`` where this machine has no user bob: the run's ``Path.expanduser`` raised
    RuntimeError('Could not determine home directory.'), a traceback, whether the path came
    from a config file, an override, a dict or --out."""
    config = _config(tmp_path, f"log:\n  out_dir: {value}\n")
    for load in (
        lambda: load_config(config),
        lambda: load_config(None, [f"data.cache_dir={value}"]),
        lambda: load_config({"backbone_weights": value}),
        lambda: load_config("stage1_cpu", paths={"data.root": value}),
    ):
        with pytest.raises(UsageError) as e:
            load()
        message = str(e.value)
        assert "\n" not in message and f" {value}: ~loftup_no_such_user is no home folder" in (
            message
        )
        assert "give the path without it" in message
    monkeypatch.delenv("HOME")  # and this user has none either: ~ itself is no folder
    monkeypatch.setattr("pwd.getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    with pytest.raises(UsageError, match=r"~/runs: ~ is no home folder \(HOME is not set"):
        load_config(None, ["log.out_dir=~/runs"])
