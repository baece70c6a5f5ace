"""Errors a user can act on.

Every error the library raises on purpose for bad input, missing weights or broken files derives
from :class:`LoftUpError`. The command line prints such an error as one line (no traceback) and
exits with status 2, and so it does with three kinds the user can also act on: a path of theirs
the file system refuses (a file where a folder goes, no permission, a full disk), running out of
memory (:func:`out_of_memory`, :func:`memory_shortfall`) and an optional package that is not
installed (:func:`missing_dependency`: which one, and the pip command). Anything else is a bug
and keeps its traceback.

Each subclass is also the built-in error that the same mistake raised before it was a
LoftUpError (:class:`UsageError` a ValueError, :class:`UsageTypeError` a TypeError, ...), so
that code catching those keeps working. Two kinds of error stay plain ValueErrors on purpose: functions
on tensors that behave like torch's (the metrics of :mod:`loftup.eval.metrics`, label
propagation, the kernels of :mod:`loftup.kernels`), which say what shape they want as torch's
functions do, the commands checking their inputs before they reach them; and internal checks
that no argument or file can reach (a bug when one fires).
"""

from __future__ import annotations

import re

from .escaping import printable  # also for the lines that print, which import it from here
from .stops import stop


class LoftUpError(Exception):
    """Base class of the errors that carry a message meant for the user."""


class WeightsNotFoundError(LoftUpError, FileNotFoundError):
    """Weights are neither at the given path, nor in the cache, nor downloadable."""


class CheckpointError(LoftUpError, ValueError):
    """A weights file is corrupt, truncated, unsafe or in no known layout."""


class UsageError(LoftUpError, ValueError):
    """An argument outside the values it may take (a benchmark suite or section, say)."""


class UsageTypeError(LoftUpError, TypeError):
    """A call that cannot be taken as made (two ways of giving the same settings, say): a
    TypeError, as Python's own for a call with the wrong arguments."""


class BrokenFileError(LoftUpError, ValueError):
    """A file of the user's (a run's record, say) that cannot be read or holds something other
    than it should; the message names the file."""


class PathPermissionError(LoftUpError, PermissionError):
    """A path of the user's lies in a folder this user may not search (EACCES): the message
    names the folder and the fix (:func:`loftup.paths.check_visible`); or it is a file this
    user may not read (another user's of mode 600, one of 000): the message gives its mode and
    owner and the fix (:func:`loftup.read_refusal.read_refused`)."""


def is_int(value) -> bool:
    """Whether ``value`` is an integer a count or a size may be: an ``int`` and not a ``bool``
    (``True`` is an ``int`` to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def one_line(e: BaseException, limit: int | None = 200, typed: bool = False) -> str:
    """``e``'s message on one line, all its lines joined (runs of whitespace made one space),
    cut to ``limit`` characters (None: whole), or the name of its type when it has no message
    (or its ``__str__`` fails): the "why" of an error line built from a library's error whose
    later lines say something too; ``typed``: that name before it, ``OSError: ...`` (the name
    alone where there is no message). :func:`first_line` keeps the first line alone (a
    traceback's or a tool's text, whose later lines are detail)."""
    text = " ".join(_text(e).split())[:limit]
    name = type(e).__name__
    return (f"{name}: {text}" if typed else text) if text else name


def first_line(said: BaseException | str, limit: int | None = 200, typed: bool = False) -> str:
    """The first line of ``said`` (an error's message, or a text) that is not blank, stripped
    and cut to ``limit`` characters (None: whole); where there is none (an empty message, or
    one of whitespace alone, or a ``__str__`` that fails), the name of the error's type (""
    for a text). ``typed``: that name before the line, ``OSError: ...`` (the name alone where
    there is no line). Not escaped: a line that quotes it passes it through :func:`printable`.
    :func:`one_line` keeps every line, joined."""
    text = said if isinstance(said, str) else _text(said)
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")[:limit]
    name = "" if isinstance(said, str) else type(said).__name__
    return (f"{name}: {line}" if typed and name else line) if line else name


def _text(e: BaseException) -> str:
    """``str(e)``, or "" where its ``__str__`` fails (said by its type, not a second error)."""
    try:
        return str(e)
    except Exception:  # noqa: BLE001 - any error of a library's __str__
        return ""


def check_threads(threads) -> None:
    """A :class:`UsageError` unless ``threads`` (``--threads``) is None (torch's default) or an
    integer of at least 1."""
    if threads is not None and (not is_int(threads) or threads < 1):
        raise UsageError(f"--threads must be at least 1 (torch threads; leave it out for torch's "
                         f"default), got {threads}")  # fmt: skip


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's cancel, time limit or preemption; torchrun stopping its other
    processes), raised in the main thread like Ctrl-C so that what is half-written is removed on
    the way out. Training first finishes its step and writes a checkpoint."""


def terminate(signum=None, frame=None) -> None:
    """Raise :class:`Terminated`, ignoring any later SIGTERM: launchers often send a second one
    (torchrun passes on the one its process group got), which would otherwise interrupt the
    clean-up of the first, or the interpreter's exit (a process then hung until SIGKILL). The
    command line's SIGTERM handler; whoever installed it puts the previous one back
    (:func:`loftup.cli.main` as it returns; for the ``loftup`` console script, after a stop,
    it leaves SIGTERM and SIGHUP ignored instead, for the interpreter's exit)."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # kept where a finaliser swallows it, raised again at the next check (loftup.stops), the
    # handler put back meanwhile: the work goes on, and a second SIGTERM stops it at once
    stop(Terminated(), (signal.SIGTERM, previous) if callable(previous) else None)


class MissingDependencyError(LoftUpError, ImportError):
    """An optional package that a feature needs is not installed, or will not run beside the
    installed torch."""


#: import name -> (the package that provides it, the extra of loftup that installs it)
OPTIONAL_PACKAGES = {
    "transformers": ("transformers", "backbones"),
    "PIL": ("pillow", "backbones"),
    "matplotlib": ("matplotlib", "viz"),
    "scipy": ("scipy", "eval"),
    "h5py": ("h5py", "eval"),
    "skimage": ("scikit-image", "eval"),
    "pycocotools": ("pycocotools", "train"),
    "yaml": ("pyyaml", "train"),
    "tensorboard": ("tensorboard", "train"),
    "triton": ("triton", "gpu"),
}


def missing_dependency(e: BaseException, needed_for: str = "this") -> str | None:
    """For an ImportError of one of :data:`OPTIONAL_PACKAGES`: what is missing, what needs it
    and the command that installs it, in one line; else None (a missing module of ours or of
    torch is a bug or a broken install, and keeps its traceback)."""
    if isinstance(e, MissingDependencyError):
        return str(e)
    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return None
    top = e.name.split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    package, extra = OPTIONAL_PACKAGES[top]
    return (
        f"{package} is not installed, and {needed_for} needs it: pip install "
        f"'loftup[{extra}]' (or pip install {package})"
    )


def require(modules: dict[str, str]) -> None:
    """Import each of ``modules`` (import name -> what needs it, in words) now, before any
    work, so that a missing optional package is said at the start of a run, not hours into it:
    a :class:`MissingDependencyError` naming the package (or all the missing ones, in one
    line), what needs it and how to install it."""
    import importlib

    missing: dict[str, tuple[ModuleNotFoundError, str]] = {}
    for module, needed_for in modules.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if missing_dependency(e) is None:
                raise
            missing[e.name.split(".")[0]] = (e, needed_for)
    if len(missing) == 1:
        ((e, needed_for),) = missing.values()
        raise MissingDependencyError(missing_dependency(e, needed_for)) from e
    if missing:
        packages = [OPTIONAL_PACKAGES[m][0] for m in missing]
        extras = ",".join(sorted({OPTIONAL_PACKAGES[m][1] for m in missing}))
        uses = "; ".join(f"{OPTIONAL_PACKAGES[m][0]}: {why}" for m, (_, why) in missing.items())
        raise MissingDependencyError(
            f"{', '.join(packages)} are not installed, and this needs them ({uses}): pip "
            f"install 'loftup[{extras}]' (or pip install {' '.join(packages)})"
        )


class UnknownNameError(LoftUpError, KeyError):
    """A model or backbone name that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def did_you_mean(name, names) -> str:
    """ " (did you mean A, B or C?)": the (at most 3) of ``names`` that ``name`` may have meant,
    case and ``-`` for ``_`` aside: the one it then is, alone; else, for a ``name`` of 3
    characters or more, those it begins (a shorthand: ``clip``, ``dinov2_t``), not padded with
    others; else those difflib's get_close_matches finds (a typo); for an unknown name's
    message; "" where none is. (One or two letters begin too many names to tell which.)"""
    import difflib

    names = list(names)
    key = str(name).lower().replace("-", "_")
    spelled = {n.lower().replace("-", "_"): n for n in reversed(names)}  # the first kept
    spelled = {k: spelled[k] for k in reversed(spelled)}  # in the order of names
    if key in spelled:
        close = [spelled[key]]
    else:
        begun = [k for k in spelled if len(key) >= 3 and k.startswith(key)]
        close = begun or difflib.get_close_matches(key, list(spelled), 3, 0.75)
        close = [spelled[k] for k in close[:3]]
    if not close:
        return ""
    listed = f"{', '.join(close[:-1])} or {close[-1]}" if len(close) > 1 else close[0]
    return f" (did you mean {listed}?)"


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` says the host or the GPU had no memory for an allocation."""
    import torch

    # torch.OutOfMemoryError is torch.cuda's class under its newer name (torch 2.5 on)
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(e, (MemoryError, oom)):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def memory_shortfall(e: BaseException) -> str:
    """What an out-of-memory error says in a few words: ``the host could not allocate 28.8 GB``
    (PyTorch's CPU allocator; NumPy's in its own units), ``the GPU could not allocate 2.00 GiB``
    (CUDA's), else its first line."""
    text = str(e)
    host = re.search(r"tried to allocate (\d+) bytes", text)
    numpy = re.search(r"Unable to allocate (\d+(?:\.\d+)?)\.? ([KMGT]i?B)", text)
    gpu = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]i?B)", text)
    if host:
        return f"the host could not allocate {int(host.group(1)) / 1e9:.1f} GB"
    if numpy:
        return f"the host could not allocate {numpy.group(1)} {numpy.group(2)}"  # not "149. GiB"
    if gpu:
        return f"the GPU could not allocate {gpu.group(1)}"
    if isinstance(e, MemoryError) and not text.strip():
        return "the host ran out of memory"
    return first_line(e)


def worker_ignores_sigterm(worker_id: int) -> None:
    """A DataLoader's ``worker_init_fn``: the worker ignores SIGTERM. A scheduler sends it to
    every process of the job (Slurm does), and a worker killed by it makes PyTorch raise "worker
    killed by signal" in the main process, at any point, instead of letting the main process
    stop cleanly (training: after the current step, with a checkpoint). Workers still end with
    their loader, or with the main process (PyTorch's watchdog)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_message(e: BaseException) -> str | None:
    """The original message of an error that a DataLoader worker raised (None for another)."""
    text = str(e)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return None
    names = {type(e).__name__, f"{type(e).__module__}.{type(e).__qualname__}"}
    for line in reversed(text.splitlines()):
        name, sep, message = line.partition(": ")
        if sep and name in names:
            return message
    return None


#: PyTorch's words for a worker process that ended without a Python error (a signal), its
#: SIGCHLD handler's and its iterator's; group 1: the pids (``loftup.train.feed`` names the
#: file each was reading)
WORKER_DIED = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\) (?:exited|is killed)")


def from_workers(loader, workers: str = "the DataLoader's num_workers"):
    """The batches of ``loader`` (a DataLoader). A :class:`LoftUpError` a worker raised (an
    unreadable file) is raised again with its own message, one line (PyTorch pastes the
    worker's traceback into it); a worker that died without one (killed for lack of memory, a
    crash in a native reader) is a LoftUpError saying to lower ``workers`` (the setting's name
    as the user gives it). The workers are shut down when the iteration ends, is closed
    or fails: left to the garbage collector they would outlive the run (they ignore SIGTERM),
    and the interpreter's exit would wait on them for ever."""
    it = iter(loader)
    try:
        yield from it
    except LoftUpError as e:
        message = worker_message(e)
        if message is None:
            raise
        raise type(e)(message) from None
    except RuntimeError as e:
        if not WORKER_DIED.match(str(e)):
            raise
        raise LoftUpError(
            f"a data-loading worker process died without an error ({printable(str(e))}): the "
            "system killed "
            "it, most often for lack of host memory, or a library crashed on a file; lower "
            f"{workers}, or set it to 0 to read in this process"
        ) from None
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()
