"""Whether an experiment's run folder may be reused or gone on with: the same config as the
run asks for (:func:`_check_same`, paths compared as the files they name), the same backbone
weights and training data (:func:`_check_inputs`, its ``inputs.json``), and for a stage-2
folder the same stage-1 run to start from (:func:`_check_init_steps` before stage 1,
:func:`_check_init_run` after it, its ``init.json``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoftUpError
from ..train.checkpoint import has_checkpoint
from .folder_files import (  # noqa: F401  (RunRefused, _read: importable from here)
    RunRefused,
    _read,
    _record,
    _saved_config,
)

#: In a stage-2 run folder: the steps and the checkpoint's sha256 of the stage-1 run it starts
#: from. Its config names that run's folder only, which trains on when more steps are asked
#: for and is trained again when its settings change (its folder deleted, as told).
INIT_RECORD = "init.json"

#: In each run folder: what it was trained on that its config names only (the backbone's
#: weights and the training data, :func:`~.data.run_inputs`).
INPUTS_RECORD = "inputs.json"

#: In a stage-1 run folder that continues another (a copy of it trained on): that folder.
CONTINUES_RECORD = "continues.json"


def _check_same(cfg, out: Path, reads=None) -> None:
    """Refuse to reuse a run folder made with another config (the log section aside); paths
    are compared as the files they name (a folder from before paths were absolute holds them
    relative to the current folder of its experiment). ``reads``: the start's
    :class:`~.folder_reads.FolderReads`, which reads the folder's config once."""
    saved = _real_paths(_saved_config(out, reads))
    wanted = _real_paths(cfg.to_dict())
    skip = {"log", "max_steps"} | ({"model"} if cfg.stage == 2 else set())
    diff = sorted(k for k in wanted if k not in skip and saved.get(k) != wanted[k])
    if cfg.stage == 2:  # the architecture is init's, but the window is the run's own
        model, window = saved.get("model"), cfg.model.attention_window
        if not isinstance(model, dict) or model.get("attention_window") != window:
            diff.append("model.attention_window")  # no mapping (damaged): it names no window
    if diff:
        raise RunRefused(
            out, f"holds a run made with other settings (differs in {', '.join(diff)})"
        )


def _real_paths(config: dict) -> dict:
    """A copy of ``config`` with each path of it (:data:`~loftup.train.config.paths.PATH_KEYS`)
    absolute, its ``~`` and symbolic links resolved: to compare, never to run (a hub name is
    read as a path here, the same way on both sides)."""
    import copy
    import os

    from ..train.config.paths import PATH_KEYS

    config = copy.deepcopy(config)
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = config
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(name), str) and node[name]:
            node[name] = os.path.realpath(os.path.expanduser(node[name]))
    return config


def _finished(out: Path) -> bool:
    """Whether ``out`` holds a finished run (``summary.json`` and ``final/``), its checkpoint
    there too: one whose checkpoint is gone is refused (:func:`_load_step`)."""
    return (out / "summary.json").is_file() and (out / "final").is_dir()


def _begun(out: Path) -> bool:
    """Whether the run folder ``out`` holds a checkpoint; one that is a link to nothing (a
    disk not mounted) refused with its fix, not taken for a folder not begun (written in)."""
    return has_checkpoint(out / "checkpoint.pt", "--out")


def _load_step(out: Path) -> dict:
    """The checkpoint of the begun run in ``out``, refused with the experiment's fix (delete
    the folder, and those of the runs that start from it) where it is gone from a finished
    run or cannot be read: ``loftup train``'s fix, to move the file away and train afresh,
    left a finished run without it, loaded all the same when the experiment reused it."""
    from ..errors import CheckpointError
    from ..train.checkpoint import load_checkpoint

    if not _begun(out):
        raise RunRefused(out, "holds a finished run whose checkpoint.pt is gone (moved away or "
                         "deleted): it cannot be reused or trained on")  # fmt: skip
    try:
        return load_checkpoint(out / "checkpoint.pt", "--out")  # unreadable: its chmod
    except CheckpointError as e:
        ckpt = out / "checkpoint.pt"
        said = str(e).split("; ")[0].replace(f"training checkpoint {ckpt}", "it")
        said = said.replace(str(ckpt), "it")
        raise RunRefused(out, f"holds a checkpoint.pt that cannot be loaded ({said})") from None


def _check_steps(out: Path, step: int, max_steps: int) -> None:
    """Refuse a folder of a run at ``step``, past the ``max_steps`` asked for: training would
    export it as it is, scored as a run of fewer steps."""
    if step > max_steps:
        raise RunRefused(out, f"holds a run of {step} steps, more than the {max_steps} asked for")


def _check_init_steps(out: Path, steps: int, reads=None) -> None:
    """Refuse a stage-2 folder begun from a stage-1 run of other than ``steps`` steps; record
    ``steps`` in one not begun yet (a folder from before the record is taken as it is). A run
    not begun has no checkpoint: its record, written before an experiment stopped in stage 1,
    is written again (it was refused, "a stage-2 run", when the steps changed). ``reads``: the
    start's :class:`~.folder_reads.FolderReads`, which reads the record once."""
    if not _begun(out):
        out.mkdir(parents=True, exist_ok=True)
        _write_record(out / INIT_RECORD, {"stage1_steps": steps}, reads)
        return
    saved = _record(out / INIT_RECORD, reads)
    if saved is not None and saved.get("stage1_steps") != steps:
        raise RunRefused(out, f"holds a stage-2 run that starts from {saved.get('stage1_steps')} "
                         f"stage-1 steps, not the {steps} asked for")  # fmt: skip


def _check_init_run(
    out: Path, steps: int, checkpoint: Path, sha: str | None = None, reads=None
) -> None:
    """Refuse a begun stage-2 folder that started from another stage-1 checkpoint than
    ``checkpoint`` (its sha256, ``sha`` where known): the stage-1 run was trained again
    (other settings, its folder deleted as told), and the stage-2 run distilled from the old
    one. Record it (and ``steps``) in a folder not begun, and in one from before the record."""
    sha, why = _init_run_refusal(out, checkpoint, sha, reads)
    if why:
        raise RunRefused(out, why)
    begun = _begun(out)
    if ((_record(out / INIT_RECORD, reads) if begun else None) or {}).get("stage1_sha256") is None:
        _write_record(out / INIT_RECORD, {"stage1_steps": steps, "stage1_sha256": sha}, reads)


def _init_run_refusal(out: Path, checkpoint: Path, sha: str | None = None, reads=None):
    """``(sha256 of checkpoint, why the begun stage-2 folder out is refused or None)``: what
    :func:`_check_init_run` checks, nothing written (the up-front check makes it too)."""
    from .data import file_sha256
    from .run_starts import _begun_before

    sha = sha or file_sha256(checkpoint)
    if not _begun(out):
        return sha, None
    was = (_record(out / INIT_RECORD, reads) or {}).get("stage1_sha256")
    if was is not None and was != sha:
        return sha, (f"holds a stage-2 run distilled from another stage-1 run than "
                     f"{checkpoint.parent} holds now (its checkpoint was sha256 {was[:12]}, "
                     f"is {sha[:12]}: trained again)")  # fmt: skip
    if was is None and _begun_before(out, checkpoint.parent):
        # from before the record: a stage-1 run started again after this run began is not
        # the one it started from (its sha256 recorded now would approve it for good)
        return sha, (f"holds a stage-2 run begun before {checkpoint.parent} was trained "
                     "(again or on): it started from an earlier stage-1 checkpoint")  # fmt: skip
    return sha, None


def _write_record(path: Path, record: dict, reads=None) -> None:
    """Write the record ``path``; what ``reads`` read of it forgotten (read again)."""
    from ..atomic import write_json

    write_json(path, record)
    if reads is not None:
        reads.forget(path)


def _record_inputs(out: Path, inputs: dict, begun: bool, reads=None) -> None:
    """Refuse a begun run folder trained on other :data:`INPUTS_RECORD` inputs than ``inputs``
    (see :func:`_check_inputs`); record them in one not begun, or from before the record."""
    saved = _record(out / INPUTS_RECORD, reads) if begun else None
    if saved is not None and _changes(saved, inputs):
        raise RunRefused(
            out, f"holds a run trained on other {' and '.join(_changes(saved, inputs))}"
        )
    if saved is None:
        out.mkdir(parents=True, exist_ok=True)
        _write_record(out / INPUTS_RECORD, inputs, reads)


def _check_inputs(runs: Path, inputs: dict, reads=None) -> None:
    """Refuse, naming each of them, the begun run folders under ``runs`` (``seedN/NAME/stageK``)
    trained on other backbone weights or training data than ``inputs``: one refused at a time,
    a changed backbone took a run of the experiment per folder to name them all."""
    stale, what = [], []
    for record in sorted(Path(runs).glob(f"seed*/*/stage*/{INPUTS_RECORD}")):
        changes = _changes(_record(record, reads) or inputs, inputs)
        if changes and _begun(record.parent):
            stale.append(str(record.parent))
            what += [c for c in changes if c not in what]
    if stale:
        raise LoftUpError(
            f"{len(stale)} run folder{'s' * (len(stale) > 1)} of {runs} hold runs trained on "
            f"other {' and '.join(what)}: {', '.join(stale)}; delete them to train them again, "
            "or choose another --out"
        )


def _changes(saved: dict, inputs: dict) -> list[str]:
    """What differs between two :data:`INPUTS_RECORD` records, said as then -> now."""
    changes = []
    was, now = saved.get("backbone_sha256"), inputs["backbone_sha256"]
    if was != now:
        changes.append(f"backbone weights (sha256 {_short(was)} then, {_short(now)} now)")
    was, now = saved.get("training_data"), inputs["training_data"]
    if was != now:
        changes.append(f"training data ({_data(was)} then, {_data(now)} now)")
    return changes


def _short(sha) -> str:
    return sha[:12] if isinstance(sha, str) else "unknown"


def _data(identity) -> str:
    if not isinstance(identity, dict):
        return "unknown"
    if "world_sha256" in identity:
        return f"world.json sha256 {_short(identity['world_sha256'])}"
    return f"{identity.get('files')} files, listing sha256 {_short(identity.get('listing_sha256'))}"


def _begun_from(seed_folder: Path, stage1: Path) -> list[Path]:
    """The begun run folders under ``seed_folder`` that start from ``stage1``, to be trained
    again with it: stage-2 runs whose config's ``init`` is its checkpoint, and stage-1 runs
    that continue it (:data:`CONTINUES_RECORD`)."""
    import os

    def names(path, want: Path) -> bool:
        return isinstance(path, str) and os.path.realpath(os.path.expanduser(path)) == want

    found = []
    for folder in sorted(Path(seed_folder).glob("*/stage[12]")):
        if folder == stage1 or not (folder / "checkpoint.pt").exists():
            continue
        try:
            if folder.name == "stage2":
                start = _saved_config(folder)["init"]
                want = os.path.realpath(stage1 / "checkpoint.pt")
            else:
                start, want = (_read(folder / CONTINUES_RECORD) or {}).get("from"), stage1
        except (OSError, LoftUpError, TypeError, KeyError):
            continue  # its own refusal names it when its turn comes
        if names(start, os.path.realpath(want)):
            found.append(folder)
    return found
