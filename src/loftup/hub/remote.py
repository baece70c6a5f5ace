"""Files from the Hugging Face hub: the cache first, then a download; offline
(``HF_HUB_OFFLINE=1``, no network) with nothing cached, an error naming the repo, the file and
how to pass a local path instead. What is wrong with a damaged cached file, and its fix, are
:mod:`.damaged`'s (importable from here too); a released checkpoint's file, :mod:`.released`'s
(importable from here too: the same objects, so ``mock.patch`` a name where it is looked up,
``loftup.hub.loading.released_file`` for :func:`~.loading.load_upsampler`, not here)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PathPermissionError, WeightsNotFoundError, first_line
from ..escaping import printable, quoted

# moved to :mod:`.commits` (a repo's files from one commit), importable from here; commits
# imports hub_file from here inside its functions
from .commits import cached_elsewhere, full_commit, hub_folder, hub_folder_beside  # noqa: F401
from .damaged import check_cached_blob, damage, damaged_in_cache, drop_damaged
from .failures import as_asked, whole_hash
from .reach import (
    SILENT,
    cache_write_error,
    hub_refusal,
    lost_connection,
    offline_reason,
    server_error,
    unreachable_for_download,
    unreachable_reason,
)
from .refresh import (  # all_or_nothing: importable from here
    _kept,
    all_or_nothing,  # noqa: F401
    cached_ref,
    repo_folder,
    still_cached,
)

# moved to :mod:`.released` (a released checkpoint's file in the cache), importable from here:
# the same objects (released imports this module's names inside its functions)
from .released import cached_path, download, released_file, released_table  # noqa: F401


def hub_file(
    repo_id: str,
    filename: str,
    *,
    what: str,
    local_hint: str,
    download_name: str | None = None,
    downloading: bool = False,
    fetch: str | None = None,
    gated: bool = False,
    also: tuple = (),
    revision: str | None = None,
    refresh: bool = False,
    matching: str | None = None,
    commit: str | None = None,
) -> Path:
    """Path of ``filename`` from ``repo_id``: the cache first, then a download.

    Offline (``HF_HUB_OFFLINE=1`` or no network) with nothing cached raises WeightsNotFoundError
    naming the repo, the file and how to pass a local path instead; a gated repo (DINOv3) that
    this login may not read names where to accept its terms and how to log in. ``downloading``:
    called by ``loftup download``, whose fix for an offline switch is to unset it, not to run
    itself. ``fetch``: the command that fills the cache, where ``loftup download NAME``
    (``download_name``, else ``what``) would fetch another repo than ``repo_id``. ``gated``: the
    repo is known to be gated, so the advice to download it says how to get access first.
    ``also``: the other files of the repo that are needed and not cached either (groups of
    alternative names), named beside this one where none can be downloaded (offline, no
    network), so that the user fetches or copies them all at once. ``revision``: a branch, tag
    or commit of the repo (None: its main branch), looked for in the cache and downloaded; a
    commit given by its hash's start is expanded by the caller (:func:`full_commit`, once a
    load), and ``download_name`` then names the whole hash.
    ``refresh``: a cached copy is checked against the hub, where it can be reached, and the
    newer file downloaded (``loftup download`` of a repo of one's own, which its owner may have
    pushed again); unreachable, the cached copy is kept. ``matching``: the branch or tag (as
    the user gave it; None: main) whose other files are of commit ``revision``, at which this
    file (cached at another, or a shard its index names) is fetched: the repo is named as the
    user spelled it, and the file cached at another commit said so, where it cannot be.
    ``commit``: the commit the cache's ref for ``revision`` named as the load began (read once,
    :func:`~.commits.pinned`), where the cache is looked in; None: ``revision``'s (downloads').
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    check_cache(repo_id)
    cached = try_to_load_from_cache(repo_id, filename, revision=commit or revision)
    if not isinstance(cached, str):  # its blob out of this user's sight: not "not cached"
        check_cached_blob(repo_id, filename, commit or cached_ref(repo_id, revision) or revision)
    damaged = None
    if isinstance(cached, str):
        # `loftup download` checks what it finds, and fetches a damaged copy again (a cached
        # file is otherwise kept as it is, and the command said it had it)
        damaged = damage(cached) if downloading else None
        if damaged is None and not refresh:
            return Path(cached)
    good = cached if isinstance(cached, str) and damaged is None else None  # refresh's
    reason = offline_reason()
    if reason is None:  # a pass remembered from an earlier file is checked before a download
        reason = unreachable_reason() if good is not None else unreachable_for_download()
    # the repo as the user spelled it, and the commit where it was never theirs: in every raise
    repo, at = as_asked(repo_id, revision, matching)
    name = download_name or what
    # a hash's start the cache holds no commit of, nor a branch or tag by that name: the
    # download elsewhere needs it whole
    known = commit is not None or cached_ref(repo_id, revision)
    whole = whole_hash(revision) if matching is None and not known else ""
    fetch = fetch or f"loftup download {name}"
    refusal = None  # what the hub's answer says to do, where it answered
    failed_there = False  # the hub answered with its own (server) error
    if good is not None and reason is not None:
        return Path(good)
    if reason is None and damaged is not None:  # huggingface_hub keeps an existing link
        drop_damaged(cached, name)
    if reason is None:
        from huggingface_hub.utils import GatedRepoError

        try:
            fresh = damaged is not None
            if good is not None and still_cached(repo_id, filename, revision, Path(good)):
                return Path(good)
            got = Path(hf_hub_download(repo_id, filename, revision=revision, force_download=fresh))
        except GatedRepoError:  # its own text is only "401 Client Error."
            raise WeightsNotFoundError(
                f"{what}: hub repo {quoted(repo_id)} is gated: {_access(repo_id)} here, and run "
                f"again; or pass a local path instead: {local_hint}"
            ) from None
        except Exception as e:  # noqa: BLE001 - network, missing repo
            if good is not None:
                return _kept(Path(good), e, repo_id, filename)
            if (local := cache_write_error(e, _cache())) is not None:  # no network's fault
                raise WeightsNotFoundError(
                    f"{what}: file {quoted(filename)} of hub repo {quoted(repo)}{at} {local}"
                ) from None
            reason = f"the download failed ({printable(first_line(e, typed=True))})"
            reason = lost_connection(e, reason) or reason  # the next files are not tried
            refusal = hub_refusal(e, repo_id, filename, revision, matching=matching, fetch=fetch)
            failed_there = server_error(e)  # the hub's own failure
        else:
            again = damage(got) if fresh else None  # fetched again: not said fetched, if bad
            if again is None:
                return got
            raise WeightsNotFoundError(
                f"{what}: file {quoted(filename)} of hub repo {quoted(repo)}{at} was damaged in "
                "the Hugging "
                f"Face cache ({damaged}) and the copy downloaded again is damaged too ({again}): "
                f"the hub, or a proxy on the way (HF_ENDPOINT, HTTPS_PROXY), served it so; check "
                f"them and run `{fetch}` again, or pass a local path instead: {local_hint}"
            )
    if damaged is not None:  # and it cannot be fetched again
        gone = not os.path.lexists(cached)  # removed before the download that failed
        redo = f"it was removed from the cache: run `{fetch}` again" if gone else None
        raise WeightsNotFoundError(
            f"{what}: the cached copy of file {quoted(filename)} of hub repo {quoted(repo)}{at} is "
            "damaged "
            f"({damaged}) and {reason}; "
            f"{redo or damaged_in_cache(cached, name) or f'delete {cached} and run `{fetch}`'}, "
            "with the hub in reach"
        )
    others = " and ".join(" or ".join(repr(n) for n in group) for group in also)
    if others and not reason.startswith("the download failed"):  # none can be had either
        nor_cached, nor_download = (
            f" (nor {w} {others}, which it needs too)" for w in ("is", "can")
        )
    else:
        nor_cached = nor_download = ""
    # a gated repo's download needs access first: said beside each command that downloads
    access = f" (the repo is gated: {_access(repo_id)} first)" if gated else ""
    # where this process looks: a cache copied elsewhere (HF_HOME set, say) is not found
    hub_cache = "Hugging Face cache (~/.cache/huggingface/hub by default)"
    copy = f"copy its {hub_cache} to {_cache()}"
    offline_switch = reason.startswith(("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"))
    if downloading and offline_switch:  # the download was never tried
        var = reason.split("=")[0]
        raise WeightsNotFoundError(
            f"{what}: cannot download file {quoted(filename)} of hub repo "
            f"{quoted(repo)}{at}{nor_download}: "
            f"{reason}, "
            f"which forbids downloads. Unset it to download (`env -u {var} loftup download "
            f"{name}`{whole}{access}), or copy the {hub_cache} of a machine with network that "
            f"holds it to {_cache()}, or pass a local path instead: {local_hint}"
        )
    # where the hub answered that it has no such repo, revision or file, another machine's
    # download gets the same answer
    fix = refusal or f"Run `{fetch}` on a machine with network{access} and {copy}"
    if reason.startswith(SILENT):  # the connection was accepted: not this machine's network
        fix = f"Check HF_ENDPOINT and any proxy, and run `{fetch}` again{access}; or {copy}"
    if failed_there:  # the network is fine: the same download may work in a while
        fix = f"Run `{fetch}` again later{access}, or on another machine and {copy}"
    if refusal is None:  # the hub's refusal of a hash's start says to give it whole
        fix = f"{fix}{whole}"
    lacking = f"is not in the Hugging Face cache{nor_cached} and {reason}"
    if downloading:
        lacking = f"could not be downloaded{nor_download}: {reason}"
    if matching is not None and cached_elsewhere(repo_id, filename, revision):
        # cached, at a commit the user never named either: said as what happened
        lacking = (
            f"is cached at another commit than the repo's other files, and could not be "
            f"fetched again at theirs{at}: {reason}"
        )
        at = ""
    raise WeightsNotFoundError(
        f"{what}: file {quoted(filename)} of hub repo {quoted(repo)}{at} {lacking}. {fix}, or pass "
        "a local "
        f"path instead: {local_hint}"
    )


def check_cache(repo_id: str) -> None:
    """A PathPermissionError where hub repo ``repo_id``'s folder in the Hugging Face cache, or
    the cache, lies in a folder this user may not search (:func:`cache_problem`), naming that
    folder and the fix: nothing can be found in it, nor fetched into it, and it was "not in
    the cache" (``loftup info``: "cached: no"), having never been looked in."""
    why = cache_problem(repo_id)
    if why:
        raise PathPermissionError(f"the Hugging Face cache {_cache()}: {why}")


def cache_problem(repo_id: str) -> str | None:
    """Why hub repo ``repo_id``'s folder in the Hugging Face cache cannot be looked in: it, the
    cache (its own mode 644) or a folder above lies where this user may not search, or is
    such a folder itself (another user's download into a shared cache, with umask 077; its
    refs/ is looked at); that folder and the fix, or None. A cache not made yet is fine, but
    not where it cannot be made."""
    from ..listing import permission_denied

    variable = next((v for v in CACHE_VARIABLES if os.environ.get(v)), "HF_HOME")
    return permission_denied(
        repo_folder(repo_id) / "refs", f"set {variable} to a folder of this user's"
    )


#: The variables that name the Hugging Face cache in place of HF_HOME's hub/, the first set
#: taking precedence (huggingface_hub's order): the fix names the one that is set.
CACHE_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")


def _cache() -> str:
    """The Hugging Face cache folder this process reads (HF_HUB_CACHE, or HF_HOME's hub/)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _access(repo_id: str) -> str:
    """How to get access to gated hub repo ``repo_id``: where to accept its terms, how to log in."""
    from huggingface_hub import constants

    return (
        f"accept its terms at {constants.ENDPOINT}/{repo_id} with your Hugging Face account and "
        "log in, by setting HF_TOKEN to an access token or with `hf auth login`,"
    )


def looks_like_path(text: str) -> bool:
    """Whether ``text`` names a local path rather than a hub repo: hub ids are ``name`` or
    ``org/name``; anything else is meant as a local path."""
    return (
        text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text
    )
