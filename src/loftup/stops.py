"""A stop (SIGTERM, Ctrl-C, SIGHUP) that a signal handler of loftup's raised in a finaliser,
where Python drops it, raised again where the work goes on.

Python cannot pass on an exception raised in a finaliser: a generator closed as the garbage
collector (or a dropped reference) finalises it, a ``__del__`` (a progress bar's, a DataLoader
iterator's), a weakref callback. It prints ``Exception ignored in: ...`` and the program goes
on. A handler whose turn came there lost its stop: the run went on, ended with status 0, or
left its temporary files. So the handlers raise through :func:`stop`, and while a :class:`Scope`
is open (the command line's, a training run's) a stop that Python hands to
``sys.unraisablehook`` (a Ctrl-C of Python's own SIGINT handler too) is kept instead of
printed; the loops (each image of ``loftup upsample``, each tile, each DAVIS frame, each probe
batch, each benchmark round) call :func:`check`, which raises it again, and so does the
command line as the command returns. Outside any scope (a library caller that opens none)
it is printed and lost, as Python does. A
SIGTERM (SIGHUP) kept so has its handler put back: its own left it ignored for the clean-up,
and a second one stops the work at once; raised again, it is ignored again for the clean-up.
Once the work of a scope is :func:`done`, one is forgotten until that scope closes.
"""

from __future__ import annotations

import contextlib
import sys

#: the stops a finaliser swallowed (to be raised again), the scopes open (in the order opened;
#: one whose work is :func:`done` says so), and the hook the outermost scope replaced
_SWALLOWED: list[BaseException] = []
_SCOPES: list[Scope] = []
_HOOK: list = [None]
#: the attribute that marks an exception :func:`stop` raised in an open scope: its value, the
#: handler to put back for a signal (``(signum, handler)``) where a finaliser swallows it
_MARK = "_loftup_stop"


#: set while :func:`loftup.cli.main` runs on the main thread: the process is the command's, so
#: a thread may end it (os._exit) with the command's one line where the main thread is held in
#: torch's C++ (:mod:`loftup.extract.watch`), and a training run a stop ended leaves SIGTERM
#: and SIGHUP ignored for the rest of the command (:class:`loftup.train.stopping.StopOnSignals`;
#: the console script leaves them so to the process's end, :func:`loftup.cli.main` called from
#: Python puts them back); never where a Python caller owns it (whatever handlers it installed)
_OWNS_PROCESS: list[bool] = []
#: set (:func:`clean_up_only`) where the command's work is complete and SIGTERM and SIGHUP are
#: left ignored for the rest of it: read by :func:`loftup.cli.main` as it returns
_CLEAN_UP_ONLY: list[bool] = []


@contextlib.contextmanager
def owning_the_process():
    """For the ``with`` block, :func:`owns_process` is true (the command line's main); a
    command's :func:`clean_up_only` is forgotten as the next one begins."""
    _OWNS_PROCESS.append(True)
    _CLEAN_UP_ONLY.clear()
    try:
        yield
    finally:
        _OWNS_PROCESS.pop()


def owns_process() -> bool:
    """Whether loftup's command line owns this process (:func:`owning_the_process`)."""
    return bool(_OWNS_PROCESS)


def clean_up_only() -> None:
    """The command line's work is complete, and SIGTERM and SIGHUP are ignored for the rest of
    the command (a ``loftup train`` under torchrun whose ranks voted no stop at its end: one
    that reached a single rank ended it alone, and torchrun failed the job of a complete run):
    the console script leaves them ignored to the process's end (:func:`loftup.cli.main`),
    an in-process caller of main gets its handlers back. Nothing where the command line does
    not own the process."""
    if _OWNS_PROCESS:
        _CLEAN_UP_ONLY[:] = [True]


def only_clean_up_left() -> bool:
    """Whether the command that owns this process said :func:`clean_up_only`."""
    return bool(_CLEAN_UP_ONLY)


def stop(e: BaseException, rearm: tuple | None = None):
    """Raise the stop ``e`` (a signal handler's ``KeyboardInterrupt``, ``Terminated``,
    ``HungUp``), known where a :class:`Scope` is open: one a finaliser swallows is raised again
    by :func:`check`. ``rearm``: ``(signum, handler)``, the handler the caller took off
    ``signum`` (set to ignore a second signal during the clean-up), put back where a finaliser
    swallows ``e`` (the work goes on, and a second signal then stops it at once)."""
    if _SCOPES:  # marked on the exception itself: nothing of it (its frames) is kept here
        setattr(e, _MARK, rearm or ())
    raise e


def interrupt(signum=None, frame=None) -> None:
    """Ctrl-C: ``KeyboardInterrupt``, as Python's own SIGINT handler raises it (the command
    line's SIGINT handler where Python's was set)."""
    stop(KeyboardInterrupt())


def check() -> None:
    """Raise again the stop a handler raised in an open scope that a finaliser swallowed (the
    work went on); nothing otherwise. Call it where work goes on (before an image, a tile, a
    frame): a stop that came out, and was caught, is not raised again. Raised again in a
    finaliser, it is kept again. Main thread only (as signal handlers run): in another thread
    it does nothing, leaving the stop to the main thread's work. A SIGTERM (SIGHUP) whose
    handler was put back as it was swallowed is ignored again, as its handler left it, so that
    a second one (launchers send two) does not cut short the clean-up this one starts."""
    if not _SWALLOWED or not _main_thread():
        return
    e = _SWALLOWED.pop(0)
    rearm = getattr(e, _MARK, None) or None
    if rearm:
        import signal

        if signal.getsignal(rearm[0]) == rearm[1]:  # (not one its owner put back since)
            signal.signal(rearm[0], signal.SIG_IGN)
    stop(e, rearm)


def done() -> None:
    """The work of the innermost open scope is done (``eval davis --save-masks``: the masks
    are in place, in the scope of their move): a stop a finaliser swallowed, or swallows until
    that scope closes, is forgotten, as a signal held while the masks went into place is (a
    stop that comes out still stops what runs). Work after that scope closes, in the scopes
    around it, keeps them again."""
    if _SCOPES:
        _SWALLOWED.clear()
        _SCOPES[-1]._done = True


def first(items, *default):
    """The first of ``items`` (``module.parameters()``), its generator closed here rather
    than finalised where it is dropped, where a stop raised in it would be lost (a handler's
    turn comes in a generator's close under a profile or trace hook); ``default`` (where
    given) for none, else StopIteration."""
    it = iter(items)
    try:
        return next(it, *default)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class Scope:
    """While open (``with Scope():``), a stop :func:`stop` raised that a finaliser swallows is
    kept for :func:`check`, and not printed (``Exception ignored in``); closing the outermost
    (in any order) forgets them and puts back the hook. Main thread only, as signal handlers
    are."""

    _open = False
    _done = False  # (its work done: :func:`done`)

    def __enter__(self) -> Scope:
        if self._open:
            return self
        if not _SCOPES:
            _SWALLOWED.clear()
            _HOOK[0] = sys.unraisablehook
            sys.unraisablehook = _unraisable
        _SCOPES.append(self)
        self._open, self._done = True, False
        return self

    def __exit__(self, *exc) -> None:
        if not self._open:  # (closed already)
            return
        self._open = False
        _SCOPES.remove(self)  # (its work's done with it)
        if not _SCOPES:
            _SWALLOWED.clear()
            sys.unraisablehook, _HOOK[0] = _HOOK[0], None


def _unraisable(info) -> None:
    """``sys.unraisablehook`` while a scope is open: a stop :func:`stop` raised is kept for
    :func:`check` (forgotten while an open scope's work is :func:`done`), its signal's handler
    put back either way (the work goes on: a second signal stops it), and so is a Ctrl-C that
    Python's own SIGINT handler raised (a library caller's: unmarked, no handler to put
    back); anything else goes to the hook there was."""
    rearm = getattr(info.exc_value, _MARK, None)
    if rearm is None and type(info.exc_value) is KeyboardInterrupt:  # (default_int_handler's)
        rearm = ()
    if rearm is None or not _SCOPES:
        (_HOOK[0] or sys.__unraisablehook__)(info)
        return
    if rearm:
        _put_back(*rearm)
    if not any(scope._done for scope in _SCOPES):
        _SWALLOWED.append(info.exc_value)


def _put_back(signum: int, handler) -> None:
    """``handler`` on ``signum`` again, where it is ignored (as the stop's handler left it),
    in the main thread only (a finaliser may run in another)."""
    import signal

    if _main_thread() and signal.getsignal(signum) == signal.SIG_IGN:
        signal.signal(signum, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
