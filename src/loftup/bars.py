"""How loftup's progress bars are drawn (tqdm's settings, one rule for every bar): on stderr;
on a terminal redrawn ten times a second, nested bars on lines of their own; into a file or a
pipe (a log) every 5 seconds, each draw on the one line, so that a log of a long run holds its
progress without thousands of lines or the cursor moves that nest bars on a terminal."""

from __future__ import annotations

import sys


def bar_settings() -> dict:
    """tqdm's keyword arguments for a bar drawn where loftup draws its bars (see above)."""
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    settings = {"file": sys.stderr, "mininterval": 0.1 if tty else 5.0, "dynamic_ncols": tty}
    if not tty:  # a bar opened under another drew each update on a new line and moved back up
        settings["position"] = 0
    return settings
