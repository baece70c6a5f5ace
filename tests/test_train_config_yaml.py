"""What a user writes in a training YAML or a key=value override is read as meant, or refused
in one line with the fix: keys given twice, typos, numbers YAML reads as strings, words YAML
reads as booleans or null, comments in overrides, non-ASCII files."""

import locale
import os

import pytest

from file_modes import WHOSE, refuse, where_modes_apply
from loftup.cli import main
from loftup.errors import UsageError
from loftup.train.config import load_config, parse_overrides


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, capsys):
    """YAML keeps the last of two equal keys: the first optim section (its lr) was dropped
    without a word."""
    config = tmp_path / "twice.yaml"
    config.write_text("optim:\n  lr: 3.0e-4\nseed: 1\noptim:\n  name: adamw\n")
    assert main(["train", "--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"config {config}: line 4, column 1: key 'optim' is given twice" in err
    assert "(first on line 1)" in err and "merge them" in err
    config.write_text("data:\n  root: /a\n  masks: sam\n  root: /b\n")
    with pytest.raises(UsageError, match="line 4, column 3: key 'root' is given twice"):
        load_config(str(config))
    # the same key in two sections, and a YAML merge overriding a key, are fine
    config.write_text("stage1: {n_jitters: 3}\nstage2: &s {n_jitters: 3}\n")
    assert load_config(str(config)).stage2.n_jitters == 3
    config.write_text("x: &r {weight: 2.0, blur: 3}\nrecon:\n  <<: *r\n  blur: 1\n")
    with pytest.raises(UsageError, match="unknown config key x;"):  # the anchor's holder
        load_config(str(config))
    assert parse_overrides(["recon={<<: {weight: 2.0, blur: 3}, blur: 1}"]) == {
        "recon": {"weight": 2.0, "blur": 1}
    }


@pytest.mark.parametrize(
    "override, hint",
    [
        ("lr=1e-3", "; did you mean optim.lr?"),  # a key of a section, given at the top
        ("data.lr=1e-3", "; did you mean optim.lr?"),  # in the wrong section
        ("optim.lrr=1e-3", "; did you mean optim.lr?"),  # a typo
        ("model.dept=1", "; did you mean model.depth?"),
        ("n_jitters=3", "; did you mean stage1.n_jitters or stage2.n_jitters?"),
    ],
)
def test_an_unknown_key_names_the_key_meant(override, hint):
    with pytest.raises(UsageError) as e:
        load_config({}, [override])
    key = override.split("=")[0]
    assert str(e.value).startswith(f"unknown config key {key}; known keys here: ")
    assert str(e.value).endswith(hint)


@pytest.mark.parametrize(
    "override, message",
    [
        # a key below a value: it said "optim.lr must be float, got {'x': 1}"
        ("optim.lr.x=1", "config key optim.lr is a float value, not a section: there is no "
         "key optim.lr.x; set optim.lr=... itself"),
        ("stage2.global_sizes.a.b=1", "config key stage2.global_sizes is a list value, not a "
         "section: there is no key stage2.global_sizes.a.b; set stage2.global_sizes=... itself"),
        # an empty part of the key: each said "has no key before '='"
        ("optim..lr=1", "override 'optim..lr=1' has two dots together in its key optim..lr "
         "(e.g. optim.lr=3e-4)"),
        (".lr=1", "override '.lr=1' has a dot at the start of its key .lr (e.g. optim.lr=3e-4)"),
        ("optim.=1", "override 'optim.=1' has a dot at the end of its key optim. "
         "(e.g. optim.lr=3e-4)"),
        (" =1", "override ' =1' has no key before '=' (e.g. optim.lr=3e-4)"),
        # a mapping where a value goes, as a list item or empty, is still a wrong type
        ("stage2.global_sizes=[{a: 1}]", "config key stage2.global_sizes must be int, got "
         "{'a': 1}"),
        ("optim.lr={}", "config key optim.lr must be float, got {}"),
    ],
)  # fmt: skip
def test_a_malformed_dotted_key_says_what_is_wrong_with_it(override, message):
    with pytest.raises(UsageError) as e:
        load_config({}, [override])
    assert str(e.value) == message


def test_a_key_below_a_value_in_a_file_or_after_the_value_is_named_alike(tmp_path):
    """optim.lr=1 optim.lr.x=2 said "an earlier override set optim.lr to 1, but it is a
    section": optim.lr is none; a real section set to a value is still told so."""
    said = r"^config key optim.lr is a float value, not a section: there is no key optim.lr.x"
    config = tmp_path / "nested.yaml"
    config.write_text("optim:\n  lr:\n    x: {y: 1}\n")
    with pytest.raises(UsageError, match=said + r".y; set optim.lr=\.\.\. itself$"):
        load_config(str(config))
    with pytest.raises(UsageError, match=said + r"; set optim.lr=\.\.\. itself$"):
        load_config({}, ["optim.lr=1", "optim.lr.x=2"])
    with pytest.raises(UsageError, match=r"^unknown config key foo; "):
        load_config({}, ["foo=1", "foo.bar=2"])
    with pytest.raises(UsageError, match=r"earlier override set optim to 1, but it is a section"):
        load_config({}, ["optim=1", "optim.lr=2"])


def test_an_unknown_key_like_none_gets_no_guess():
    with pytest.raises(UsageError) as e:
        load_config({}, ["optim.zzz=1"])
    assert str(e.value).endswith("known keys here: name, lr, weight_decay, clip_grad_norm, "
                                 "clip_steps, momentum")  # fmt: skip


def test_whole_numbers_in_exponent_form_are_integers(tmp_path):
    """PyYAML reads 1e5 (no dot) as a string and 1.0e+3 as a float: an integer key refused
    both ("must be int, got '1e5'"), though each is a whole number."""
    config = tmp_path / "big.yaml"
    config.write_text(
        "max_steps: 1e5\nlog:\n  ckpt_every: 1.0e+3\nstage2:\n  global_sizes: [2.24e2]\n"
    )
    cfg = load_config(str(config))
    assert (cfg.max_steps, cfg.log.ckpt_every, cfg.stage2.global_sizes) == (100000, 1000, [224])
    assert type(cfg.max_steps) is int and type(cfg.log.ckpt_every) is int
    assert load_config({}, ["batch_size='4'"]).batch_size == 4  # quoted, as floats are taken
    for bad in ("2.5", "1.5e0", "1e400", ".nan", "four"):
        with pytest.raises(UsageError, match="config key batch_size must be int, got"):
            load_config({}, [f"batch_size={bad}"])
    huge = "1" + "0" * 400  # an int float() cannot hold: OverflowError's traceback before
    with pytest.raises(UsageError, match="optim.lr must be a finite number, got an integer of 401"):
        load_config({}, [f"optim.lr={huge}"])


@pytest.mark.parametrize(
    "override, words",
    [
        ("log.out_dir=2024", "log.out_dir must be str, got 2024: YAML read the value as a number"),
        ("device=off", "device must be str, got False: YAML read the value as true/false"),
    ],
)
def test_a_word_yaml_reads_as_a_number_or_boolean_says_to_quote_it(override, words):
    with pytest.raises(UsageError, match=words) as e:
        load_config({}, [override])
    assert str(e.value).endswith(
        "; quote it (" + override.split("=")[0] + "=\"'...'\" on a command line)"
    )
    assert load_config({}, [override.replace("=", "='", 1) + "'"]).to_dict()  # quoted: taken


def test_null_says_what_yaml_reads_as_null(tmp_path):
    with pytest.raises(UsageError) as e:
        load_config({}, ["log.out_dir=~"])  # a bare ~ is YAML's null, not the home folder
    assert str(e.value) == (
        "config key log.out_dir cannot be null (YAML's empty value, null or ~); quote a ~ meant "
        "as the home folder: '~'"
    )
    config = tmp_path / "empty.yaml"
    config.write_text("batch_size:\n")
    with pytest.raises(
        UsageError, match=r"batch_size cannot be null \(YAML's empty value, null or ~\)$"
    ):
        load_config(str(config))


def test_a_comment_in_an_override_is_refused_not_dropped():
    """``data.root=/data/set #2`` was read as /data/set (YAML drops `` #2`` as a comment)."""
    for pair in ("data.root=/data/set #2", "seed=#1", "data.superpixels=[8, 16] # fine"):
        with pytest.raises(UsageError, match="for a comment, which would be dropped") as e:
            parse_overrides([pair])
        assert str(e.value).startswith(f"override {pair!r}: ")
    with pytest.raises(UsageError, match="data.root=\"'/data/set #2'\""):
        parse_overrides(["data.root=/data/set #2"])
    assert parse_overrides(["data.root='/data/set #2'"]) == {"data": {"root": "/data/set #2"}}
    assert parse_overrides(["data.root=/data/set#2"]) == {"data": {"root": "/data/set#2"}}


def test_a_utf8_config_reads_the_same_whatever_the_locale(tmp_path):
    """Read in the locale's encoding, a config with a non-ASCII comment or path was refused
    as "not a text (YAML) file" under an ASCII locale (and misread under Latin-1)."""
    config = tmp_path / "utf8.yaml"
    config.write_bytes("# recipe of §2, café\nlog:\n  out_dir: runs/café\n".encode())
    was = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale (POSIX's)
    try:
        assert load_config(str(config)).log.out_dir == "runs/café"
    finally:
        locale.setlocale(locale.LC_CTYPE, was)
    config.write_bytes(b"log:\n  out_dir: runs/caf\xe9\n")  # Latin-1: named, not misread
    with pytest.raises(UsageError, match="byte 0xe9 at offset 24 is not UTF-8; save it as UTF-8"):
        load_config(str(config))


def test_an_unreadable_config_is_one_line():
    """A read that fails (an I/O error) ended in a traceback; one this user may not read:
    test_a_config_this_user_may_not_read_says_the_fix, one in a folder this user may not
    search: tests/test_unsearchable_listings.py."""
    if not os.path.isfile("/proc/self/mem"):  # Linux: a file whose read fails (as root too)
        pytest.skip("no /proc/self/mem: Linux's file whose read fails")
    with pytest.raises(UsageError, match="^config /proc/self/mem cannot be read: Input/output"):
        load_config("/proc/self/mem")


@pytest.mark.parametrize("whose", WHOSE)
def test_a_config_this_user_may_not_read_says_the_fix(tmp_path, whose):
    """`loftup train --config X.yaml` of mode 000 (or another user's of 600) said "config
    X.yaml cannot be read: Permission denied", no fix: its mode and the fix now, one line."""
    config = tmp_path / "c.yaml"
    config.write_text("seed: 1\n")
    owner = refuse(config, whose)
    said = where_modes_apply(f"""
import contextlib, io
from loftup.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["train", "--config", {str(config)!r}])
result = [code, err.getvalue().strip()]
""")
    assert said[0] == 2 and "\n" not in said[1], said
    assert said[1].startswith(f"error: cannot read config {config}: permission denied (mode ")
    fix = f"chmod u+r {config}" if owner is None else f"(chmod o+r {config}), or run as {owner}"
    assert said[1].endswith(fix), said[1]


def test_a_stage_argument_other_than_1_or_2_is_one_line():
    """load_config(stage="two") ended in int()'s ValueError traceback."""
    for bad in ("two", 3, True):
        with pytest.raises(UsageError, match=f"^stage must be 1 or 2, got {bad!r}$"):
            load_config({}, stage=bad)


def test_a_quoted_stage_is_read_as_integer_keys_are(tmp_path):
    """``stage: "2"`` was refused ("must be 1 or 2, got '2'") while every integer key took a
    quoted whole number; it is read alike, stage 2's defaults and --stage's check included."""
    config = tmp_path / "s2.yaml"
    config.write_text('stage: "2"\ninit: run/checkpoint.pt\nbatch_size: "4"\n')
    cfg = load_config(str(config), stage=2)
    assert (cfg.stage, cfg.batch_size, cfg.optim.name) == (2, 4, "adamw")  # stage 2's recipe
    assert type(cfg.stage) is int
    assert load_config({}, ["stage=1.0e0"]).stage == 1
    with pytest.raises(UsageError, match=r"^--stage 1 disagrees with the config's stage: 2; "):
        load_config(str(config), stage=1)
    for bad in ("'3'", "2.5", "'2.5'", "true", "''"):
        with pytest.raises(UsageError, match=r"^config key stage must be 1 or 2, got "):
            load_config({}, [f"stage={bad}"])


def _config_beside(tmp_path, text: str):
    """``text`` as tmp_path/configs/run.yaml, beside an images folder, a run folder and a
    stage-1 checkpoint; the current folder another, holding none of them."""
    configs = tmp_path / "configs"
    (configs / "images").mkdir(parents=True)
    (configs / "runs" / "s1").mkdir(parents=True)
    (configs / "runs" / "s1" / "checkpoint.pt").write_bytes(b"")
    (configs / "run.yaml").write_text(text)
    (tmp_path / "elsewhere").mkdir()
    return configs / "run.yaml"


def test_a_relative_path_found_beside_the_config_file_only_is_warned_about(tmp_path, monkeypatch):
    """Relative paths in a config file are read from the current folder (as Hydra reads them,
    and as users of the packaged configs rely on); one that exists beside the file instead
    failed as "does not exist" with no word of why. A warning names both places and the fix."""
    config = _config_beside(
        tmp_path, "stage: 2\ninit: runs/s1/checkpoint.pt\ndata:\n  root: images\n"
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.warns(UserWarning) as told:
        cfg = load_config(str(config))
    assert (cfg.data.root, cfg.init) == ("images", "runs/s1/checkpoint.pt")  # as before
    messages = [str(w.message) for w in told]
    assert len(messages) == 2, messages
    here, beside = tmp_path / "elsewhere", (tmp_path / "configs").resolve()
    assert messages[1] == (
        f"config key init: runs/s1/checkpoint.pt does not exist in the current folder, {here} "
        "(relative paths in a config file are read from the current folder); it exists "
        f"relative to the config file, as {beside / 'runs/s1/checkpoint.pt'}: write that path "
        f"in run.yaml, or run from {beside}"
    )
    assert messages[0].startswith("config key data.root: images does not exist in the current")
    # a folder the run writes: it goes to the current folder, and is said to
    config.write_text("log:\n  out_dir: runs/s1\n")
    with pytest.warns(UserWarning, match=rf"^config key log.out_dir: runs/s1 is written in the "
                      rf"current folder, {here / 'runs/s1'}, where"):  # fmt: skip
        load_config(str(config))


def test_no_relative_path_warning_where_the_path_is_read_as_meant(tmp_path, monkeypatch):
    """Found from the current folder, absolute, replaced by an override, a name (a released
    upsampler, a hub repo), or missing beside the config too: nothing to say."""
    import warnings

    config = _config_beside(tmp_path, "data:\n  root: images\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(str(config), ["data.root=/data/x"])
        (tmp_path / "elsewhere" / "images").mkdir()
        load_config(str(config))
        root = tmp_path / "configs" / "images"
        config.write_text(f"data:\n  root: {root}\n  cache_dir: no_such\n")
        load_config(str(config))
        (tmp_path / "configs" / "loftup_dinov2s").mkdir()
        (tmp_path / "configs" / "org" / "repo").mkdir(parents=True)
        config.write_text("stage: 2\ninit: loftup_dinov2s\nbackbone_weights: org/repo\n")
        load_config(str(config))
        load_config({"data": {"root": "images"}})  # no file: nothing to be relative to
        config.write_text("data:\n  root: images\n")
        (tmp_path / "elsewhere" / "images").rmdir()
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")  # under torchrun: rank 0 says it
        load_config(str(config))
    for world in ("2", "1"):  # rank 0 of two; a process alone, whatever its RANK
        monkeypatch.setenv("RANK", "0" if world == "2" else "1")
        monkeypatch.setenv("WORLD_SIZE", world)
        with pytest.warns(UserWarning, match="^config key data.root: images does not exist"):
            load_config(str(config))


def test_the_path_keys_looked_at_are_the_config_keys_that_name_files():
    """Every key the relative-path warning reads is a config key (a renamed key would
    silently leave the check), and every key of a str path the schema has is among them."""
    from loftup.train.config.paths import PATH_KEYS
    from loftup.train.config.schema import TrainConfig
    from loftup.train.config.typed import _dotted_keys

    keys = _dotted_keys(TrainConfig)
    assert set(PATH_KEYS) <= set(keys)
    named = {k for k in keys if k.endswith(("root", "dir", "weights")) or k == "init"}
    assert named == set(PATH_KEYS)


def test_a_section_left_empty_in_a_file_sets_nothing(tmp_path):
    """``data:`` with every key under it commented out is null to YAML: it was refused as
    'a section must be a mapping', though it plainly sets nothing. An override's null is still
    refused (test_train_config), said on purpose."""
    config = tmp_path / "c.yaml"
    config.write_text("stage: 1\ndata:\n  # root: /data/sa1b\nlog:\nbatch_size: 2\n")
    cfg = load_config(str(config))
    assert cfg.data.root == "" and cfg.log.out_dir == "runs/loftup" and cfg.batch_size == 2
    with pytest.raises(UsageError, match="config key data is a section and must be a mapping"):
        load_config(str(config), ["data=null"])


def test_a_list_written_without_brackets_says_how_to_write_it():
    with pytest.raises(UsageError) as e:
        load_config(None, ["data.superpixels=16,64"])
    assert str(e.value) == (
        "config key data.superpixels must be a list, got '16,64'; write it in brackets, "
        "data.superpixels=[16,64] (in a file, or a '- item' line each)"
    )
    with pytest.raises(UsageError, match=r"got 1.0; write it in brackets, recon.zoom=\[a, b\]"):
        load_config(None, ["recon.zoom=1.0"])


def test_a_folder_named_by_a_date_is_read_as_written(tmp_path):
    """YAML 1.1 reads 2024-01-01 as a date, which a path key then refused ('must be str, got
    datetime.date(2024, 1, 1)'); no config key is a date."""
    assert load_config(None, ["log.out_dir=2024-01-01"]).log.out_dir == "2024-01-01"
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  root: 2024-01-01T10:00:00\n")
    assert load_config(str(config)).data.root == "2024-01-01T10:00:00"
