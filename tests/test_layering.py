"""A module knows the modules to its left, never to its right (the house style): the parts
under everything else (the data, the hub, the backbones and the small shared helpers) import
nothing of what is built on them. Read from the source, so an import inside a function counts
too: data/ once imported loftup.eval to check an --out folder."""

from __future__ import annotations

import ast
from pathlib import Path

import loftup
from processes import run_python

PACKAGE = Path(loftup.__file__).parent

#: What the lower parts are used by, and so must not use.
UPPER = {"api", "pipeline", "eval", "train", "world", "experiments", "extract", "cli", "bench"}
LOWER = [
    "data",
    "hub",
    "featurizers",
    "paths.py",
    "read_refusal.py",
    "checks.py",
    "atomic.py",
    "file_lock.py",
    "errors.py",
    "ranks.py",
    "words.py",
]


def imported_parts(path: Path, package: Path = PACKAGE) -> set[str]:
    """The top-level parts of loftup that the file imports (``from ..eval.x import y``:
    eval), at module level or inside a function; ``package``: the folder of loftup."""
    inside = path.relative_to(package).parts[:-1]  # the packages the file lies in
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(inside[: len(inside) - node.level + 1])
            names = node.module.split(".") if node.module else [a.name for a in node.names]
            parts.add((base + names)[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loftup."):
            parts.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            parts |= {a.name.split(".")[1] for a in node.names if a.name.startswith("loftup.")}
    return parts


def test_the_lower_parts_import_nothing_built_on_them():
    wrong = {}
    for part in LOWER:
        files = [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).rglob("*.py"))
        assert files and all(f.is_file() for f in files), part
        for f in files:
            used = imported_parts(f) & UPPER
            if used:
                wrong[str(f.relative_to(PACKAGE))] = sorted(used)
    assert not wrong, f"these import a part built on them: {wrong}"


def test_the_reader_of_imports_sees_every_form(tmp_path):
    """The check above would pass without a word if the reader missed a form of import."""
    folder = tmp_path / "data"
    folder.mkdir()
    f = folder / "x.py"
    f.write_text(
        "from ..eval.pipeline import a\n"
        "def g():\n"
        "    from .. import train\n"
        "    import loftup.world.demo\n"
        "    from loftup.cli import main\n"
        "from .images import b\n"
    )
    assert imported_parts(f, tmp_path) == {"eval", "train", "world", "cli", "data"}


def test_every_submodule_is_reached_from_the_package():
    """`loftup.X` works after a bare `import loftup` for every module and folder of the
    package (modules split out of others were missing from the lazy list: loftup.cpu failed)."""
    root = Path(loftup.__file__).parent
    names = {p.stem for p in root.glob("*.py") if not p.stem.startswith("_")}
    names |= {p.parent.name for p in root.glob("*/__init__.py")}
    names.add("weights")  # a folder of files, offered as loftup.weights
    assert names == set(loftup._SUBMODULES)
    for name in ("cpu", "paths", "tile_plan"):
        assert getattr(loftup, name).__name__ == f"loftup.{name}"


def test_dir_lists_the_names_imported_on_first_use():
    """dir(loftup), which tab completion reads, lacked upsample, load_pipeline and every other
    name imported on first use, and the submodules reached as attributes."""
    names = dir(loftup)
    assert names == sorted(set(names))
    assert {*loftup._LAZY, *loftup._SUBMODULES, "__version__", "LoftUpError"} <= set(names)


#: Names moved out of a module when it was split by idea: old module -> (new module, names).
MOVED = {
    "loftup.extract.writers": (
        "loftup.extract.run_entries",
        ("this_run", "entry", "entry_id", "alive", "_seen_from", "_started", "_state"),
    ),
    "loftup.featurizers.hf": (
        "loftup.featurizers.hf_weights",
        ("CONFIG_FILE", "WEIGHTS_FILE", "HUB_FILES", "resolve_weights", "find_weights", "download")
        + ("read_config", "check_model_type"),
    ),
    "loftup.hub.remote": ("loftup.hub.damaged", ("damage", "damaged_in_cache")),
    "loftup.io": ("loftup.image_input", ("to_tensor", "ImageInputError", "PIXEL_MAX")),
    "loftup.train.config.loading": ("loftup.train.config.typed", ("build",)),
    "loftup.data.dataset": ("loftup.data.folders", ("data_folder", "drawn_by_a_run")),
    "loftup.data.scene_files": (
        "loftup.data.scene_codec",
        ("encode_jpeg", "decode_jpeg", "encode_labels", "JPEG_QUALITY"),
    ),
    "loftup.fastpath": (
        "loftup.fast_stem",
        ("Pads", "axis_features", "conv3x3_relu", "encode_region", "mean_pad", "stem"),
    ),
    "loftup.compiled": ("loftup.graphs", ("graph_upsampler", "GraphUpsampler", "GraphOrderError")),
    "loftup.paths": ("loftup.read_refusal", ("read_refused",)),
    "loftup.hub.files": ("loftup.hub.shards", ("INDEX_SUFFIX", "shard_names")),
    "loftup.experiments.runs": (
        "loftup.experiments.configs",
        ("Variant", "stage_configs", "check_configs", "folder_name", "base_overrides", "PER_RUN"),
    ),
    "loftup.train.stopping": (
        "loftup.train.stop_lines",
        ("NAMES", "STOP_NOTE", "GO_ON", "stop_line", "complete_line", "write_stop_note")
        + ("clear_stop_note",),
    ),
    "loftup.convert": (
        "loftup.key_layouts",
        ("native_to_reference", "reference_to_native", "training_to_reference"),
    ),
    "loftup.train.loop": ("loftup.train.result", ("TrainResult",)),
    "loftup.extract.record": (
        "loftup.extract.output_files",
        ("outputs_of", "recorded_outputs", "without_own_pictures", "check_clobbering"),
    ),
    "loftup.pipeline_checks": (
        "loftup.pipeline_placement",
        ("on_meta", "refuse_meta", "placement", "Placements", "check_placement", "check_meta"),
    ),
    "loftup.pipeline": ("loftup.pipeline_checks", ("checked_options",)),
}
#: Modules split twice: old module -> (the second new module, names).
MOVED_AGAIN = {
    "loftup.hub.remote": ("loftup.hub.commits", ("hub_folder", "hub_folder_beside")),
    "loftup.data.scene_files": (
        "loftup.data.world_record",
        ("FORMAT", "PARTIAL", "check_scene_range", "check_world"),
    ),
    "loftup.featurizers.hf": (
        "loftup.featurizers.hf_loading",
        ("load_strict", "quiet_transformers"),
    ),
    "loftup.compiled": ("loftup.untiled", ("untiled", "untiled_queries", "untiled_decode")),
    "loftup.train.stopping": ("loftup.train.stop_signals", ("HungUp", "signal_of", "PRECEDENCE")),
}
#: Modules split a third time: old module -> (the third new module, names).
MOVED_THIRD = {
    "loftup.hub.remote": (
        "loftup.hub.released",
        ("cached_path", "download", "released_file", "released_table"),
    ),
}


def test_names_moved_in_a_split_are_still_found_where_they_were():
    """`from loftup.featurizers.hf import download` (the tests, the bench, the pipeline and
    the backbone families import from there) finds the very object of its new module."""
    import importlib

    for old_name, (new_name, names) in [*MOVED.items(), *MOVED_AGAIN.items(), *MOVED_THIRD.items()]:
        old, new = importlib.import_module(old_name), importlib.import_module(new_name)
        for name in names:
            assert getattr(old, name) is vars(new)[name], f"{old_name}.{name}"


def test_names_moved_out_of_hub_remote_are_its_globals():
    """hub.remote gave its names moved to hub.released through a module __getattr__: dir()
    and a star import left them out, type checkers did not see them."""
    from loftup.hub import released, remote

    star: dict = {}
    exec("from loftup.hub.remote import *", star)
    for name in MOVED_THIRD["loftup.hub.remote"][1]:
        assert name in dir(remote) and star[name] is vars(released)[name], name


def test_subpackages_are_attributes_of_loftup_imported_on_first_use():
    """`import loftup` then `loftup.io.load_image_tensor` (as the README writes it) works, and
    the heavy parts (transformers, evaluation, training) are not imported until used."""
    code = (
        "import sys, loftup\n"
        "heavy = [m for m in ('transformers', 'loftup.eval', 'loftup.train') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(loftup.io.load_image_tensor) and callable(loftup.eval.miou)\n"
        "assert 'loftup.eval' in sys.modules and callable(loftup.train.load_config)\n"
        "try:\n"
        "    loftup.nothere\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "module 'loftup' has no attribute 'nothere'"
