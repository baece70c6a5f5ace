"""A config's YAML text: read from a file or a packaged name, and parsed safely (plain values
only, every key once), each problem a one-line UsageError naming the file or override and line."""

from __future__ import annotations

import functools
import os
import typing
from importlib import resources
from pathlib import Path

from ...errors import UsageError, first_line
from ...escaping import quoted
from ...paths import check_visible
from ...read_refusal import read_refused


def packaged_configs() -> list[str]:
    """Names of the YAML configs shipped inside the package."""
    folder = resources.files("loftup") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_yaml(name_or_path: str) -> dict:
    """A config file's contents: a path, or the name of a packaged config."""
    path = Path(name_or_path).expanduser()
    name = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
    if name not in packaged_configs():  # a packaged name is no path (a file here comes first)
        check_visible(path, "config")
    if os.path.isfile(path):  # os.path: pathlib's raises where the folder is not searchable
        where = str(path)
        try:  # UTF-8 whatever the locale (which would misread a non-ASCII path, or refuse it)
            text = path.read_bytes().decode("utf-8")
        except OSError as e:  # one line, not a traceback; no permission: its mode and the fix
            refused = read_refused(path, e, "config")  # None of a disk error
            raise refused or UsageError(
                f"config {path} cannot be read: {e.strerror or e}"
            ) from None
        except UnicodeDecodeError as e:
            raise UsageError(
                f"config {path} is not a text (YAML) file: byte {e.object[e.start]:#04x} at offset "
                f"{e.start} is not UTF-8; save it as UTF-8 text"
            ) from None
    elif os.path.isdir(path):
        raise UsageError(f"config {path} is a folder; give a YAML file or a packaged config name")
    else:
        entry = resources.files("loftup") / "configs" / f"{name}.yaml"
        if not entry.is_file():
            raise UsageError(
                f"no config file {quoted(name_or_path)}; give a path or one of the packaged "
                "configs: "
                f"{', '.join(packaged_configs())}"
            )
        where, text = f"{name}.yaml", entry.read_text()
    data = safe_yaml(text, f"config {where}") or {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config {where} must be a YAML mapping of keys (stage: 1, batch_size: 8, ...), got "
            f"{type(data).__name__}"
        )
    return data


def safe_yaml(text: str, what: str):
    """``yaml.safe_load(text)``; a syntax error, a key given twice in one mapping (YAML would
    keep the last, dropping the first without a word) or a Python tag (``!!python/object/apply``,
    which safe_load never builds) is a UsageError naming ``what``, the line and the problem."""
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or first_line(e, None)
        if isinstance(e, yaml.constructor.ConstructorError) and "tag" in problem:
            problem = (
                f"{problem.split('tag ', 1)[-1]} is not allowed: configs hold plain values "
                "(numbers, strings, lists, mappings), never Python objects"
            )
        raise UsageError(f"{what}:{at} {problem}; nothing was run") from None


@functools.cache
def _unique_key_loader() -> type:
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``<<`` merges aside,
    whose keys a mapping may override), and reads dates as the text written."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                first: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, typing.Hashable):
                        continue  # safe_load's own error names it
                    if key in first:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key {key!r} is given twice in one mapping (first on line "
                            f"{first[key] + 1}), and YAML would keep only the last; merge them",
                            key_node.start_mark,
                        )
                    first[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    # no config key is a date: a run folder named 2024-01-01 is read as written, not as a date
    # that a str key then refused
    UniqueKeyLoader.yaml_implicit_resolvers = {
        first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return UniqueKeyLoader


def refuse_comment(pair: str, key: str, text: str) -> None:
    """An override value with a YAML comment (``data.root=/x #2``: `` #`` and what follows) would
    lose it without a word: refused, with the value quoted as the fix."""
    import yaml

    if "#" not in text:
        return
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # safe_yaml names the error
    if node is None or node.end_mark.index < len(text.rstrip()):
        in_yaml = "'" + text.replace("'", "''") + "'"
        raise UsageError(
            f"override {quoted(pair)}: YAML takes a '#' after a space (or first) for a comment, "
            "which "
            f"would be dropped; quote the value if the '#' is part of it: {key}=\"{in_yaml}\", "
            "else drop the comment"
        )
