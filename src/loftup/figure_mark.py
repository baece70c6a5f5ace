"""The mark of a PNG figure loftup drew: a ``Software`` text chunk naming loftup, which every
figure writer sets (:func:`png_metadata`, matplotlib's ``savefig(metadata=...)``) and
:func:`is_loftup_png` reads. A command that draws a figure at a path the user did not name
(``loftup bench --json b/x.json`` draws ``b/x.png``; an experiment's ``bars.png``) replaces
a file there only where it bears the mark, or beside the report (``--json``) loftup wrote with
it (:func:`check_replaceable`): a user's own picture of that name is refused, not overwritten
without a word."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable

#: What the ``Software`` chunk of loftup's figures begins with (the version follows).
SOFTWARE = "loftup"
#: The version whose figures first bear the mark: those of an earlier one bear none.
MARKED_SINCE = "0.1.0"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Chunks read before giving up: the text chunks come before the image data, a few of them.
_MOST_CHUNKS = 64


def png_metadata() -> dict:
    """``savefig(..., metadata=png_metadata())``: the mark, ``Software: loftup VERSION``
    (in place of matplotlib's own ``Software`` entry)."""
    from . import __version__

    return {"Software": f"{SOFTWARE} {__version__}"}


def is_loftup_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG bearing loftup's mark (a ``tEXt`` chunk ``Software`` whose
    text begins with ``loftup``, before the image data). Anything else, a file that cannot be
    read and a folder included, is not; nor is a pipe, socket or device, never opened (a
    pipe's read waits for a writer: an experiment's figure name that was one hung it)."""
    if not _regular(path):
        return False
    try:
        with open(path, "rb") as f:
            if f.read(8) != _SIGNATURE:
                return False
            for _ in range(_MOST_CHUNKS):
                head = f.read(8)
                if len(head) < 8:
                    return False
                length, kind = struct.unpack(">I4s", head)
                if kind in (b"IDAT", b"IEND"):
                    return False
                if kind == b"tEXt" and length <= 4096:
                    key, _, text = f.read(length).partition(b"\0")
                    if key == b"Software" and text.split(b" ")[0] == SOFTWARE.encode():
                        return True
                    f.seek(4, os.SEEK_CUR)  # its CRC
                else:
                    f.seek(length + 4, os.SEEK_CUR)
    except (OSError, struct.error):  # a folder, no permission, or cut short
        return False
    return False


def save_figure(fig, path: str | os.PathLike, dpi: int, *, follow_links: bool = False) -> None:
    """Matplotlib's ``fig`` written to ``path`` as a PNG bearing the mark, put in place whole
    (:func:`loftup.atomic.atomic_write`; ``follow_links``: a link named there stays one)."""
    from .atomic import atomic_write

    mark = png_metadata()
    atomic_write(
        path,
        lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", metadata=mark),
        follow_links=follow_links,
    )


def check_replaceable(
    path: str | os.PathLike,
    by: str,
    beside: str | os.PathLike | None = None,
    own: Callable[[dict], bool] | None = None,
) -> None:
    """A :class:`~loftup.errors.UsageError` where the figure ``by`` (say ``"the figure of
    --json b/x.json"``), drawn at ``path``, a path the user did not name, would replace a file
    there that is not a figure loftup drew: a user's own b/x.png was replaced without a word.
    An earlier run's figure is replaced: one bearing the mark, or a PNG without it (drawn
    before :data:`MARKED_SINCE`) beside the JSON ``beside`` where ``own`` says its object is
    loftup's own report of the kind that draws this figure."""
    from .errors import UsageError

    if not os.path.lexists(path) or is_loftup_png(path):
        return
    if beside is not None and own is not None and _is_png(path) and _own_report(beside, own):
        return  # an earlier version's figure, beside its report
    raise UsageError(
        f"{path} bears no loftup mark (figures loftup drew before version {MARKED_SINCE} bear "
        f"none), and {by} would replace it; give --figure another path for the figure (or "
        f"--figure {path} to replace that file)"
    )


def _regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a plain file (a link followed), read by its status alone."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # not there, no permission, a name with a NUL
        return False


def _is_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a plain file beginning with the PNG signature."""
    if not _regular(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(8) == _SIGNATURE
    except OSError:
        return False


def _own_report(path: str | os.PathLike, own: Callable[[dict], bool]) -> bool:
    """Whether the plain file ``path`` (``~`` expanded) holds a JSON object that ``own``
    says is loftup's own report; anything else, unreadable included, is not."""
    import json

    path = os.path.expanduser(os.fspath(path))
    if not _regular(path):
        return False
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and bool(own(obj))
