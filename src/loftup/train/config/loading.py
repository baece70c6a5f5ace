"""Building a config: the YAML file (a path or a packaged name, read by :mod:`.yaml_text`), the
``key=value`` overrides on top, and the dataclasses built from the merged dict with every key
and type checked."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

from ...errors import UsageError
from ...escaping import quoted
from ..noise import KINDS
from .paths import expand_paths, warn_file_relative
from .schema import TrainConfig, default_config
from .typed import _show, _whole_number, build
from .yaml_text import read_yaml, refuse_comment, safe_yaml


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=1e-3", "data.root=/x"]`` -> nested dict with YAML-parsed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"override {quoted(pair)} is not key=value (e.g. optim.lr=3e-4)")
        key, text = pair.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(
                f"override {quoted(pair)} {_empty_part(key.strip())} (e.g. optim.lr=3e-4)"
            )
        refuse_comment(pair, key, text)
        value = safe_yaml(text, f"override {pair}") if text else ""
        node = out
        for i, part in enumerate(parts[:-1]):
            earlier = node.get(part, {})
            if not isinstance(earlier, dict):
                section = ".".join(parts[: i + 1])
                if not _is_section(parts[: i + 1]):  # a value (optim.lr=1 optim.lr.x=2): the
                    earlier = node[part] = {}  # key below it is refused by build, named
                else:
                    raise UsageError(
                        f"override {quoted(pair)}: an earlier override set {section} to "
                        f"{_show(earlier)}, but it is a section; set its keys ({key}=...) "
                        f"without {section}={_show(earlier)}"
                    )
            node = node.setdefault(part, earlier)
        node[parts[-1]] = value
    return out


def _is_section(parts: list[str]) -> bool:
    """Whether the dotted key ``parts`` (``["optim"]``) is a section of the config."""
    cls = TrainConfig
    for part in parts:
        hint = typing.get_type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
        if hint is None:
            return False
        cls = hint
    return dataclasses.is_dataclass(cls)


def _empty_part(key: str) -> str:
    """What leaves a dotted override key with an empty part (``optim..lr``, ``.lr``)."""
    if not key:
        return "has no key before '='"
    if ".." in key:
        return f"has two dots together in its key {key}"
    return f"has a dot at the {'start' if key.startswith('.') else 'end'} of its key {key}"


def merge(base: dict, update: dict) -> dict:
    """Recursive dict update (``update`` wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_overrides(overrides: list[str] | None, paths: dict[str, str] | None = None) -> dict:
    """The ``key=value`` ``overrides`` as :func:`load_config` reads them, a nested dict: YAML
    values, their paths expanded (:func:`~.paths.expand_paths`), then ``paths`` set last and
    taken as written (see :func:`load_config`)."""
    if isinstance(overrides, str):  # its characters would be read as overrides, one each
        raise UsageError(
            f"overrides are a list of key=value strings, e.g. [{overrides!r}], got the string "
            f"{overrides!r}"
        )
    # paths as JSON strings (YAML reads them as written), set last, and not expanded
    literal = [
        f"{key}={json.dumps(os.fspath(value), ensure_ascii=False)}"
        for key, value in (paths or {}).items()
    ]
    given = parse_overrides([*(overrides or []), *literal])
    return expand_paths(given, "given as an override", replaced=parse_overrides(literal))


def load_config(
    source: str | os.PathLike | dict | None = None,
    overrides: list[str] | None = None,
    stage: int | None = None,
    paths: dict[str, str] | None = None,
) -> TrainConfig:
    """Defaults of the stage, then the YAML file/name or dict ``source``, then ``overrides``,
    then ``paths`` ({dotted key: path}, e.g. the command line's ``--data`` and ``--out``, which
    the shell has expanded: taken as written, neither YAML nor expanded again).

    ``stage`` (the command line's ``--stage``) must agree with a stage the file sets. Paths
    (:data:`~.paths.PATH_KEYS`) written as YAML text, in the file and the overrides, are
    expanded as a shell would (``~``, ``$VAR``, ``${VAR}``: :func:`~.paths.expand_path`); a
    dict's are taken as they are, as Python gives them. Every value is checked (type first,
    then its range) before anything is loaded: a :class:`~loftup.errors.UsageError` names the
    key, the value and what it may be.
    """
    config_file = file_text = None
    if isinstance(source, (str, os.PathLike)):
        data, file_text = read_yaml(os.fspath(source)), f"in config {os.fspath(source)}"
        data = _empty_sections_dropped(data)
        if Path(os.fspath(source)).expanduser().is_file():  # not a packaged config's name
            config_file = Path(os.fspath(source)).expanduser()
    elif source is None or isinstance(source, dict):
        data = dict(source or {})
    else:
        raise UsageError(
            f"a config is a YAML file, a packaged config's name or a dict, got {quoted(source)} "
            f"({type(source).__name__})"
        )
    if stage is not None and (isinstance(stage, bool) or stage not in (1, 2)):
        raise UsageError(f"stage must be 1 or 2, got {stage!r}")
    given = read_overrides(overrides, paths)
    if file_text is not None:  # a dict's paths are Python's, taken as they are
        data = expand_paths(data, file_text, replaced=given)
    if config_file is not None:
        warn_file_relative(data, given, config_file)
    data = merge(data, given)
    file_stage = _stage_key(data.get("stage"))
    if stage is not None and file_stage is not None and int(file_stage) != int(stage):
        raise UsageError(
            f"--stage {stage} disagrees with the config's stage: {file_stage}; use the stage-"
            f"{stage} config (e.g. stage{stage}_sa1b) or override stage={stage}"
        )
    stage = int(stage if stage is not None else file_stage or 1)
    data["stage"] = stage
    defaults = default_config(stage).to_dict()
    cfg = build(TrainConfig, merge(defaults, data), "")
    if "epochs" in given and cfg.max_steps is not None:  # epochs=3 was taken and did nothing
        whose = "" if "max_steps" in given else " (the config's)"
        raise UsageError(
            f"override epochs={given['epochs']} has no effect: max_steps={cfg.max_steps}{whose} "
            "sets the run's length (it outranks epochs); give max_steps=null with it, or "
            "max_steps=N alone"
        )
    noise = given.get("mask_noise")
    if stage == 2 and isinstance(noise, dict) and noise and cfg.mask_noise.active:
        levels = [(k, v) for k, v in noise.items() if k in KINDS and getattr(cfg.mask_noise, k)]
        key, value = (levels or list(noise.items()))[0]  # a level given, where one is
        raise UsageError(
            f"override mask_noise.{key}={_show(value)} has no effect in stage 2: mask noise is "
            "put on stage 1's masks only (stage 2 adjusts its teacher with the masks as they "
            "are); leave it out, or train --stage 1 with it"
        )
    # stage 2 takes its architecture from init: which model keys the user set, to be checked
    # against it (loftup.train.build.stage2_architecture); not a field, so not saved
    model = data.get("model")
    cfg.model_given = frozenset(model) if isinstance(model, dict) else frozenset()
    return cfg


def _empty_sections_dropped(data: dict) -> dict:
    """A config file's keys without its empty sections (``data:`` with every key under it
    commented out, which YAML reads as null): they set nothing. An override's ``data=null``
    is still refused, as is a section's null in a dict (both say it on purpose)."""
    hints = typing.get_type_hints(TrainConfig)
    sections = {k for k, hint in hints.items() if dataclasses.is_dataclass(hint)}
    return {k: v for k, v in data.items() if not (v is None and k in sections)}


def _stage_key(value) -> int | None:
    """The config key ``stage`` (None where unset) read as an integer key is (``"2"`` quoted,
    ``2.0``: a whole number), or a UsageError unless it is 1 or 2. Quoted, it was refused while
    every other integer key took it."""
    if value is None:
        return None
    whole = None if isinstance(value, bool) else value
    if isinstance(whole, (str, float)):
        whole = _whole_number(whole)
    if not isinstance(whole, int) or whole not in (1, 2):
        raise UsageError(f"config key stage must be 1 or 2, got {value!r}")
    return whole
