"""Progress of a measurement: one tqdm bar (on stderr) per table or suite section, counting the
calls it times, with the case being timed beside it.

The bar is opened by whoever runs the section (:func:`bar`); the timing loops below it
(:func:`loftup.bench.core.time_alternating`, the forward table's first calls) only
:func:`tick`, and do nothing where no bar is open. A table that knows how many calls it will
make adds them to the bar's total (:func:`expect`), so that its bar shows how far it has got.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_BAR: ContextVar = ContextVar("loftup_bench_bar", default=None)
_WHERE: ContextVar = ContextVar("loftup_bench_where", default="")


def active() -> bool:
    """Whether a bar is open (a table run inside a suite's section adds to it)."""
    return _BAR.get() is not None


@contextmanager
def bar(desc: str, *, enabled: bool = True, total: int | None = None) -> Iterator[None]:
    """A bar named ``desc`` on stderr while the block runs (none when not ``enabled``). On a
    terminal it is redrawn ten times a second; into a file or a pipe (a log) every 5 seconds,
    so that a log of a long run holds its progress without thousands of lines
    (:func:`loftup.bars.bar_settings`)."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    from ..bars import bar_settings

    b = tqdm(desc=desc, total=total, unit="call", **bar_settings())
    token = _BAR.set(b)
    try:
        yield
    finally:
        _BAR.reset(token)
        b.close()


def expect(calls: int) -> None:
    """Add ``calls`` to the open bar's total."""
    b = _BAR.get()
    if b is not None:
        b.total = (b.total or 0) + calls
        b.refresh()


@contextmanager
def where(text: str) -> Iterator[None]:
    """``text`` (the output size, say) shown before each case's name while the block runs."""
    token = _WHERE.set(text)
    try:
        yield
    finally:
        _WHERE.reset(token)


def tick(note: str | None = None) -> None:
    """One call done (``note``: the case it timed, shown beside the bar)."""
    b = _BAR.get()
    if b is None:
        return
    if note is not None:
        b.set_postfix_str(f"{_WHERE.get()} {note}".strip(), refresh=False)
    b.update(1)


def done() -> int:
    """The calls the open bar has counted (0 where none is open)."""
    b = _BAR.get()
    return 0 if b is None else b.n


def catch_up(count: int) -> None:
    """Move the open bar on to ``count`` calls (where fewer ran than expected: a timing budget
    cut the rounds, or a case failed on its first call)."""
    b = _BAR.get()
    if b is not None and b.n < count:
        b.update(count - b.n)
