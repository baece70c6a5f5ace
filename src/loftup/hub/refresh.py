"""A refresh of a hub repo's cached files (``loftup download ORG/NAME`` of one's own, which its
owner may have pushed again): the cached copy kept where the hub cannot give a newer one, and
the cache's ref set back where a newer commit arrived only in part."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..errors import WeightsNotFoundError


def _kept(cached: Path, e: Exception, repo_id: str, filename: str) -> Path:
    """The cached copy, where a refresh of it failed: said where the hub answered (a file gone
    or renamed: the copy is then no longer what the hub holds), silent where it did not answer
    (no network: the copy is all there is). A repo gone or made private is not said: for
    those huggingface_hub itself returns the cached copy, without an error to read."""
    import warnings

    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        first = str(e).splitlines()[0][:200]
        warnings.warn(
            f"hub repo {repo_id!r} did not give {filename!r} ({type(e).__name__}: {first}); "
            f"kept the cached copy, {cached}",
            stacklevel=3,
        )
    return cached


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
    from .remote import _cache

    ref = Path(_cache()) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
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
            f"{e}; loading {repo_id if revision is None else f'{repo_id}@{revision}'} still "
            f"reads the files of commit {before.decode(errors='replace')} cached before"
        ) from None
    finally:
        _REFRESHING.discard(ref)
