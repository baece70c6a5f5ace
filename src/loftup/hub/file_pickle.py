"""The pickle torch reads from one open weights file, walked once a load (:class:`FilePickle`),
nothing unpickled: its top-level object, the pickle protocol it declares or uses and, of a zip
archive, its members' sizes and the persistent ids of its storages, for the check of each
tensor's member before torch.load (:mod:`.member_sizes`) and the refusal after it
(:func:`~.way_out.pickle_protocol`, :func:`~.way_out.way_out`). The pickle is ``<first member's folder>/data.pkl`` of a zip
archive (found regardless of case, as torch finds it), read whole into memory before it is
walked (up to :data:`~.pickle_walk.PICKLE_CAP`, 64 MB: a member larger, or compressed, which
torch.save never writes, is not walked); of the old format, its fourth pickle (after its magic
number, protocol and sys info; the fifth, its storages' keys, walked too), read from the file
as it is walked, no further than that cap."""

from __future__ import annotations

import io
import sys
import traceback
import zipfile
from dataclasses import dataclass, field

from .pickle_walk import PICKLE_CAP, Thing, Walk
from .zip_open import open_zip


def folded(name: str | zipfile.ZipInfo) -> bytes:
    """A member's name as torch's zip reader (miniz) finds it: its bytes, ASCII's capitals as
    small letters, no other (``archive/DATA.PKL`` is the ``archive/data.pkl`` torch reads). A
    member's (a ZipInfo) as its directory stores them (UTF-8 where its flag bit 11 says so,
    else cp437, as zipfile decoded them: the same bytes read in both ways are one name to
    torch, two to zipfile), a name torch looks up (a str) in UTF-8, as torch passes it."""
    if isinstance(name, zipfile.ZipInfo):
        utf8 = name.flag_bits & 0x800
        raw = name.orig_filename.encode("utf-8" if utf8 else "cp437", "surrogatepass")
    else:
        raw = name.encode("utf-8", "surrogatepass")
    return raw.lower()


@dataclass
class Walked:
    """What the walk of a file's pickle found. ``top``: its top-level object (None where it was
    not walked: too large, compressed); ``torch_file``: whether the file is torch.save's (a
    pickle of pickle.dump's is not); ``protocol``: the highest protocol walked
    (:attr:`~.pickle_walk.Walk.protocol`; None where nothing was). Of a zip archive:
    ``nested``, whether its first member lies in a folder, as torch reads one (else ``top``
    is of the ``data.pkl`` its first member's whole name gives, which torch does not read);
    ``folder``, that folder (``prefix``: its bytes :func:`folded`); ``members``, each member
    by its name :func:`folded` (torch finds one by its bytes, regardless of case; two names
    equal so are refused before, by check_zip: :meth:`member` finds one as torch does);
    ``pickle_bytes``, its data.pkl's; ``persids``, each persistent id its pickle makes
    (:attr:`~.pickle_walk.Walk.persids`). ``error``: what the walk raised (what else is here
    is then not to be read), its frames' locals cleared (:func:`_unframed`). ``allowed``:
    whether every global its pickles name or call, an object thrown away too, is
    one a file of tensors and containers names (:meth:`~.pickle_walk.Walk.only_allowed`)."""

    top: Thing | None = None
    torch_file: bool = True
    protocol: int | None = None
    nested: bool = True
    folder: str = ""
    prefix: bytes = b""
    members: dict[bytes, zipfile.ZipInfo] = field(default_factory=dict)
    error: Exception | None = None
    allowed: bool = False
    pickle_bytes: int = 0
    persids: list[Thing] = field(default_factory=list)

    def member(self, inner: str) -> zipfile.ZipInfo | None:
        """The member ``<folder>/<inner>`` as torch finds it (:func:`folded`); None where none is."""
        return self.members.get(self.prefix + b"/" + folded(inner))


class FilePickle:
    """The pickle torch reads from the file open as ``f``: walked at the first look
    (:meth:`walked`), what it found kept for every later one."""

    def __init__(self, f):
        self.f, self._walked = f, None

    def walked(self) -> Walked:
        """What the walk found (:class:`Walked`), the file walked on the first call alone."""
        if self._walked is None:
            caller = sys.exc_info()[1]  # (an error the caller handles: its, not the walk's)
            try:
                self._walked = _walk(self.f)
            except Exception as e:  # noqa: BLE001 - a pickle the walk cannot follow: kept
                self._walked = Walked(error=_unframed(e, caller))
        return self._walked


def _unframed(error: BaseException, caller: BaseException | None) -> BaseException:
    """``error``, and those chained to it, with the local variables of their tracebacks' frames
    cleared (their lines kept): a walk stopped at its cap kept its partial stack and memo alive
    through them while torch.load ran (881 MB against 609 MB for a checkpoint of 34,000
    tensors and their AdamW state). ``caller``: the error the caller was handling when the
    walk began (``error``'s context), its own and left whole, with those chained to it."""
    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or e is caller or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        todo += [e.__cause__, e.__context__]
    return error


def _walk(f) -> Walked:
    """:meth:`FilePickle.walked` of the file open as ``f``, raising where the walk does (a
    missing member is a KeyError)."""
    f.seek(0)
    if f.read(4) != b"PK\x03\x04":  # the old format: magic number, protocol, sys info,
        f.seek(0)  # object, its storages' keys (each unpickled by torch.load: all walked)
        walk = Walk(_Capped(f), ints=True)
        first = walk.next()
        if first.kind != "other":  # no magic number: a pickle of pickle.dump's
            return Walked(first, False, walk.protocol, allowed=walk.only_allowed())
        top = [walk.next() for _ in range(4)][2]
        return Walked(top, True, walk.protocol, allowed=walk.only_allowed())
    with open_zip(f) as z:
        infos = z.infolist()
        first = infos[0].filename
        found = Walked(nested="/" in first, folder=first.split("/")[0])
        found.members = {folded(i): i for i in infos}
        found.prefix = folded(infos[0]).split(b"/")[0]  # (torch's: of its bytes)
        info = found.members[found.prefix + b"/data.pkl"]  # the one torch reads
        found.pickle_bytes = info.file_size
        if info.file_size > PICKLE_CAP or info.compress_type != zipfile.ZIP_STORED:
            return found  # (a compressed one: refused before, by check_zip)
        with z.open(info) as member:  # (read whole, within the cap: the walk's many small
            walk = Walk(io.BytesIO(member.read()), ints=True)  # reads took 2/3 of its time)
            found.top, found.protocol = walk.next(), walk.protocol
            found.persids = walk.persids
            found.allowed = walk.only_allowed()
    return found


class _Capped:
    """The file ``f`` read no further than :data:`PICKLE_CAP` bytes: a ValueError beyond."""

    def __init__(self, f):
        self.f, self.left = f, PICKLE_CAP

    def _count(self, data: bytes) -> bytes:
        self.left -= len(data)
        if self.left < 0:
            raise ValueError(f"a pickle over {PICKLE_CAP} bytes")
        return data

    def read(self, n: int = -1) -> bytes:
        return self._count(self.f.read(self.left + 1 if n < 0 else min(n, self.left + 1)))

    def readline(self) -> bytes:
        return self._count(self.f.readline(self.left + 1))
