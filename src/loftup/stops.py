"""A stop (SIGTERM, Ctrl-C, SIGHUP) that a signal handler of loftup's raised in a finaliser,
where Python drops it, raised again where the work goes on.

Python cannot pass on an exception raised in a finaliser: a generator closed as the garbage
collector (or a dropped reference) finalises it, a ``__del__`` (a progress bar's, a DataLoader
iterator's), a weakref callback. It prints ``Exception ignored in: ...`` and the program goes
on. A handler whose turn came there lost its stop: the run went on, ended with status 0, or
left its temporary files. So the handlers raise through :func:`stop`, and while a :class:`Scope`
is open (the command line's, a training run's) a stop that Python hands to
``sys.unraisablehook`` is kept instead of printed; the streamed loops (each image of ``loftup
upsample``, each tile, each DAVIS frame) call :func:`check`, which raises it again, and so
does the command line as the command returns.
"""

from __future__ import annotations

import sys

#: the stop a handler raised last in the open scopes, those a finaliser swallowed (to be
#: raised again), and how many scopes are open
_RAISED: list[BaseException] = []
_SWALLOWED: list[BaseException] = []
_OPEN = [0]


def stop(e: BaseException):
    """Raise the stop ``e`` (a signal handler's ``KeyboardInterrupt``, ``Terminated``,
    ``HungUp``), known where a :class:`Scope` is open: one a finaliser swallows is raised again
    by :func:`check`."""
    if _OPEN[0]:  # the last one only (a finaliser swallows it as it is raised): its
        _RAISED[:] = [e]  # traceback's frames are not kept for the scope's time
    raise e


def interrupt(signum=None, frame=None) -> None:
    """Ctrl-C: ``KeyboardInterrupt``, as Python's own SIGINT handler raises it (the command
    line's SIGINT handler where Python's was set)."""
    stop(KeyboardInterrupt())


def check() -> None:
    """Raise again the stop a handler raised in an open scope that a finaliser swallowed (the
    work went on); nothing otherwise. Call it where work goes on (before an image, a tile, a
    frame): a stop that came out, and was caught, is not raised again."""
    if _SWALLOWED:
        raise _SWALLOWED.pop(0)


def first(items):
    """The first of ``items`` (``module.parameters()``), its generator closed here rather
    than finalised where it is dropped, where a stop raised in it would be lost (a handler's
    turn comes in a generator's close under a profile or trace hook)."""
    it = iter(items)
    try:
        return next(it)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class Scope:
    """While open (``with Scope():``), a stop :func:`stop` raised that a finaliser swallows is
    kept for :func:`check`, and not printed (``Exception ignored in``); closing the outermost
    forgets them. Main thread only, as signal handlers are."""

    def __enter__(self) -> Scope:
        if not _OPEN[0]:
            _RAISED.clear()
            _SWALLOWED.clear()
            self._hook = sys.unraisablehook
            sys.unraisablehook = _unraisable(self._hook)
        _OPEN[0] += 1
        return self

    def __exit__(self, *exc) -> None:
        _OPEN[0] -= 1
        if not _OPEN[0]:
            _RAISED.clear()
            _SWALLOWED.clear()
            sys.unraisablehook = self._hook


def _unraisable(hook):
    """``hook`` (``sys.unraisablehook``), for what is not a stop :func:`stop` raised: those are
    kept for :func:`check` instead."""

    def unraisable(info) -> None:
        if any(info.exc_value is e for e in _RAISED):
            _SWALLOWED.append(info.exc_value)
        else:
            hook(info)

    return unraisable
