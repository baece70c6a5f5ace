"""Building a config: the YAML file (a path or a packaged name, read by :mod:`.yaml_text`), the
``key=value`` overrides on top, and the dataclasses built from the merged dict with every key
and type checked."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from pathlib import Path

from ...errors import LoftUpError, UsageError
from ..noise import KINDS
from .paths import expand_paths, warn_file_relative
from .schema import TrainConfig, default_config
from .yaml_text import read_yaml, refuse_comment, safe_yaml


def parse_overrides(pairs: list[str]) -> dict:
    """``["optim.lr=1e-3", "data.root=/x"]`` -> nested dict with YAML-parsed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"override {pair!r} is not key=value (e.g. optim.lr=3e-4)")
        key, text = pair.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(f"override {pair!r} {_empty_part(key.strip())} (e.g. optim.lr=3e-4)")
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
                        f"override {pair!r}: an earlier override set {section} to "
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
            f"a config is a YAML file, a packaged config's name or a dict, got {source!r} "
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
            f"{_did_you_mean(prefix, unknown[0], names)}"
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


def _did_you_mean(prefix: str, name, names: list[str]) -> str:
    """The hint for an unknown key: a key of another section (``lr`` at the top: optim.lr) or
    a close spelling of one here (``optim.lrr``: optim.lr), else ""."""
    if not isinstance(name, str):
        return ""
    elsewhere = [k for k in _dotted_keys(TrainConfig) if k.rsplit(".", 1)[-1] == name]
    close = elsewhere or [prefix + k for k in difflib.get_close_matches(name, names, 1, 0.7)]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _dotted_keys(cls, prefix: str = "") -> list[str]:
    """Every key of the dataclass ``cls`` as the YAML and overrides write it (``optim.lr``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out += _dotted_keys(hint, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


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


def _coerce(hint, value, key: str, *, listed: bool = False):
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else ()
    if value is None:
        if type(None) in args:
            return None
        home = "; quote a ~ meant as the home folder: '~'" if hint is str else ""
        raise UsageError(f"config key {key} cannot be null (YAML's empty value, null or ~){home}")
    base = next(a for a in args if a is not type(None)) if is_union else hint
    origin = typing.get_origin(base) or base
    kind = getattr(origin, "__name__", origin)
    if isinstance(value, dict) and value and not listed and origin is not object:
        below = f"{key}.{_first_key(value)}"  # optim.lr.x=1, or lr: {x: 1} in a file
        raise UsageError(
            f"config key {key} is a {kind} value, not a section: there is no key {below}; "
            f"set {key}=... itself"
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            items = value if isinstance(value, str) and "," in value else "a, b"
            raise UsageError(
                f"config key {key} must be a list, got {value!r}; write it in brackets, "
                f"{key}=[{items}] (in a file, or a '- item' line each)"
            )
        (item,) = typing.get_args(base) or (object,)
        return [_coerce(item, v, key, listed=True) for v in value]
    if origin is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key {key} must be true or false, got {value!r}")
        return value
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range, which float() refuses
            digits = len(str(abs(value)))
            raise UsageError(
                f"config key {key} must be a finite number, got an integer of {digits} digits"
            ) from None
    if origin is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin is int and isinstance(value, (str, float)):  # 1e5 or 1.0e+5: a whole number
        whole = _whole_number(value)
        if whole is not None:
            return whole
    if origin is str and isinstance(value, str):
        return value
    if origin is object:
        return value
    quote = ""
    if origin is str and isinstance(value, (bool, int, float)):  # a folder 2024, device: off
        read = "true/false" if isinstance(value, bool) else "a number"
        quote = f": YAML read the value as {read}; quote it ({key}=\"'...'\" on a command line)"
    raise UsageError(f"config key {key} must be {kind}, got {value!r}{quote}")


def _first_key(value: dict) -> str:
    """The dotted path to the first leaf of a nested dict: ``{'x': {'y': 1}}`` -> ``x.y``."""
    key, inner = next(iter(value.items()))
    return f"{key}.{_first_key(inner)}" if isinstance(inner, dict) and inner else str(key)


def _whole_number(value: str | float) -> int | None:
    """The integer a float or a number written as a string (``"2"``, ``"1e5"``: YAML 1.1
    reads an exponent without a dot as a string) stands for exactly, else None (1.5, nan)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    return int(value) if value.is_integer() else None
