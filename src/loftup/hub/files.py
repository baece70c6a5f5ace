"""Reading weight files safely: safetensors, or a torch pickle of plain tensors and containers
(``torch.load(..., weights_only=True)``), never running code; a damaged file is a one-line
:class:`~loftup.errors.CheckpointError` naming it and how to get it again."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, WeightsNotFoundError
from ..escaping import printable
from ..ranks import is_main_process
from ..read_refusal import read_refused
from .damaged import cache_fix, cached_repo, released_file
from .file_heads import (  # noqa: F401  (check_not_lfs_pointer, looks_like_safetensors: here too)
    GENERIC_FIX,
    HEAD_SIZE,
    LFS_POINTER,
    check_head_not_lfs,
    check_not_lfs_pointer,
    check_regular_file,
    head_mistaken,
    looks_like_safetensors,
    open_weights,
    safetensors_at,
    safetensors_head,
)
from .file_pickle import FilePickle
from .load_refusal import load_refusal
from .member_sizes import check_member_sizes
from .shards import INDEX_SUFFIX, shard_names  # noqa: F401  (importable from here)
from .torch_zip import check_zip, mapped_load

#: The suffixes of weights files: a name ending so is a file's path, never a hub id or a name
WEIGHT_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".safetensors"})


def read_weights(path: str | os.PathLike, fix: str | None = None) -> dict:
    """Read a .safetensors file or a torch pickle of plain tensors, never running code.
    ``fix``: how to get a damaged file again, for the message (default: generic advice)."""
    return read_weights_file(path, fix)[0]


def read_weights_file(path: str | os.PathLike, fix: str | None = None) -> tuple[dict, dict | None]:
    """:func:`read_weights`' dict and the metadata of a safetensors file's header (None for a
    torch pickle, or a header without any), the file opened once: a ``.safetensors`` file by
    safetensors (memory-mapped, its header's record read as it is opened; a Git LFS pointer,
    a web page or a PyTorch file in its place is told only where it fails), any other by one
    ``open`` whose head says what it is (a Git LFS pointer, safetensors under another suffix, a
    zip archive or a pickle) and whose handle torch then loads. A FIFO, socket or device in
    its place is refused before it is opened, a file this user may not read said so. A file of
    the Hugging Face cache given as a path, without a ``fix``, is given the cache's (the blob
    to delete, then ``loftup download``: :func:`~.damaged.cache_fix`); one of a user's repo
    refused for its pickled objects is told the way out instead (fetched again, it is the same)."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"no such file: {path}")
    cached = fix in (None, GENERIC_FIX) and cached_repo(path) is not None
    if cached:  # the blob is to go
        fix = cache_fix(path)
    fix = fix or GENERIC_FIX
    if path.is_dir():  # where a folder's weights file is looked for: open() said only "Errno 21"
        raise WeightsNotFoundError(f"{path} is a folder, not a weights file; {fix}")
    if path.suffix == ".safetensors":
        return _open_safetensors(path, fix)
    check_regular_file(path)  # a FIFO's open waits forever for a writer
    with open_weights(path) as f:
        head = f.read(HEAD_SIZE)
        check_head_not_lfs(head, path, fix)
        if not safetensors_head(head):
            # a file of one's own (not a released name's, to be fetched again), a user repo's
            # of the cache too (fetched again, it is the same): told how to convert it
            own = fix == GENERIC_FIX or (cached and not released_file(path))
            loaded = _torch_load_open(
                f,
                head,
                path,
                fix=fix,
                what="",
                way_out=own,
                fix_said=not own,
            )
            return loaded, None
    return _open_safetensors(path, fix)  # safetensors under another suffix


def _open_safetensors(path: Path, fix: str) -> tuple[dict, dict | None]:
    """The tensors of the safetensors file ``path`` and its header's metadata, the file opened
    once; one that fails is said as what it is (:func:`_safetensors_failed`)."""
    from safetensors import SafetensorError, safe_open

    check_regular_file(path)  # a FIFO's open waits forever for a writer
    try:
        with safetensors_at(path) as name, safe_open(name, "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    except (SafetensorError, OSError, ValueError) as e:
        failed = e
    _safetensors_failed(path, fix, failed)  # out of the except: no error chained to its own


def _safetensors_failed(path: Path, fix: str, error: Exception) -> None:
    """The error for the file ``path`` that safetensors could not open (``error``): one this
    user may not read (safetensors said "No such file or directory") with its chmod, a Git
    LFS pointer, a web page or a PyTorch file (:func:`head_mistaken`) said as such, else
    corrupt or truncated, with ``fix``."""
    refused = read_refused(
        path, what="weights file"
    )  # safetensors' error is no PermissionError: opened to see
    if refused is not None:
        raise refused
    with open_weights(path) as f:
        head = f.read(HEAD_SIZE)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted copy; {fix}")
    check_head_not_lfs(head, path, fix)
    mistaken = head_mistaken(head, path, fix)
    if mistaken is not None:
        raise CheckpointError(mistaken)
    raise CheckpointError(f"{path} is corrupt or truncated ({printable(str(error))}); {fix}")


def read_safetensors(path: str | os.PathLike, fix: str) -> dict:
    """A safetensors file's tensors; a truncated or corrupt file is a CheckpointError naming it
    and ``fix`` (how to get it again), a Git LFS pointer said as such; a missing one a
    WeightsNotFoundError."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"no such file: {path}; {fix}")
    return _open_safetensors(path, fix)[0]


#: The first torch whose ``torch.load(weights_only=True)`` cannot be made to run a crafted
#: file's code (CVE-2025-32434; transformers refuses pickles below it).
SAFE_PICKLE_TORCH = (2, 6)


def torch_release() -> tuple[int, int]:
    """This torch's (major, minor), of the last release it holds in full: a pre-release of
    2.6 (``2.6.0a0+...``, as some containers ship) is (2, 5), 2.6.1a0 (2, 6), as transformers
    reads them (``Version(torch) >= Version("2.6")``)."""
    from packaging.version import Version

    v = Version(torch.__version__.split("+")[0])
    whole = v >= Version(f"{v.major}.{v.minor}")  # 2.6.1a0 holds 2.6; 2.6.0a0 does not
    return (v.major, v.minor) if whole else (v.major, v.minor - 1)


#: Whether this process has said its torch's pickle risk (:func:`say_pickle_risk`).
_risk_said = False


def say_pickle_risk(path: str | os.PathLike, what: str = "") -> bool:
    """Warn that this torch's weights-only loader can be made to run a crafted file's code
    (CVE-2025-32434, fixed in torch 2.6; pyproject allows 2.4), naming ``path``, the first
    pickle loaded: once a process, since it holds for every pickle the process loads (an
    experiment's runs or the demo's stages said it for each), and under torchrun by rank 0
    alone (each rank loads the same file; :func:`~loftup.ranks.is_main_process`: a process
    alone with a RANK of 1 said nothing). Returns whether it was said."""
    import warnings

    global _risk_said
    if _risk_said or torch_release() >= SAFE_PICKLE_TORCH or not is_main_process():
        return False
    _risk_said = True
    need = ".".join(map(str, SAFE_PICKLE_TORCH))
    warnings.warn(
        printable(
            f"loading {what}{path}, a PyTorch pickle, with torch {torch.__version__}, whose "
            "weights-only loader a crafted file can make run code (CVE-2025-32434, fixed in "
            f"torch {need}): load only files you trust, or upgrade (pip install 'torch>={need}'); "
            "said once, for every pickle this process loads"
        ),
        stacklevel=3,
    )
    return True


def torch_load(
    path: str | os.PathLike, *, fix: str, what: str = "", another: str = "", mmap: bool = False
) -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors (CheckpointError) in place of
    torch's own text, which suggests ``weights_only=False`` (running the file's code):

    - a file that is neither a zip archive (torch.save) nor a pickle: corrupt or not a PyTorch
      file at all;
    - a pickle that names objects other than tensors and containers: refused, not loaded, as it
      could run code;
    - a zip archive whose stored checksums do not match its bytes (torch.load does not check
      them, and would return the damaged tensors as weights): corrupt;
    - anything else: corrupt or truncated.

    ``what``: the kind of file, for the message (``"training checkpoint "``); ``fix``: what to do.
    One this user may not read: a :class:`~loftup.errors.PathPermissionError` with its mode,
    owner and chmod (:func:`~.file_heads.open_weights`), and ``another``, the option that chose the
    folder of a file that is loftup's own output ("--out"), as the other fix.
    Below torch 2.6 the loader's risk is said first, once a process (:func:`say_pickle_risk`):
    for the checkpoint a run resumes too, which a crafted file put in its place could be.
    ``mmap``: the tensors of a zip archive memory-mapped, not held in memory (read once for
    their checksums; those used are read from the file as they are), the same checks made and
    refusals said (each tensor's member of the size it needs, :mod:`.member_sizes`, as for
    every zip load): a look at
    what a file holds that needs few of its tensors (a pickle of the old format is read whole).
    """
    path = Path(path)
    check_regular_file(path, what)  # a FIFO's open waits forever for a writer
    with open_weights(path, what, another) as f:
        head = f.read(HEAD_SIZE)
        check_head_not_lfs(head, path, fix)
        return _torch_load_open(f, head, path, fix=fix, what=what, mmap=mmap)


def _torch_load_open(
    f,
    head: bytes,
    path: Path,
    *,
    fix: str,
    what: str,
    mmap: bool = False,
    way_out: bool = False,
    fix_said: bool = False,
) -> object:
    """:func:`torch_load` of the file ``path``, open as ``f``, which begins with ``head``.
    ``way_out``: a file refused for its pickled objects is told how to keep its weights alone,
    if its user trusts it (:func:`~.way_out.way_out`): for an upsampler's file of one's own,
    not for one loftup wrote or a backbone's, whose fixes are others. ``fix_said``: ``fix`` ends the
    refusal too (a released name's cached file: its blob deleted and fetched again)."""
    import warnings

    pickled = FilePickle(f)  # walked once, for the check of its members and any refusal
    _check_torch_open(f, head, path, fix=fix, what=what, pickled=pickled)
    say_pickle_risk(path, what)
    f.seek(0)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            # mmap=False: torch.utils.serialization.config.load.mmap = True refuses an open
            # handle ("f must be a file path"), which a good file was then said to be corrupt;
            # a mapping takes a path, of f's very file (and a zip archive: torch maps no other)
            if mmap and head.startswith(b"PK\x03\x04"):
                data = mapped_load(f, path)
                if data is not None:
                    return data
                f.seek(0)  # not mapped here: read whole, as without mmap (a bad file said)
            return torch.load(f, map_location="cpu", weights_only=True, mmap=False)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for bad files
        refusal = load_refusal(e, pickled, path, fix, what, way_out, fix_said)
    raise refusal  # out of the except: no error chained to torch's


def check_torch_file(path: str | os.PathLike, *, fix: str, what: str = "") -> None:
    """The checks :func:`torch_load` makes before unpickling, without reading the objects: a
    CheckpointError naming ``path`` when it is empty, neither a zip archive (torch.save) nor a
    pickle, or a zip archive whose stored checksums do not match its bytes. For a file another
    library unpickles (transformers' pytorch_model.bin)."""
    path = Path(path)
    check_regular_file(path, what)
    with open_weights(path, what) as f:
        head = f.read(HEAD_SIZE)
        check_head_not_lfs(head, path, fix)
        _check_torch_open(f, head, path, fix=fix, what=what)


#: The start of torch's old format pickled with protocol 0 or 1: its magic number, as text
_OLD_MAGIC = b"L119547037146038801333356L\n"


def _check_torch_open(
    f,
    head: bytes,
    path: Path,
    *,
    fix: str,
    what: str,
    pickled: FilePickle | None = None,
) -> None:
    """:func:`check_torch_file` of ``path``, open as ``f``, which begins with ``head``;
    ``pickled``: its pickle, where the caller has it walked for more than this check."""
    if not head:
        raise CheckpointError(f"{what}{path} is empty (0 bytes): an interrupted copy; {fix}")
    if not head.startswith((b"PK\x03\x04", b"\x80", _OLD_MAGIC)):
        mistaken = head_mistaken(head, path, fix)  # a web page: fetched again, the same page
        if mistaken is not None:
            raise CheckpointError(f"{what}{mistaken}")
        raise CheckpointError(
            f"{what}{path} is corrupt or not a PyTorch or safetensors file (it is neither a "
            f"zip archive nor a pickle); {fix}"
        )
    if head.startswith(b"PK\x03\x04"):
        f.seek(0)
        check_zip(f, f"{what}{path}", fix, path)
        pickled = pickled or FilePickle(f)
        check_member_sizes(pickled, f"{what}{path}", fix)  # (torch 2.4 loads one of another size)
