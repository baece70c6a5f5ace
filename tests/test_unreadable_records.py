"""Records (JSON files a run wrote: a world's world.json, a run's run.json, upsample.json, an
experiment's init.json) that this user may not read: read_json_object said "PATH cannot be
read ([Errno 13] ...)", a BrokenFileError, which each caller took for a damaged record and
said "delete it", "choose another --out or delete that folder", or wrote over it (a resumed
training's run.json). It is a PathPermissionError with the fix now, no ValueError, and the
record is kept. Run where modes apply (tests/file_modes.py), each for a file of this user's own
(mode 000) and, as root only, of another user's (``whose``)."""

from __future__ import annotations

import pytest

from file_modes import WHOSE, refuse, where_modes_apply

whose_files = pytest.mark.parametrize("whose", WHOSE)


def _refused_with_the_fix(said: str, path, owner: str | None, what: str = "record") -> None:
    """``said`` is read_json_object's PathPermissionError for ``path`` (``what`` it is) with
    its fix."""
    assert said.startswith(f"PathPermissionError: cannot read {what} {path}: permission denied")
    chmod = "u+r" if owner is None else "o+r"
    assert f"chmod {chmod} {path}" in said, said
    assert "delete" not in said and "move the file away" not in said, said


def _now_holds(path, whose: str) -> bytes:
    """What ``path`` holds now, read by this test: a file of its own (mode 000, which a plain
    user may not read) made readable first."""
    if whose == "own":
        path.chmod(0o600)
    return path.read_bytes()


@whose_files
def test_a_record_this_user_may_not_read_is_not_taken_for_a_damaged_one(tmp_path, whose):
    """A resumed training's run.json was warned of as lost and written over with this start
    alone (nor is config.yaml written before the refusal); upsample's upsample.json was
    "move the file away", an experiment's init.json "choose another --out or delete that
    folder"; read_json_object's error was a ValueError, the callers' sign of a damaged file."""
    files = {name: tmp_path / name / record for name, record in (
        ("train", "run.json"), ("upsample", "upsample.json"), ("experiment", "init.json"))}  # fmt: skip
    for path in files.values():
        path.parent.mkdir()
        path.write_text('{"loftup_version": "0.1", "started": "2026-01-01T00:00:00+00:00"}\n')
    kept = {name: path.read_bytes() for name, path in files.items()}
    owner = [refuse(path, whose) for path in files.values()][0]
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.atomic import read_json_object
from loftup.experiments.run_folders import _read
from loftup.cli.upsample import SAID_AS as CLI
from loftup.extract.record import read_record
from loftup.train.earlier import read_earlier
files = {{k: Path(v) for k, v in { ({k: str(v) for k, v in files.items()})!r}.items()}}
def kind():
    try:
        read_json_object(files["train"])
    except Exception as e:
        return [type(e).__name__, isinstance(e, ValueError)]
result = {{
    "kind": kind(),
    "train": told(lambda: read_earlier(files["train"].parent, 3)),
    "upsample": told(lambda: read_record(files["upsample"].parent, resume=True, said_as=CLI)),
    "experiment": told(lambda: _read(files["experiment"])),
}}
""")
    assert said.pop("kind") == ["PathPermissionError", False]  # no ValueError: no damaged file
    # under --resume, said as the option it follows from (as upsample's other refusals are)
    flagged = "PathPermissionError: --resume: cannot read record "
    assert said["upsample"].startswith(flagged), said["upsample"]
    said["upsample"] = said["upsample"].replace("--resume: ", "", 1)
    for name, path in files.items():  # an experiment's records are its run folders'
        _refused_with_the_fix(
            said[name], path, owner, "run record" if name == "experiment" else "record"
        )
        out = {"upsample": "-o", "train": "--out (log.out_dir)"}.get(name, "--out")
        assert said[name].endswith(f"; or choose another {out}"), said[name]  # the folder's
        assert _now_holds(path, whose) == kept[name]  # not written over
    assert not (tmp_path / "train" / "config.yaml").exists()


def _world(root):
    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig

    return write_scenes(root, SceneConfig(height=16, width=16), 1, progress=False)


def test_a_damaged_world_record_is_named_not_the_partial_one_never_read(tmp_path):
    """world.json damaged (readable) and world.partial.json of mode 000: writing the world
    again (read_record) named the partial record, which it reads only where world.json is
    missing, with "chmod u+r"; world.json is the one to fix. With world.json missing, the
    partial one is named."""
    damaged, partial = tmp_path / "damaged", tmp_path / "partial"
    for root in (damaged, partial):
        root.mkdir()
        (root / "world.partial.json").write_text("{}")
        refuse(root / "world.partial.json", "own")
    (damaged / "world.json").write_text("{broken")
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.data.world_record import read_record
result = [told(lambda: read_record(Path(root))) for root in {[str(damaged), str(partial)]!r}]
""")
    assert said[0].startswith(f"UsageError: {damaged}/world.json cannot be read (Expecting ")
    assert said[0].endswith("; choose another --out or delete it"), said[0]
    assert said[1].startswith(
        f"PathPermissionError: cannot read world record {partial}/world.partial.json: "
    )


@whose_files
def test_writing_a_world_again_over_a_record_this_user_may_not_read_offers_another_out(
    tmp_path, whose
):
    """`loftup world scenes --out OUT` with OUT/world.json that this user may not read gave
    the chmod alone; the folder is theirs, and another --out is a way out too. Nothing is
    written over."""
    out = _world(tmp_path / "world")
    kept = (out / "world.json").read_bytes()
    owner = refuse(out / "world.json", whose)
    said = where_modes_apply(f"""
import contextlib, io
from loftup.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["world", "scenes", "--out", {str(out)!r}, "--count", "3"])
result = [code, err.getvalue().strip()]
""")
    code, err = said
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"error: cannot read world record {out}/world.json: permission denied")
    chmod = "u+r" if owner is None else "o+r"
    assert f"chmod {chmod} {out}/world.json" in err and err.endswith("; or choose another --out")
    assert _now_holds(out / "world.json", whose) == kept
