"""A damaged file from the Hugging Face hub: what is wrong with it (:func:`damage`, which reads
no weights, only a cache blob's bytes to compare with its sha256 name), and the fix where it lies in the Hugging Face cache (:func:`damaged_in_cache`:
the blob must go, then ``loftup download`` fetches it again)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def damage(path: str | os.PathLike) -> str | None:
    """What is wrong with a downloaded file, or None where nothing is seen: a Git LFS pointer,
    a config that is not JSON, a safetensors file whose header does not cover it, a torch file
    that is empty, no zip archive or pickle, cut short or fails its zip checksums; a cache blob
    whose bytes are not its name's sha256 (:func:`changed_blob`, which reads the file)."""
    from safetensors import SafetensorError, safe_open

    from ..errors import CheckpointError, one_line
    from .files import (
        check_not_lfs_pointer,
        check_torch_file,
        looks_like_safetensors,
        safetensors_at,
    )

    path = Path(path)
    try:
        # in the cache, a fix of its own: a pointer's origin (a clone, a /raw/ link) unsaid
        check_not_lfs_pointer(path, fix=damaged_in_cache(path, "") or "")
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors" or looks_like_safetensors(path):
            with safetensors_at(path) as name, safe_open(name, "pt"):
                pass
        else:
            check_torch_file(path, fix="")  # (a zip archive cut short: said so)
    except CheckpointError as e:  # its problem whole: cut to 200 characters, a page's was
        return one_line(e, None).split("; ")[0].removesuffix(";")  # a fix of "": none
    except (SafetensorError, OSError, ValueError) as e:
        return one_line(e).split("; ")[0]
    return changed_blob(path)


def changed_blob(path: Path) -> str | None:
    """What is wrong with ``path`` where it is (or links to) a blob of the Hugging Face cache
    named by its sha256, as each large file's (Git LFS) is, whose bytes no longer have it
    (changed on this disk since the download, their length the same); else None. Reads the
    file: about 0.2 s per 100 MB."""
    if blob_as_fetched(path) is not False:
        return None
    return (
        f"{path}'s bytes changed since they were downloaded (their sha256 is not its blob's name)"
    )


def blob_as_fetched(path: str | os.PathLike) -> bool | None:
    """Whether ``path``, where it is (or links to) a blob of the Hugging Face cache, holds the
    bytes its name is the hash of: a large file's (Git LFS) sha256, a small one's git blob
    sha1; that is, the bytes the hub repo holds, which a download would fetch again. None
    where it is no such blob. Reads the file: about 0.2 s per 100 MB."""
    import hashlib
    import re

    real = Path(path).resolve()
    if real.parent.name != "blobs" or not re.fullmatch(r"[0-9a-f]{64}|[0-9a-f]{40}", real.name):
        return None
    if len(real.name) == 64:
        digest = hashlib.sha256()
    else:  # git's object id: "blob SIZE\0" then the bytes
        digest = hashlib.sha1(f"blob {real.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(real, "rb") as f:  # hashlib.file_digest is Python 3.11's
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == real.name


def damaged_in_cache(path: str | os.PathLike, name: str) -> str | None:
    """The fix for a damaged ``path`` where it is a file of the Hugging Face cache (None where
    it is not): ``loftup download {name}`` finds it there and fetches nothing, and removing
    only the snapshot's link brings back the damaged blob it points at; the blob must go."""
    path = Path(path).expanduser()
    if not _under_cache(path):
        return None
    return (
        f"{CACHE_FIX}: delete {path.resolve()} and run `loftup download {name}` to fetch it again"
    )


#: How :func:`damaged_in_cache`'s fix begins: a file huggingface_hub downloaded (by the hub's
#: /resolve/ link, into a file of its own) and that the hub holds otherwise.
CACHE_FIX = "it is a damaged download in the Hugging Face cache"


def drop_damaged(link: str | os.PathLike, name: str) -> None:
    """Remove the damaged file ``link`` of a Hugging Face cache's snapshot before it is fetched
    again: its entry (a link, not followed, or a plain file), which huggingface_hub leaves in
    place where it exists (a blob named other than the file's ETag, a web page's, a pointer's,
    would stay linked and the fresh one unused), and the blob it links to where no other
    snapshot's file links to it. An entry that cannot be removed (another user's cache) is a
    PathPermissionError naming it, its blob and ``loftup download {name}`` to run after."""
    from ..errors import PathPermissionError

    link = Path(link)
    blob = Path(os.path.realpath(link)) if link.is_symlink() else None
    try:
        os.unlink(link)
    except FileNotFoundError:
        pass
    except OSError as e:
        also = f" and {blob}" if blob is not None else ""
        raise PathPermissionError(
            f"{link} is a damaged download in the Hugging Face cache that cannot be removed to "
            f"fetch it again ({e.strerror}): have its owner delete it{also}, then run "
            f"`loftup download {name}`"
        ) from None
    if blob is None or blob.parent.name != "blobs":
        return
    snapshots = blob.parent.parent / "snapshots"
    if any(
        p.is_symlink() and Path(os.path.realpath(p)) == blob for p in snapshots.rglob("*")
    ):  # another commit's file: still its bytes
        return
    try:
        blob.unlink()
    except OSError:
        pass


def cache_fix(path: str | os.PathLike) -> str | None:
    """:func:`damaged_in_cache`'s fix for ``path`` where it is a file of the Hugging Face cache
    given as a path (a snapshot's file or folder, as ``loftup info`` prints it), named for
    ``loftup download`` by the released name whose repo holds it, else by its repo; None
    elsewhere."""
    name = download_name(path)
    return None if name is None else damaged_in_cache(path, name)


def download_name(path: str | os.PathLike) -> str | None:
    """What ``loftup download`` is given to fetch ``path``, a file of the Hugging Face cache:
    the released name whose repo holds it (the one of its file's name first), else its repo;
    None where it lies in no repo's folder of the cache."""
    from .registry import RELEASED

    repo = cached_repo(path)
    if repo is None:
        return None
    names = [c.name for c in RELEASED.values() if c.repo_id == repo]
    exact = [
        c.name for c in RELEASED.values() if (c.repo_id, c.filename) == (repo, Path(path).name)
    ]
    return (exact or names or [repo])[0]


def released_file(path: str | os.PathLike) -> bool:
    """Whether ``path``, a file of the Hugging Face cache, is of a released name's repo (not
    a user's own, which ``loftup download`` fetches again as it is)."""
    from .registry import RELEASED

    return download_name(path) in {c.name for c in RELEASED.values()}


def cached_repo(path: str | os.PathLike) -> str | None:
    """The hub repo ("ORG/NAME") whose copy in the Hugging Face cache holds ``path`` (a file of
    its ``models--ORG--NAME`` folder, or a link into it), or None."""
    path = Path(path).expanduser()
    for where in (path.absolute(), path.resolve()):
        folder = next((p for p in where.parts if p.startswith("models--")), None)
        if folder is not None:
            return "/".join(folder.removeprefix("models--").split("--"))
    return None


def _under_cache(path: Path, part: str | None = None) -> bool:
    """Whether ``path`` (as given, or where its links lead) lies in this process's Hugging Face
    cache (HF_HUB_CACHE, as given or where its links lead), with ``part`` among its folders
    where one is asked: a copy elsewhere (a backup's models--ORG--NAME/snapshots/...) is not,
    and ``loftup download`` would not repair it."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).expanduser()
    return any(
        (part is None or part in p.parts) and p.is_relative_to(c)
        for p in (path.absolute(), path.resolve())
        for c in (cache.absolute(), cache.resolve())
    )


def _in_cache(folder: Path) -> bool:
    """Whether ``folder`` is a snapshot of this process's Hugging Face cache, or a link to one."""
    return _under_cache(folder, "snapshots")


def check_blob_seen(link: str | os.PathLike) -> None:
    """A PathPermissionError where ``link``, a file of the Hugging Face cache (a snapshot's,
    linking to its blob), leads into a folder this user may not search (another user's
    ``blobs/`` of mode 700, in a shared cache): that folder, with the chmod for this user's
    class (its owner, its group, others), not "no such file", "not in the Hugging Face cache"
    or a bare PermissionError; removing the link would break the cache. Nothing elsewhere
    (one os.stat where it is seen)."""
    from ..errors import PathPermissionError
    from ..escaping import printable
    from ..listing import unsearchable
    from ..read_refusal import mode_refuses

    try:
        os.stat(link)
        return
    except PermissionError:
        pass
    except (OSError, ValueError):
        return
    blocked = unsearchable(link) if os.path.islink(link) else None
    try:
        st = os.stat(blocked) if blocked is not None else None
    except OSError:
        st = None
    if st is None:
        return
    raise PathPermissionError(  # (escaped here: the chmod's path is in bash's quotes)
        f"{printable(str(link))}: a link to {printable(os.readlink(link))}, a file of the Hugging "
        f"Face cache in {printable(blocked)}, which this user may not search: "
        f"{mode_refuses(blocked, st, 'x')}"
    )


def check_cached_blob(repo_id: str, filename: str, commit: str | None) -> None:
    """:func:`check_blob_seen` of ``filename``'s link in the cache's snapshot of hub repo
    ``repo_id`` at ``commit`` (None: none known), which huggingface_hub's lookup said was not
    cached where its blob lies out of this user's sight."""
    from .refresh import repo_folder

    if commit is not None:
        link = repo_folder(repo_id) / "snapshots" / commit / filename
        if os.path.islink(link):
            check_blob_seen(link)


def check_links(folder: Path, names) -> None:
    """A WeightsNotFoundError where a file of ``folder`` named in ``names`` is a link to nothing:
    a snapshot of the Hugging Face cache copied on its own (``cp -r``), whose files link to
    blobs it left behind (it was said to hold no weights); or, a snapshot in the cache itself,
    one whose blob was deleted, which ``loftup download`` fetches again."""
    from ..errors import WeightsNotFoundError

    links = [n for n in names if (folder / n).is_symlink()]
    for name in links if _in_cache(folder) else ():  # a blob out of sight: said, with its chmod
        check_blob_seen(folder / name)
    dangling = [n for n in links if not os.path.exists(folder / n)]  # os.path: no raise
    for name in dangling[:1]:  # in the cache itself: its blob was deleted
        check_blob_there(folder / name)
    if dangling:
        raise WeightsNotFoundError(
            f"{folder / dangling[0]} is a link to {os.readlink(folder / dangling[0])}, which does "
            "not exist here (a snapshot of the Hugging Face cache copied without the blobs its "
            "files link to?): copy the snapshot again with `cp -rL` (which copies the files the "
            "links point to), or copy the whole cache folder (models--ORG--NAME)"
        )


def check_blob_there(link: str | os.PathLike) -> None:
    """A WeightsNotFoundError where ``link``, a file of a snapshot of the Hugging Face cache (or
    a link to one), links to a blob that is gone (deleted, as a damaged download's fix says,
    or a cache cleaned in part), with the ``loftup download`` that fetches it again; given as
    a file, it was "no such file or folder... check the path". Nothing elsewhere."""
    from ..errors import WeightsNotFoundError

    link = Path(link)
    if not link.is_symlink() or os.path.exists(link) or not _in_cache(link.parent):
        return
    name = download_name(link)
    if name is None:
        return
    raise WeightsNotFoundError(
        f"{link} is a link to {os.readlink(link)}, a blob missing from the Hugging Face cache "
        "(deleted, as a damaged download's fix says, or a cache cleaned in part): run "
        f"`loftup download {name}` to fetch it again"
    )
