"""How an error calls the arguments of its caller: from Python by their names (the output
folder as ``out``, going on as ``resume=True``), from the command line as its options, which
the command passes in ``said_as`` (``{"out": "-o", "resume": "--resume"}``, ``loftup
upsample``'s to :func:`~loftup.extract.upsample_folder`). Those of a function told a Python
caller "--resume" and "-o". Under everything that words an error (the backbones' own, a
blank name, :func:`loftup.featurizers.refuse_blank`), so it imports nothing of loftup."""

from __future__ import annotations

#: What a Python caller is told where ``said_as`` names nothing else.
FROM_PYTHON = {"out": "out", "resume": "resume=True", "viz": "viz=True"}


def said(name: str, said_as: dict | None) -> str:
    """How an error calls the argument ``name``: as ``said_as`` names it, else as
    :data:`FROM_PYTHON` does, else by its own name."""
    return {**FROM_PYTHON, **(said_as or {})}.get(name, name)


def said_with(name: str, value, said_as: dict | None, *others) -> str:
    """The argument ``name`` given ``value`` (or one of ``others``), as its caller writes it:
    ``--save-dtype float16 or float32`` where ``said_as`` names it (a command line), else
    ``save_dtype='float16' or 'float32'`` (each a value Python takes; ``save_dtype float16``
    was none)."""
    flag = (said_as or {}).get(name)
    values = " or ".join((str if flag else repr)(v) for v in (value, *others))
    return f"{flag} {values}" if flag else f"{name}={values}"


def said_value(name: str, value, said_as: dict | None) -> str:
    """A recorded option's ``value`` (the record's, or the current run's) as its caller gives
    it: on a command line (``said_as`` naming ``name``) a name or number as typed, a size as
    HxW, an unset one as ``unset``; from Python as its repr; either shortened past
    :data:`ECHOED_CHARS` characters (:func:`echoed`)."""
    if name not in (said_as or {}):
        return echoed(repr(value))
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return echoed("x".join(str(v) for v in value))
    return echoed(str(value))


#: The most characters of a value that an error echoes (one read from a file, a run's record,
#: or the current run's option it is compared with): a damaged or edited record's 1 MB string
#: or list of 100,000 entries made as long a refusal.
ECHOED_CHARS = 200


def echoed(text: str) -> str:
    """``text``, a value of any length (read from a file, or given), as a message echoes it:
    whole up to :data:`ECHOED_CHARS` characters, else its start and its end (a path's file
    name) with how many characters were left out between them."""
    if len(text) <= ECHOED_CHARS:
        return text
    half = ECHOED_CHARS // 2
    cut = f"[... shortened: {len(text) - 2 * half} characters left out ...]"
    return f"{text[:half]}{cut}{text[-half:]}"
