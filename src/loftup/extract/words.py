"""How the errors of :func:`~loftup.extract.upsample_folder` call its arguments: from Python
by their names (the output folder as ``out``, going on as ``resume=True``), from the command
line as its options, which ``loftup upsample`` passes in ``said_as`` (``{"out": "-o",
"resume": "--resume"}``). Those of a function told a Python caller "--resume" and "-o"."""

from __future__ import annotations

#: What a Python caller is told where ``said_as`` names nothing else.
FROM_PYTHON = {"out": "out", "resume": "resume=True"}


def said(name: str, said_as: dict | None) -> str:
    """How an error calls the argument ``name``: as ``said_as`` names it, else as
    :data:`FROM_PYTHON` does, else by its own name."""
    return {**FROM_PYTHON, **(said_as or {})}.get(name, name)
