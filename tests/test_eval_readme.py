"""The README's Evaluation section: its Python example runs, its ``loftup eval`` commands
parse; and ``loftup eval TASK --help`` names the folder features are cached in."""

import pytest


def _readme_section() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("## Evaluation")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_evaluation_example_runs():
    section = _readme_section()
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (Evaluation)", "exec"), {})


def test_readme_evaluation_commands_parse():
    import re
    import shlex

    from loftup.cli import build_parser

    section = _readme_section().replace("\\\n", " ")
    commands = re.findall(r"loftup eval (?:seg|depth|normals|davis) +--[^`\n#]*", section)
    assert sum(" normals " in cmd for cmd in commands) >= 2
    assert len(commands) >= 10
    for cmd in commands:
        args = build_parser().parse_args(shlex.split(cmd)[1:])
        assert args.func.__name__ == "_cmd_eval"


@pytest.mark.parametrize("task", ["seg", "depth", "normals", "davis"])
def test_cache_dir_help_names_the_folder_features_are_cached_in(task, capsys, monkeypatch):
    from pathlib import Path

    from loftup.cli import build_parser
    from loftup.eval.features import default_cache_dir

    monkeypatch.delenv("LOFTUP_CACHE", raising=False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", task, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    folder = "~/" + default_cache_dir().relative_to(Path.home()).as_posix()
    assert f"(default {folder}," in text, text
