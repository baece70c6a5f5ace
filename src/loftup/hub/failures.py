"""What a hub download's failure says to do: the hub's refusal where it answered (no such
repo, revision or file), its own server error, or this machine's cache that cannot be written
(split from :mod:`.reach`, which re-exports them); and how every such error names the repo and
commit (:func:`spelled`, :func:`as_asked`)."""

from __future__ import annotations

import os
import re

from ..escaping import quoted


def spelled(repo_id: str, revision: str | None = None) -> str:
    """Hub repo ``repo_id`` at ``revision`` (None: its main branch) as the user spells it:
    ``org/name`` or ``org/name@v1``."""
    return repo_id if revision is None else f"{repo_id}@{revision}"


#: What to do with a commit given by the start of its hash that the cache does not hold
WHOLE_HASH = (
    "give the whole hash (40 hex digits, as the commit's page on the hub shows it: the hub "
    "looks a commit up by it; a start does only for a commit the Hugging Face cache holds)"
)


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a commit's whole hash (40 lower-case hex digits, as the hub and
    the cache's snapshot folders name commits), whose files never change: no branch or tag."""
    return re.fullmatch("[0-9a-f]{40}", revision or "") is not None


def hash_start(revision: str | None) -> bool:
    """Whether ``revision`` may be the start of a commit's hash (7 to 39 hex digits, of either
    case, as the hub's web page shows 7), which the hub does not look a commit up by; a tag or
    branch of hex digits (a date, 20240115) reads so too."""
    return re.fullmatch("[0-9a-fA-F]{7,39}", revision or "") is not None


def whole_hash(revision: str | None) -> str:
    """What an error that could not ask the hub (offline, unreachable) adds to its command
    that downloads ``revision``, where that is a hash's start the cache holds no commit of
    (another machine's cache lacks it too, and the hub refuses it): to give the whole hash;
    else "". Its caller leaves it out for a branch or tag the cache knows by that name."""
    if not hash_start(revision):
        return ""
    return f"; where {quoted(revision)} is the start of a commit's hash, {WHOLE_HASH}"


def _named(matching: str) -> str | None:
    """The branch or tag ``matching`` (:func:`as_asked`'s) as a revision: None for "main",
    where the user named none."""
    return None if matching == "main" else matching


def as_asked(repo_id: str, revision: str | None, matching: str | None) -> tuple[str, str]:
    """How an error names hub repo ``repo_id`` and the commit a file of it was asked at: the
    repo as the user spelled it and, where ``revision`` is a commit the user never named (the
    one their branch or tag ``matching`` names now; "main" where they named none),
    `` (at commit 0123456789ab, what 'main' names now)``, to follow the repo's name; else ""."""
    if matching is None:
        return spelled(repo_id, revision), ""
    at = f" (at commit {revision[:12]}, what {quoted(matching)} names now)"
    return spelled(repo_id, _named(matching)), at


def hub_refusal(
    e: Exception,
    repo_id: str,
    filename: str,
    revision: str | None,
    *,
    matching: str | None = None,
    fetch: str = "",
) -> str | None:
    """What to do where the hub answered a download of ``filename`` from ``repo_id`` (at
    ``revision``) with ``e``, that it has no such repo, revision or file: check the id, the
    revision or the repo, not the network; None for any other failure (no answer, the
    server's own error), where a download elsewhere may do. ``matching``: as
    :func:`as_asked`'s, where ``revision`` is the commit the cache's branch or tag names: a
    commit the hub no longer has (a force-push) is the cache's stale ref, not the user's
    revision, and ``fetch`` (the command that fills the cache) fetches the branch's files again
    once the ref is deleted."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RevisionNotFoundError) and matching is not None:
        from .refresh import ref_path

        ref = ref_path(repo_id, _named(matching))
        return (
            f"Commit {revision[:12]}, which the Hugging Face cache's {quoted(matching)} names, is "
            "no "
            f"longer on the hub (its history was rewritten): delete {ref} and run `{fetch}` to "
            f"fetch what {quoted(matching)} names now"
        )
    # the user's own revision; for a file at the commit their branch or tag names, that
    named = revision if matching is None else _named(matching)
    if isinstance(e, RevisionNotFoundError):
        # hex digits may be a hash's start or a misspelt tag or branch (a date, 20240115)
        check = f"check the revision ({repo_id} alone is its main branch)"
        if hash_start(revision):
            check = f"where it is the start of a commit's hash, {WHOLE_HASH}; else {check}"
        return (
            f"Hub repo {quoted(repo_id)} has no branch, tag or commit {quoted(revision)}: {check}"
        )
    if isinstance(e, RepositoryNotFoundError):  # so is a private repo without a login
        return (
            f"The hub has no repo {quoted(repo_id)} that may be read without a login: check the "
            "id, "
            "and for a private repo log in (set HF_TOKEN to an access token, or `hf auth login`)"
        )
    remote = isinstance(e, HfHubHTTPError) and not isinstance(e, LocalEntryNotFoundError)
    if remote and isinstance(e, EntryNotFoundError):
        at = "" if named is None else f" at {quoted(named)}"
        return (
            f"Hub repo {quoted(repo_id)}{at} holds no {quoted(filename)}: check that it is the "
            "repo meant"
        )
    return None


def server_error(e: BaseException) -> bool:
    """Whether the hub answered the download that raised ``e`` with a server error (5xx): on
    the file's request, or on the first one (huggingface_hub retries that, then raises its
    "check your connection" error with the answer as the cause)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 500:
            return True
        e = e.__cause__ or e.__context__
    return False


def cache_write_error(e: BaseException, cache: str) -> str | None:
    """Where a download that raised ``e`` failed to write to this machine's Hugging Face cache
    ``cache`` (a full disk or quota, a read-only or foreign folder, a file in the folder's
    place): the end of its message, that says so and what to do (by its errno: room, a folder
    that may be written, the file-size limit, or the file in the way); None for any other
    failure.
    Another machine's download, copied here, would fail the same way."""
    import errno

    always = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}  # never the network's
    on_a_file = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR}  # a socket's EPERM too
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and (
            e.errno in always or e.errno in on_a_file and e.filename is not None
        ):
            where = f": {e.filename}" if e.filename else ""
            return (
                f"could not be written to the Hugging Face cache {cache} ({e.strerror}{where}): "
                f"{_cache_fix(e)}, and run again"
            )
        e = e.__cause__ or e.__context__
    return None


def _cache_fix(e: OSError) -> str:
    """What to do about the cache's write error ``e``: free space for a full disk or quota, a
    writable folder for a read-only or foreign one, the file in the way for a path where a
    folder is a file (or a file's name a folder)."""
    import errno
    from pathlib import Path

    elsewhere = "set HF_HOME to a writable folder (HF_HUB_CACHE, where it is set)"
    if e.errno in (errno.ENOTDIR, errno.EISDIR) and e.filename:
        path = Path(os.fsdecode(e.filename))
        if e.errno == errno.ENOTDIR:  # a file where one of the folders above should be
            path = next((p for p in path.parents if p.exists() and not p.is_dir()), path)
            what = "a file where the cache needs a folder"
        else:
            what = "a folder where the cache writes a file"
        return f"{path} is {what}: move or delete it, or {elsewhere}"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"this user may not write there: {elsewhere}"
    if e.errno == errno.EFBIG:  # a limit on one file's size, not the disk's room
        return (
            "the file is larger than this process may write (`ulimit -f`) or the filesystem "
            f"holds (FAT32: 4 GB): raise the limit, or {elsewhere} on another filesystem"
        )
    return f"free space there, or {elsewhere} with room"
