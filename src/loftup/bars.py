"""How loftup's progress bars are drawn (tqdm's settings, one rule for every bar): on stderr;
on a terminal or in a notebook redrawn ten times a second, nested bars on lines of their own;
into a file or a pipe (a log) every 5 seconds, each draw on the one line, so that a log of a
long run holds its progress without thousands of lines or the cursor moves that nest bars on
a terminal."""

from __future__ import annotations

import os
import sys


def _in_a_notebook() -> bool:
    """Whether this runs under IPython (a Jupyter kernel: its stderr says it is no terminal,
    yet draws a bar as one does). Asked of an IPython already imported, never imported here."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get is not None and get() is not None


def bar_settings(position: int | None = None, *, shown: bool = True) -> dict:
    """tqdm's keyword arguments for a bar drawn where loftup draws its bars (see above);
    ``position``: its line on a terminal (a process's of several), 0 in a log; ``shown``:
    False hides the bar (``--no-progress``), True leaves that to tqdm (``TQDM_DISABLE=1`` in its
    environment hides it: a ``disable=False`` given with every bar drew them all the same)."""
    tty = getattr(sys.stderr, "isatty", lambda: False)() or _in_a_notebook()
    settings = {"file": sys.stderr, "mininterval": 0.1 if tty else 5.0, "dynamic_ncols": tty}
    if not tty:  # a bar opened under another drew each update on a new line and moved back up
        settings["position"] = 0
    elif position is not None:
        settings["position"] = position
    # one the user set in tqdm's environment (TQDM_MININTERVAL=30) is theirs: a keyword given
    # here would override it, as it did every bar once they all took these settings; a tqdm
    # before 4.66 reads none (it would draw at its own 0.1 s): ours are kept there
    if _reads_environment():
        settings = {k: v for k, v in settings.items() if f"TQDM_{k.upper()}" not in os.environ}
    return settings if shown else {**settings, "disable": True}  # --no-progress: whatever it says


def _reads_environment() -> bool:
    """Whether the installed tqdm takes its defaults from ``TQDM_*`` variables (4.66 on)."""
    from tqdm import __version__

    try:
        return tuple(int(p) for p in __version__.split(".")[:2]) >= (4, 66)
    except ValueError:  # a development build's: as the newest
        return True
