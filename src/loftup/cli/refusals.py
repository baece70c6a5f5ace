"""Errors of a command that are the user's input refused (a path of no home folder, a hub id
that is none), told apart from loftup's own failures: said as one line, status 2."""

from __future__ import annotations

from ..errors import LoftUpError


def _homeless_path(args, e: BaseException) -> str | None:
    """Where ``e`` is Path.expanduser's RuntimeError (a path of ``~user`` of no user of this
    machine, or ``~`` with HOME unset): what to say of the first such argument; else None."""
    from ..data.paths import home_expanded

    if not (isinstance(e, RuntimeError) and "home directory" in str(e)):
        return None
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            try:
                if isinstance(item, str) and item.startswith("~"):
                    home_expanded(item, "path")
            except LoftUpError as named:
                return str(named)
    return "a path's leading ~ names no home folder here (no such user, or HOME unset)"


def _bad_hub_id(e: BaseException) -> bool:
    """Whether ``e`` is huggingface_hub's refusal of a hub id the user gave (``download 'a
    b/c'``, ``--backbone-weights org/``, a local folder mistyped): a ValueError traceback."""
    try:
        from huggingface_hub.utils import HFValidationError
    except ImportError:  # without the hub no such error
        return False
    return isinstance(e, HFValidationError)
