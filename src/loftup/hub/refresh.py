"""A refresh of a hub repo's cached files (``loftup download ORG/NAME`` of one's own, which its
owner may have pushed again): the cached copy kept where the hub cannot give a newer one, and
the cache's ref set back where a newer commit arrived only in part."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..errors import WeightsNotFoundError, first_line
from ..escaping import printable, quoted, shell_quoted
from .failures import is_commit, spelled


def _kept(cached: Path, e: Exception, repo_id: str, filename: str) -> Path:
    """The cached copy, where a refresh of it failed: said where the hub answered (a file gone
    or renamed: the copy is then no longer what the hub holds), silent where it did not answer
    (no network: the copy is all there is). A repo gone or made private is
    :func:`still_cached`'s to say."""
    import warnings

    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        warnings.warn(
            printable(
                f"hub repo '{repo_id}' did not give '{filename}' ({first_line(e, typed=True)}); "
                f"kept the cached copy, {cached}"
            ),
            stacklevel=3,
        )
    return cached


def still_cached(repo_id: str, filename: str, revision: str | None, cached: Path) -> bool:
    """Whether ``cached``, the cached copy of ``filename`` of hub repo ``repo_id`` (at branch or
    tag ``revision``; None: main), is what the hub holds there now: asked with the one request
    (HEAD) that hf_hub_download makes first, so that a download is needed only where a newer
    commit came (that download then asks again, as it always does). Where the hub refuses the repo (gone, private, gated: huggingface_hub's
    download then returns the cached copy without a word), True, said once a repo
    (:func:`_say_refused`); any other failure is raised."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError

    if is_commit(revision):  # a commit's files never change: the hub is not asked
        return True
    snapshot = cached.parents[len(filename.split("/")) - 1]  # snapshots/<commit>
    try:
        # HF_HUB_ETAG_TIMEOUT, as hf_hub_download's own request reads it (huggingface_hub
        # before 1.0 gave this function a fixed 10 s: a slower hub's newer commit was missed)
        url = hf_hub_url(repo_id, filename, revision=revision)
        meta = get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError as e:
        if not _say_refused(e, repo_id, snapshot):
            raise
        return True
    return meta.commit_hash == snapshot.name


#: The repos whose refusal was said, in this process: once a repo, not once a file.
_REFUSED: set[str] = set()


def _say_refused(e: Exception, repo_id: str, snapshot: Path) -> bool:
    """Whether the hub's answer ``e`` refuses hub repo ``repo_id`` itself, as huggingface_hub
    reads it (RepoNotFound, GatedRepo, a disabled repo; a 401 with no code is RepoNotFound
    too: the hub's answer, without a login, for a repo deleted or private), not a revision or
    a file of it, nor a login it rejects; if so, a warning (the first time) that the cached
    commit ``snapshot`` is used."""
    import warnings

    from huggingface_hub import constants
    from huggingface_hub.utils import DisabledRepoError, GatedRepoError, RepositoryNotFoundError

    if not isinstance(e, (RepositoryNotFoundError, DisabledRepoError)):
        return False
    response = e.response
    headers = response.headers if response is not None else {}
    if headers.get("X-Error-Message") == "Invalid credentials in Authorization header":
        return False  # a token the hub rejects (huggingface_hub before 1.0 read it as the repo)
    if repo_id in _REFUSED:
        return True
    _REFUSED.add(repo_id)
    code = headers.get("X-Error-Code")
    answer = " ".join(str(a) for a in (getattr(response, "status_code", None), code) if a)
    login = "log in (HF_TOKEN or `hf auth login`) to refresh it"
    if isinstance(e, GatedRepoError):
        why = "is gated and this login may not read it"
        fix = f"accept its terms at {constants.ENDPOINT}/{repo_id} and {login}"
    elif isinstance(e, DisabledRepoError):
        why, fix = "is disabled on the hub", "it can be refreshed once it is enabled again"
    else:
        why, fix = "is gone, or private to this login", f"for a private repo, {login}"
    warnings.warn(
        printable(
            f"hub repo '{repo_id}' {why} (the hub answered {answer or 'so'}): the copy cached "
            f"before is used, {snapshot}; {fix}"
        ),
        stacklevel=4,
    )
    return True


def repo_folder(repo_id: str) -> Path:
    """Model repo ``repo_id``'s folder in the Hugging Face cache this process reads."""
    from huggingface_hub.file_download import repo_folder_name

    from .remote import _cache

    return Path(_cache()) / repo_folder_name(repo_id=repo_id, repo_type="model")


def ref_path(repo_id: str, revision: str | None = None) -> Path:
    """The file of the Hugging Face cache that holds the commit hash branch or tag ``revision``
    (None: main) of model repo ``repo_id`` names: ``refs/<revision>``."""
    return repo_folder(repo_id) / "refs" / (revision or "main")


def cached_ref(repo_id: str, revision: str | None = None) -> str | None:
    """The commit hash that the Hugging Face cache's ``refs/<revision>`` (None: main) of hub
    repo ``repo_id`` holds; None where it has none, or none this user may read (the file's
    lookup says so). A CheckpointError where the file holds anything but a commit's 40 hex
    digits (a disk's damage, a copy cut short, an editor's newline), with which
    huggingface_hub's own lookups find nothing ("not in the Hugging Face cache") or fail with
    a bare UnicodeDecodeError: naming it, and its fix."""

    from ..errors import CheckpointError

    ref = ref_path(repo_id, revision)
    try:
        data = ref.read_bytes()
    except OSError:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and is_commit(text):
        return text
    held = "no text" if text is None else repr(text[:60]) if text else "nothing"
    raise CheckpointError(
        f"{printable(str(ref))}, the Hugging Face cache's record of the commit that "
        f"{quoted(revision or 'main')} of hub repo {quoted(repo_id)} names, is damaged (it "
        f"holds {held}, not a commit's hash): {_ref_fix(repo_id, ref)}"
    )


def _ref_fix(repo_id: str, ref: Path) -> str:
    """How to mend ``ref``, hub repo ``repo_id``'s damaged ref file: write back the commit it
    named, of those whose files the cache holds (the newest first); deleted, it is written
    again by a download only, and until then the cached files are not found offline. The
    ``printf``'s path is in bash's quotes (:func:`~loftup.escaping.shell_quoted`), the
    message's other paths escaped by :func:`cached_ref`: pasted, it writes that file."""
    snapshots = repo_folder(repo_id) / "snapshots"
    try:
        dated = [(s.stat().st_mtime, s.name) for s in snapshots.iterdir() if s.is_dir()]
    except OSError:
        dated = []
    commits = [c for _, c in sorted(dated, reverse=True) if is_commit(c)]
    again = "delete it, and the next download from the repo (with network) writes it again"
    if not commits:
        return again
    which = f"{commits[0]}, the only commit whose files the cache holds"
    if len(commits) > 1:
        which = f"one of those whose files the cache holds, newest first: {', '.join(commits)}"
    return (
        f"write back the commit it named, {which} (`printf %s {commits[0]} > "
        f"{shell_quoted(ref)}`); or {again} (until then, its cached files are not found "
        "offline)"
    )


_REFRESHING: set[Path] = set()


@contextmanager
def all_or_nothing(repo_id: str, revision: str | None = None):
    """A refresh of hub repo ``repo_id`` (at branch or tag ``revision``; None: main) that an
    offline load sees whole or not at all: the first file of a newer commit moves the cache's
    ref (``refs/<branch>``, holding the commit's hash) to that commit, whose other files are
    then looked for there; where any of them cannot be fetched (an error, an interrupt), the
    ref is set back to the commit it held, whose cached files load as before. A
    WeightsNotFoundError says so. Nested, for the same ref, the outer one decides."""
    from ..atomic import atomic_write_bytes

    ref = ref_path(repo_id, revision)
    if ref in _REFRESHING:
        yield
        return
    before = ref.read_bytes() if ref.is_file() else None
    _REFRESHING.add(ref)
    try:
        yield
    except BaseException as e:
        if before is None or not ref.is_file() or ref.read_bytes() == before:
            raise
        atomic_write_bytes(ref, before)
        if not isinstance(e, WeightsNotFoundError):
            raise
        raise WeightsNotFoundError(
            f"{e}; loading {spelled(repo_id, revision)} still "
            f"reads the files of commit {before.decode(errors='replace')} cached before"
        ) from None
    finally:
        _REFRESHING.discard(ref)
