"""A line on stderr from a signal handler (:class:`.stopping.StopOnSignals` says that a run
stops after its step): the handler may have interrupted a write to ``sys.stderr``, whose buffer
then refuses another, and stderr may be closed or missing."""

from __future__ import annotations

import os
import sys


def say_from_handler(line: str) -> None:
    """``line`` on stderr from a signal handler, under any progress bar's line: through
    ``sys.stderr`` (a notebook's shows it), or straight to the descriptor where the handler
    interrupted a write to ``sys.stderr``'s buffer, which refuses another."""
    try:
        print(f"\n{line}", file=sys.stderr, flush=True)
    except RuntimeError:  # "reentrant call inside <_io.BufferedWriter name='<stderr>'>"
        try:
            os.write(2, f"\n{line}\n".encode())
        except OSError:
            pass
    except (OSError, ValueError, AttributeError):  # a closed or missing stderr: no one to tell
        pass
