"""Whether an experiment's run folder may be reused or gone on with: the same config as the
run asks for (:func:`_check_same`, paths compared as the files they name), and a stage-2
folder begun from as many stage-1 steps (:func:`_check_init_steps`, its ``init.json``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoftUpError

#: In a stage-2 run folder: the steps of the stage-1 run it starts from. Its config names that
#: run's folder only, and a shared stage-1 folder trains on when more steps are asked for.
INIT_RECORD = "init.json"


def _check_same(cfg, out: Path) -> None:
    """Refuse to reuse a run folder made with another config (the log section aside); paths
    are compared as the files they name (a folder from before paths were absolute holds them
    relative to the current folder of its experiment)."""
    import yaml

    from ..train.config.paths import as_used

    saved = _real_paths(as_used(yaml.safe_load((out / "config.yaml").read_text()) or {}))
    wanted = _real_paths(cfg.to_dict())
    skip = {"log", "max_steps"} | ({"model"} if cfg.stage == 2 else set())
    diff = sorted(k for k in wanted if k not in skip and saved.get(k) != wanted[k])
    if cfg.stage == 2:  # the architecture is init's, but the window is the run's own
        window = "model.attention_window"
        if (saved.get("model") or {}).get("attention_window") != cfg.model.attention_window:
            diff.append(window)
    if diff:
        raise LoftUpError(
            f"{out} holds a run made with other settings (differs in {', '.join(diff)}); "
            "choose another --out or delete that folder"
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


def _check_init_steps(out: Path, steps: int) -> None:
    """Refuse a stage-2 folder begun from a stage-1 run of other than ``steps`` steps; record
    ``steps`` in one not begun yet (a folder from before the record is taken as it is). A run
    not begun has no checkpoint: its record, written before an experiment stopped in stage 1,
    is written again (it was refused, "a stage-2 run", when the steps changed)."""
    from ..atomic import read_json_object, write_json

    if not (out / "checkpoint.pt").exists():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / INIT_RECORD, {"stage1_steps": steps})
        return
    try:
        saved = read_json_object(out / INIT_RECORD)
    except ValueError as e:
        raise LoftUpError(f"{e}; choose another --out or delete that folder") from None
    if saved is not None and saved.get("stage1_steps") != steps:
        raise LoftUpError(
            f"{out} holds a stage-2 run that starts from {saved.get('stage1_steps')} stage-1 "
            f"steps, not the {steps} asked for; choose another --out or delete that folder"
        )
