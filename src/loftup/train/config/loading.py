"""Building a config: the YAML file (a path or a packaged name), the ``key=value`` overrides on
top, and the dataclasses built from the merged dict with every key and type checked."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from importlib import resources
from pathlib import Path

from ...errors import LoftUpError, UsageError
from .schema import TrainConfig, default_config


def packaged_configs() -> list[str]:
    """Names of the YAML configs shipped inside the package."""
    folder = resources.files("loftup") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_yaml(name_or_path: str) -> dict:
    """A config file's contents: a path, or the name of a packaged config."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        where = str(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise UsageError(f"config {path} is not a text (YAML) file") from None
    elif path.is_dir():
        raise UsageError(f"config {path} is a folder; give a YAML file or a packaged config name")
    else:
        name = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
        entry = resources.files("loftup") / "configs" / f"{name}.yaml"
        if not entry.is_file():
            raise UsageError(
                f"no config file {name_or_path!r}; give a path or one of the packaged configs: "
                f"{', '.join(packaged_configs())}"
            )
        where, text = f"{name}.yaml", entry.read_text()
    data = _safe_yaml(text, f"config {where}") or {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config {where} must be a YAML mapping of keys (stage: 1, batch_size: 8, ...), got "
            f"{type(data).__name__}"
        )
    return data


def _safe_yaml(text: str, what: str):
    """``yaml.safe_load(text)``; a syntax error or a Python tag (``!!python/object/apply``,
    which safe_load never builds) is a UsageError naming ``what``, the line and the problem."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
            problem = (
                f"{problem.split('tag ', 1)[-1]} is not allowed: configs hold plain values "
                "(numbers, strings, lists, mappings), never Python objects"
            )
        raise UsageError(f"{what}:{at} {problem}; nothing was run") from None


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=1e-3", "data.root=/x"]`` -> nested dict with YAML-parsed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"override {pair!r} is not key=value (e.g. optim.lr=3e-4)")
        key, text = pair.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(f"override {pair!r} has no key before '=' (e.g. optim.lr=3e-4)")
        value = _safe_yaml(text, f"override {pair}") if text else ""
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: i + 1])
                raise UsageError(
                    f"override {pair!r}: an earlier override set {section} to {_show(node)}, but "
                    f"it is a section; set its keys ({key}=...) without {section}={_show(node)}"
                )
        node[parts[-1]] = value
    return out


def merge(base: dict, update: dict) -> dict:
    """Recursive dict update (``update`` wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    source: str | os.PathLike | dict | None = None,
    overrides: list[str] | None = None,
    stage: int | None = None,
) -> TrainConfig:
    """Defaults of the stage, then the YAML file/name or dict ``source``, then ``overrides``.

    ``stage`` (the command line's ``--stage``) must agree with a stage the file sets. Every
    value is checked (type first, then its range) before anything is loaded: a
    :class:`~loftup.errors.UsageError` names the key, the value and what it may be.
    """
    if isinstance(source, (str, os.PathLike)):
        data = read_yaml(os.fspath(source))
    elif source is None or isinstance(source, dict):
        data = dict(source or {})
    else:
        raise UsageError(
            f"a config is a YAML file, a packaged config's name or a dict, got {source!r} "
            f"({type(source).__name__})"
        )
    if isinstance(overrides, str):  # its characters would be read as overrides, one each
        raise UsageError(
            f"overrides are a list of key=value strings, e.g. [{overrides!r}], got the string "
            f"{overrides!r}"
        )
    data = merge(data, parse_overrides(overrides or []))
    file_stage = data.get("stage")
    if file_stage is not None and (isinstance(file_stage, bool) or file_stage not in (1, 2)):
        raise UsageError(f"config key stage must be 1 or 2, got {file_stage!r}")
    if stage is not None and file_stage is not None and int(file_stage) != int(stage):
        raise UsageError(
            f"--stage {stage} disagrees with the config's stage: {file_stage}; use the stage-"
            f"{stage} config (e.g. stage{stage}_sa1b) or override stage={stage}"
        )
    stage = int(stage if stage is not None else file_stage or 1)
    data["stage"] = stage
    defaults = default_config(stage).to_dict()
    cfg = build(TrainConfig, merge(defaults, data), "")
    # stage 2 takes its architecture from init: which model keys the user set, to be checked
    # against it (loftup.train.build.stage2_architecture); not a field, so not saved
    model = data.get("model")
    cfg.model_given = frozenset(model) if isinstance(model, dict) else frozenset()
    return cfg


def build(cls, data: dict, prefix: str):
    """A dataclass from a dict, checking keys and types (nested dataclasses included)."""
    if not isinstance(data, dict):
        raise _not_a_section(prefix.rstrip("."), data, cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise UsageError(
            f"unknown config key {prefix}{unknown[0]}; known keys here: {', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        kwargs[name] = _coerce(hints[name], data[name], prefix + name)
    try:
        return cls(**kwargs)
    except LoftUpError:
        raise
    except (TypeError, ValueError) as e:
        where = f" section {prefix.rstrip('.')}" if prefix else ""
        raise UsageError(f"bad config{where}: {e}") from None


def _not_a_section(key: str, value, cls) -> UsageError:
    if not key:
        return UsageError(f"a config must be a mapping of keys, got {type(value).__name__}")
    first = dataclasses.fields(cls)[0].name
    return UsageError(
        f"config key {key} is a section and must be a mapping of its keys (e.g. "
        f"{key}.{first}=...), got {_show(value)}"
    )


def _show(value) -> str:
    """A value as YAML writes it (null, true), else its repr."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else ()
    if value is None:
        if type(None) in args:
            return None
        raise UsageError(f"config key {key} cannot be null")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    origin = typing.get_origin(base) or base
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key {key} must be a list, got {value!r}")
        (item,) = typing.get_args(base) or (object,)
        return [_coerce(item, v, key) for v in value]
    if origin is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key {key} must be true or false, got {value!r}")
        return value
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin is str and isinstance(value, str):
        return value
    if origin is object:
        return value
    raise UsageError(
        f"config key {key} must be {getattr(origin, '__name__', origin)}, got {value!r}"
    )
