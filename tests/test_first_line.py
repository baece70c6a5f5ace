"""The first line of an error's message, as the one-line errors quote a library's error
(:func:`loftup.errors.first_line`): an empty message, or one of whitespace, is said by the
error's type. Taking ``str(e).splitlines()[0]`` raised an IndexError there, a traceback in
place of the one line."""

from __future__ import annotations

import pytest

from loftup.errors import first_line, one_line


class _Unsayable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


def test_the_first_line_that_is_not_blank_stripped_and_cut():
    assert first_line(OSError("\n  \n  cannot reach it  \nsecond line")) == "cannot reach it"
    assert first_line(ValueError("x" * 500)) == "x" * 200
    assert first_line(ValueError("x" * 500), 300) == "x" * 300
    assert first_line(ValueError("x" * 500), None) == "x" * 500
    assert first_line(KeyError("weight")) == "'weight'"  # KeyError's text is its key's repr
    assert first_line("a text\nmore") == "a text"


@pytest.mark.parametrize(
    "error", [OSError(), RuntimeError(""), ValueError(" \n\t\n"), _Unsayable()]
)
def test_an_error_without_text_is_said_by_its_type(error):
    name = type(error).__name__
    assert first_line(error) == name
    assert first_line(error, typed=True) == name  # not "OSError: OSError", nor "OSError: "
    assert first_line(" \n ") == ""  # a text has no type to say


def test_one_line_joins_every_line_and_says_an_unsayable_error_by_its_type():
    """``one_line`` (every line joined) raised the error of a ``__str__`` that fails, where
    ``first_line`` said its type: a second error in place of the one line."""
    assert one_line(OSError("\n cannot reach it \n  second line")) == "cannot reach it second line"
    assert one_line(_Unsayable()) == "_Unsayable"
    assert one_line(ValueError(" \n\t")) == "ValueError"


def test_typed_puts_the_type_before_the_line():
    assert first_line(OSError("\nno route to host"), typed=True) == "OSError: no route to host"


def test_a_download_that_fails_with_an_empty_message_is_one_line(tmp_path, monkeypatch, local_hub):
    """huggingface_hub's download raising an OSError without text (the trigger: the download
    code under it is not what is tested) is said by its type in the refusal."""
    import huggingface_hub

    from hub_helpers import _use_mirror
    from loftup.downloads import download_names
    from loftup.errors import WeightsNotFoundError

    _use_mirror(monkeypatch, local_hub({}), tmp_path / "hub")

    def fails(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fails)
    with pytest.raises(WeightsNotFoundError) as e:
        list(download_names(["someone/up"]))
    assert "the download failed (OSError)" in str(e.value)


def test_a_benchmark_section_that_failed_without_text_is_a_row():
    """A report's ablation section whose error is empty (written by hand, or by a suite that
    caught an error of no text) is still judged: a row that says it failed."""
    from loftup.bench.targets import targets

    said = {
        "": "failed: ",
        " \n": "failed: ",
        "RuntimeError: boom\nat 3": "failed: RuntimeError: boom",
    }
    for error, measured in said.items():
        report = {"suite": "gpu", "sections": {"ablation": {"error": error}}}
        (row,) = [r for r in targets(report) if r["target"].startswith("ablation:")]
        assert row["measured"] == measured and row["met"] is None
