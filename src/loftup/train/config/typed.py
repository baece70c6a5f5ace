"""A config's dict as its typed dataclasses (:func:`build`): each key checked against the
schema (a near miss named), each value coerced to its field's type the way YAML and
``key=value`` text spell it, or a UsageError naming the key, the value and what it takes."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing

from ...errors import LoftUpError, UsageError
from ...escaping import printable
from .schema import TrainConfig


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
        raise UsageError(f"bad config{where}: {printable(str(e))}") from None


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
