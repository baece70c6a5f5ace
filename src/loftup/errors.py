"""Errors a user can act on.

Every error the library raises on purpose for bad input, missing weights or broken files derives
from :class:`LoftUpError`. The command line prints such an error as one line (no traceback) and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LoftUpError(Exception):
    """Base class of the errors that carry a message meant for the user."""


class WeightsNotFoundError(LoftUpError, FileNotFoundError):
    """Weights are neither at the given path, nor in the cache, nor downloadable."""


class CheckpointError(LoftUpError, ValueError):
    """A weights file is corrupt, truncated, unsafe or in no known layout."""


class UsageError(LoftUpError, ValueError):
    """An argument outside the values it may take (a benchmark suite or section, say)."""


class UnknownNameError(LoftUpError, KeyError):
    """A model or backbone name that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
