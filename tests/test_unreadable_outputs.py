"""A record loftup wrote in a folder the user chose (``loftup upsample``'s upsample.json in -o,
an experiment's results.json and its run folders' config.yaml and run.json, a demo's
demo.json, a training's run.json), that this user may not read, offers another folder beside
the chmod: "; or choose another -o" (--out), as a world's world.json did alone; the other
readers said the chmod alone, though the folder is the user's own choice. A file the user
gave as an input (a world folder to read) is not theirs to swap for another folder: the
chmod alone. Run where modes apply (tests/file_modes.py), each for a file of this user's own
(mode 000) and, as root only, of another user's (``whose``)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from file_modes import WHOSE, commands, refuse, where_modes_apply

whose_files = pytest.mark.parametrize("whose", WHOSE)

_RECORD = '{"loftup_version": "0.1", "started": "2026-01-01T00:00:00+00:00"}\n'


def _chmod_then(said: str, path, owner: str | None, fix: str) -> None:
    """``said`` names ``path`` as refused by its mode, its chmod, then ``fix`` last."""
    assert "\n" not in said and f"{path}: permission denied (mode " in said, said
    chmod = "u+r" if owner is None else "o+r"
    assert f"chmod {chmod} {path}" in said, said
    assert said.endswith(f"; or choose another {fix}"), said


@whose_files
def test_a_command_s_own_record_it_may_not_read_offers_another_out(tmp_path, whose):
    """`loftup upsample IMG -o OUT` over OUT/upsample.json, `loftup experiment coords --out
    OUT` over OUT/results.json and `loftup demo --out OUT --resume` over OUT/demo.json, each
    of mode 000 (or another user's): the chmod, and another -o / --out; nothing written over."""
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (16, 16)).save(image)
    outs = {name: tmp_path / name for name in ("upsample", "experiment", "demo")}
    files = {
        "upsample": outs["upsample"] / "upsample.json",
        "experiment": outs["experiment"] / "results.json",
        "demo": outs["demo"] / "demo.json",
    }
    for path in files.values():
        path.parent.mkdir()
        path.write_text(_RECORD)
    owner = [refuse(path, whose) for path in files.values()][0]
    cases = {
        "upsample": ["upsample", str(image), "-o", str(outs["upsample"])],
        "experiment": ["experiment", "coords", "--quick", "--out", str(outs["experiment"])],
        "demo": ["demo", "--out", str(outs["demo"]), "--resume"],
    }
    said = where_modes_apply(commands(cases))
    fixes = {name: said[name][1].rsplit("; ", 1)[-1] for name in files}  # each one's last fix
    assert fixes == {"upsample": "or choose another -o"} | {
        name: "or choose another --out" for name in ("experiment", "demo")
    }
    for name, path in files.items():
        code, err = said[name]
        assert code != 0 and err.startswith(f"error: cannot read record {path}: "), err
        _chmod_then(err, path, owner, "-o" if name == "upsample" else "--out")
        if whose == "own":  # (as root, this test reads another user's file)
            path.chmod(0o600)
        assert path.read_text() == _RECORD  # kept, not written over
        assert sorted(p.name for p in outs[name].iterdir()) == [path.name]


@whose_files
def test_a_run_folder_s_records_it_may_not_read_offer_another_out(tmp_path, whose):
    """An experiment's run folder (its config.yaml, its run.json's starts) and a resumed
    training's run.json: the chmod, and another --out (the training's as its config names it,
    log.out_dir)."""
    files = {
        "run config": tmp_path / "config" / "config.yaml",
        "starts": tmp_path / "starts" / "run.json",
        "train": tmp_path / "train" / "run.json",
    }
    for path in files.values():
        path.parent.mkdir()
        path.write_text(_RECORD)
    owner = [refuse(path, whose) for path in files.values()][0]
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.experiments.folder_files import _saved_config
from loftup.experiments.run_starts import _starts
from loftup.train.earlier import read_earlier
files = {{k: Path(v) for k, v in { ({k: str(v) for k, v in files.items()})!r}.items()}}
result = {{
    "run config": told(lambda: _saved_config(files["run config"].parent)),
    "starts": told(lambda: _starts(files["starts"].parent)),
    "train": told(lambda: read_earlier(files["train"].parent, 3)),
}}
""")
    fixes = {name: said[name].rsplit("; ", 1)[-1] for name in files}  # each one's last fix
    assert fixes == {"run config": "or choose another --out", "starts": "or choose another --out",
                     "train": "or choose another --out (log.out_dir)"}  # fmt: skip
    what = {"run config": "run config", "starts": "record", "train": "record"}
    for name, path in files.items():
        assert said[name].startswith(f"PathPermissionError: cannot read {what[name]} {path}: ")
        _chmod_then(said[name], path, owner, "--out (log.out_dir)" if name == "train" else "--out")


def test_an_input_it_may_not_read_is_told_the_chmod_alone(tmp_path):
    """A world folder given to read (its world.json of mode 000) is the user's input, not an
    output folder they chose: another --out would mend nothing, and is not offered; the same
    file refused where `loftup world scenes --out` writes the world again offers it. An
    experiment's --data world (hashed for its inputs.json) said "W/world.json: Permission
    denied" alone; a weights file given to load (torch_load, check_torch_file) the same."""
    import torch

    from loftup.data.scene_files import write_scenes
    from loftup.data.scenes import SceneConfig

    root = write_scenes(tmp_path / "world", SceneConfig(height=16, width=16), 1, progress=False)
    refuse(root / "world.json", "own")
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, weights)
    refuse(weights, "own")
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.data.scene_files import read_world
from loftup.data.world_record import read_record
from loftup.experiments.data import run_inputs
from loftup.hub.files import check_torch_file, torch_load
root, weights = Path({str(root)!r}), Path({str(weights)!r})
result = [told(lambda: read_world(root)), told(lambda: read_record(root)),
          told(lambda: run_inputs({{"sha256": None}}, root, "sa1b")),
          told(lambda: torch_load(weights, fix="x")), told(lambda: check_torch_file(weights, fix="x"))]
""")
    path = root / "world.json"
    for input_said in said[0], said[2]:
        assert input_said.startswith(f"PathPermissionError: cannot read world record {path}: ")
        assert input_said.endswith(f"chmod u+r {path}") and "another" not in input_said, said
    _chmod_then(said[1], path, None, "--out")
    for weights_said in said[3:]:
        assert weights_said.startswith(f"PathPermissionError: cannot read weights file {weights}")
        assert weights_said.endswith(f"chmod u+r {weights}"), weights_said
    path.chmod(0o600)
    assert json.loads(path.read_text())["images"]  # kept


def test_a_scene_file_of_the_command_s_own_world_offers_another_out(tmp_path):
    """The held-out scenes a demo or an experiment wrote under its --out (OUT/scenes/val): a
    scene file there of mode 000 offered the chmod alone, where world.json in the same folder
    offered another --out too; a world given to read (--eval-root) keeps the chmod alone."""
    from loftup.data.scene_files import read_world, write_scenes
    from loftup.data.scenes import SceneConfig

    root = write_scenes(tmp_path / "val", SceneConfig(height=16, width=16), 2, progress=False)
    image = root / "sa1b" / f"{read_world(root).names[0]}.jpg"
    refuse(image, "own")
    said = where_modes_apply(f"""
from pathlib import Path
from file_modes import told
from loftup.world.heldout import load_val
root = Path({str(root)!r})
result = [told(lambda: load_val(root, "--out")), told(lambda: load_val(root))]
""")
    assert said[0].startswith(f"PathPermissionError: cannot read scene file {image}: "), said
    _chmod_then(said[0], image, None, "--out")
    assert said[1].endswith(f"chmod u+r {image}") and "another" not in said[1], said
