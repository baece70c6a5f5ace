"""Each tensor's member of a ``torch.save`` zip archive of the size its tensor needs
(:func:`check_member_sizes`), read from the archive's pickle by our own walk of its opcodes
(:mod:`.pickle_walk`; once a load, :mod:`.file_pickle`), nothing unpickled, and the members'
sizes zipfile reads: on every torch loftup supports (torch 2.4's load reads a member of another
size without a word, whole or mapped; a newer one's mapped load takes the bytes at the member's
offset, whatever its size)."""

from __future__ import annotations

import warnings
import zipfile

from ..cpu import _caller_level
from ..errors import CheckpointError
from ..escaping import printable
from ..ranks import is_main_process
from .file_pickle import FilePickle
from .pickle_plain import UNTYPED, storage_id
from .pickle_walk import OPS_CAP, PICKLE_CAP, Thing, WalkCapped
from .zip_layout import NOT_LOADED

#: The bytes of one element of each storage class of torch's that torch.save names in a
#: persistent id (its dtype's; an UntypedStorage's size is in bytes, torch.storage's too: a
#: float8's, uint16's or complex32's, whatever its tensor's dtype): a persistent id of another
#: class is refused, as one of another key or size type (:func:`_storage_need`)
_BYTES = {"UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1}
_BYTES |= {"ShortStorage": 2, "HalfStorage": 2, "BFloat16Storage": 2}
_BYTES |= {"IntStorage": 4, "FloatStorage": 4, "LongStorage": 8, "DoubleStorage": 8}
_BYTES |= {"ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}
_BYTES |= {"QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4}
_BYTES |= {"QUInt4x2Storage": 1, "QUInt2x4Storage": 1}
_ELEMENT_BYTES = {("torch", cls): size for cls, size in _BYTES.items()} | {UNTYPED: 1}
#: What the walk of a pickle raises where it cannot read or follow it (past a cap: a
#: ValueError), left to torch.load to say
_NOT_FOLLOWED = (zipfile.BadZipFile, ValueError, IndexError, KeyError, EOFError, OSError)


def check_member_sizes(pickled: FilePickle, name: str, fix: str) -> None:
    """A CheckpointError where a tensor's member (``<folder>/data/<key>``) of the zip archive
    whose pickle is ``pickled`` holds more or fewer bytes than its storage needs (the size its
    persistent id gives, in elements of its storage class's dtype), or is missing. Nothing
    checked where the pickle cannot be walked (compressed, not followed): torch.load says what
    it makes of such a file; past the walk's caps, a warning says so (:func:`_unchecked`)."""
    walked = pickled.walked()
    if isinstance(walked.error, WalkCapped):
        return _unchecked(name, f"over {OPS_CAP} opcodes")
    if walked.error is not None and not isinstance(walked.error, _NOT_FOLLOWED):
        raise walked.error  # (one the walk does not expect; an encrypted member: refused before)
    if walked.error is None and walked.top is None and walked.pickle_bytes > PICKLE_CAP:
        return _unchecked(name, f"{walked.pickle_bytes} bytes, over {PICKLE_CAP}")
    if walked.error is not None or walked.top is None:
        return  # (a cut archive, no pickle, one not followed: torch.load says what it is)
    needs = _storage_bytes(walked.persids)
    if isinstance(needs, str):
        raise CheckpointError(
            f"{name} was not written by torch.save: its pickle gives a storage a persistent id "
            "of another form than torch.save's ('storage', a storage class of torch's, its key "
            f"as text, its location, its size as an integer; {needs}), whose member could not "
            f"be checked{NOT_LOADED}"
        )
    for key, nbytes in sorted(needs.items()):
        member = f"{walked.folder}/data/{key}"
        info = walked.member(f"data/{key}")  # (as torch finds it: regardless of case)
        held = None if info is None else info.file_size
        member = member if info is None else info.filename
        if nbytes < 0:  # (was "needs 0": a max() from 0)
            raise CheckpointError(
                f"{name} is corrupt: its pickle gives the storage of its member {member!r} a "
                f"negative size ({nbytes} bytes), which torch.save never writes (damaged or "
                f"rewritten); {fix}"
            )
        if held is None:
            raise CheckpointError(
                f"{name} is corrupt: it has no member {member!r}, where its pickle puts a "
                f"tensor of {nbytes} bytes (damaged or rewritten); {fix}"
            )
        if held != nbytes:
            raise CheckpointError(
                f"{name} is corrupt: its member {member!r} holds {held} bytes, where its tensor "
                f"needs {nbytes} (damaged or rewritten); {fix}"
            )


def _unchecked(name: str, why: str) -> None:
    """The warning that the file ``name``'s tensors' member sizes were not checked: its pickle
    too large for the walk (``why``); it is loaded all the same (a member of another size as it
    is, mapped). Said by rank 0 of a torchrun job alone (each rank loads the same file), at
    the line outside loftup that asked for the load."""
    if not is_main_process():
        return
    warnings.warn(
        printable(
            f"{name}: its tensors' member sizes were not checked against its pickle, which is "
            f"past the check's bound ({why}); it is loaded without that check (a damaged "
            "member of another size is loaded as it is where its tensors are mapped)"
        ),
        stacklevel=_caller_level(),
    )


def _storage_bytes(persids: list[Thing]) -> dict[str, int] | str:
    """The bytes each storage of a pickle needs, by its key, of the persistent ids it makes
    (``persids``: ("storage", a torch storage class, key, location, size in elements), as the
    walk met them: each torch.load loads, whether kept or thrown away); where one is of
    another form (a key of 0, not '0': torch loads member data/0 all the same; b'storage'),
    which torch.save never writes and the check cannot size, how it differs (a text)."""
    needs = {}
    for t in persids:
        found = _storage_need(t)
        if isinstance(found, str):
            return found
        key, n = found
        needs[key] = max(needs[key], n) if key in needs else n
    return needs


def _storage_need(pid: Thing) -> tuple[str, int] | str:
    """(key, bytes) of the persistent id ``pid`` where it is a storage's as torch.save writes
    it (:func:`~.pickle_plain.storage_id`) of a class it sizes, its key text and its size an
    integer; for another, which of these it is not (the refusal's words)."""
    if not storage_id(pid):
        return "this one is not ('storage', a storage class, ...)"
    cls, key, numel = pid.args[1].value, pid.args[2], pid.args[4].value
    size = _ELEMENT_BYTES.get(cls)
    if size is None:
        return f"this one's storage class {'.'.join(cls)} is none the check sizes"
    if key.kind != "str":
        return f"this one's key {'' if key.value is None else f'{key.value!r} '}is not text"
    if type(numel) is not int:
        return f"this one's size {'' if numel is None else f'{numel!r} '}is not an integer"
    return key.value, numel * size
