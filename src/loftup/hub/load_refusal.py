"""The one-line refusal of a torch pickle that torch's weights-only load failed on, for
:func:`~.files.torch_load`: objects that could run code (with the way out for a file of one's
own, :mod:`.way_out`), a pickle protocol that loader does not read (protocols 0, 1, 4 and 5:
``torch.save(..., pickle_protocol=4)``, ``pickle.dump``; the way out saves it again, where it
holds tensors and containers alone: else its objects are said), other instructions, or a file
corrupt or cut short: each naming the file and what to do."""

from __future__ import annotations

import pickle
from pathlib import Path

from ..errors import CheckpointError
from ..escaping import printable
from .file_pickle import FilePickle
from .way_out import pickle_protocol, way_out

#: What torch's safe unpickler says when a pickle names something other than tensors and
#: containers (a class, a function such as os.system): code that would run on loading.
_UNSAFE_MARKS = ("GLOBAL", "Unsupported global", "is blocked", "Unsupported class")

#: The end of the refusal of a file of protocol 0, which no torch.load reads
_PROTOCOL_0 = (
    "; torch.load reads no file of protocol 0 either (its tensors' ids are text, not the tuples "
    "it expects): save it again where it was made, with torch.save's default protocol"
)


def load_refusal(
    e: Exception,
    pickled: FilePickle,
    path: Path,
    fix: str,
    what: str,
    own: bool,
    fix_said: bool,
) -> CheckpointError:
    """The error for the file ``path`` (its pickle ``pickled``, walked once for all that is said
    of it) whose load raised ``e``. ``own``: told the way out (:func:`~.way_out.way_out`);
    ``fix_said``: ``fix`` ends a refusal too (see :func:`~.files._torch_load_open`)."""
    text = str(e)
    unsafe = any(mark in text for mark in _UNSAFE_MARKS)
    read = unsafe or "Unsupported operand" in text  # (objects of protocol 0: no line to run)
    protocol, weights = pickle_protocol(pickled) if read else (None, False)
    odd = protocol is not None and protocol not in (2, 3)  # those torch's loader reads
    unsafe = unsafe or (odd and not weights)
    if unsafe or odd:
        if odd and protocol == 0:  # no line to run: torch.load cannot read it, trusted or not
            end = _PROTOCOL_0
        elif own:
            end = way_out(pickled, path, resave=not unsafe)
        elif fix_said:
            end = _said(path, fix)
        else:
            end = "" if unsafe else "; save it again with torch.save's default protocol"
        said = (
            "it holds pickled objects that are not plain tensors or weights, which could run "
            "code when loaded; it was not loaded. Use weights saved as a plain state dict or as "
            "safetensors"
            if unsafe
            else f"it was pickled with protocol {protocol}, which torch's weights-only loader "
            "does not read (torch.save writes protocol 2 unless given pickle_protocol=); it was "
            "not loaded"
        )
        # the path in prose escaped here: the line of Python in ``end`` holds its repr, which the
        # command line, escaping a message whose path held a newline, doubled (another file)
        return CheckpointError(f"refusing to load {what}{printable(str(path))}: {said}{end}")
    if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in text:
        return CheckpointError(
            f"refusing to load {what}{path}: its pickle holds instructions beyond plain "
            "tensors and containers (objects that could run code, or a corrupt file); it "
            f"was not loaded; {fix}"
        )
    return CheckpointError(
        f"{what}{path} is corrupt or truncated and cannot be read ({type(e).__name__}); {fix}"
    )


def _said(path: Path, fix: str) -> str:
    """The end of a refusal of ``path`` that ends with ``fix`` (a released name's file of the
    cache: its blob deleted and fetched again), but where its blob holds the bytes it is named
    by: the hub repo's own, which a download fetches again (a loop), said so with its fix."""
    from .damaged import CACHE_FIX, blob_as_fetched, cached_repo

    if not fix.startswith(CACHE_FIX) or not blob_as_fetched(path):
        return f"; {fix}"
    return (
        f"; hub repo {cached_repo(path)} holds {path.name} as it is here (its bytes those its "
        "cache blob is named by: a download fetches the same), not the weights loftup "
        "released: pass a weights file you have, and tell the repo's owner to publish it as a "
        "plain state dict or as safetensors"
    )
