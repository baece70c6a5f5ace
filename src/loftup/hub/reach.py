"""Whether the Hugging Face hub may and can be asked: the offline switches (``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE``), and a quick check that its endpoint (or the proxy downloads go
through) answers at all, so that a machine without network hears so in seconds rather than
after minutes of retries; and what its refusal, where it answered, says to do. :mod:`.remote`
decides from these whether to download."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def offline_reason() -> str | None:
    """Why the hub may not be contacted (offline mode is on), or None.

    Read from the environment now and from what huggingface_hub read when it was imported
    (``constants.HF_HUB_OFFLINE``: in every release since 0.24, unlike ``is_offline_mode``)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "0").upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}=1 is set"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE=1 was set when huggingface_hub was imported"
    return None


#: When each (host, port) last failed the check below, and when it last passed: neither is
#: checked again within a minute, so a run that looks for several files (a backbone's shards)
#: waits for an unreachable hub once, and asks a reachable one nothing more before each file.
#: A download that then fails for want of a connection or an answer forgets the pass
#: (:func:`mark_unreachable`). WHY: each failure's reason, as an error says it.
UNREACHABLE: dict[tuple[str, int], float] = {}
REACHABLE: dict[tuple[str, int], float] = {}
WHY: dict[tuple[str, int], str] = {}
REMEMBERED_S = 60.0
NO_CONNECTION = "the Hugging Face hub cannot be reached"
SILENT = "the Hugging Face hub endpoint "  # how the reason for one that never answered begins


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers at all: :func:`unreachable_reason` is None."""
    return unreachable_reason(timeout) is None


def unreachable_reason(timeout: float = 3.0) -> str | None:
    """A quick check that the hub endpoint answers at all (avoids minutes of retries): a TCP
    connection to it, or to the proxy that downloads go through (``HTTPS_PROXY`` and the like,
    which huggingface_hub honours) where one is set for it, and an answer on it (see
    :func:`answers`); behind a proxy the endpoint itself is often unreachable directly while
    downloads work. None where it answers, else why not (no connection, or one accepted and
    never answered).

    The name lookup and the connection share ``timeout`` seconds (a resolver that gets no
    answer retries for tens of seconds; the name's addresses are tried in turn, as a download
    tries them, and the first that accepts decides). The answer is waited for as long as a
    download waits for its first one, its retry included (``HF_HUB_ETAG_TIMEOUT``, 10 s unless
    set, then huggingface_hub's 60 s), counted from the start: a slow mirror passes, and one
    that accepts and stays silent fails within that. The verdict is remembered for a minute."""
    import time

    start = time.monotonic()
    url, where = _endpoint()
    if start - UNREACHABLE.get(where, -1e9) < REMEMBERED_S:
        return WHY.get(where, NO_CONNECTION)
    if start - REACHABLE.get(where, -1e9) < REMEMBERED_S:
        return None
    connect_by, answer_by = start + timeout, start + max(timeout, _answer_timeout())
    try:
        addresses = resolve_host(where, timeout)
    except OSError:
        addresses = []
    why = NO_CONNECTION
    for i, address in enumerate(addresses):  # each, as a download's connection tries them
        left = connect_by - time.monotonic()  # shared by those still to try (IPv6 may be
        if left <= 0:  # unrouted, and its connection wait for nothing)
            break
        try:
            conn = socket.create_connection(
                (address, where[1]), timeout=left / (len(addresses) - i)
            )
        except OSError:
            continue
        with conn:
            wait = answer_by - time.monotonic()
            why = None if answers(conn, url, max(wait, 0.01)) else _silent(where, answer_by - start)
        break
    if why is None:
        REACHABLE[where] = time.monotonic()
    else:
        mark_unreachable(why, where)
    return why


def _endpoint():
    """The hub endpoint's URL, or the proxy's that downloads from it go through (parsed), and
    its (host, port)."""
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    return url, (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))


def _silent(where: tuple[str, int], waited: float) -> str:
    """The reason for an endpoint ``where`` that accepted the connection and did not answer."""
    return (
        f"{SILENT}{where[0]}:{where[1]} accepted the connection but did "
        f"not answer within {waited:.0f} s"
    )


def mark_unreachable(why: str | None = None, where: tuple[str, int] | None = None) -> None:
    """Remember endpoint ``where`` (None: the current one) as failing, for ``why`` (None: no
    connection), and forget a pass: a download that failed so after the check passed."""
    import time

    where = where or _endpoint()[1]
    REACHABLE.pop(where, None)
    UNREACHABLE[where] = time.monotonic()
    WHY[where] = why or NO_CONNECTION


def lost_connection(e: BaseException, failed: str) -> str | None:
    """Where the download that raised ``e`` failed for want of a connection or an answer (its
    cause chain holds a connect error or a timeout, of httpx, requests or a socket): the reason
    to say, and the endpoint's pass forgotten. A connection lost is checked again at once (a
    refusal takes no time), and said as no connection where it fails; a timeout (``failed``,
    as said) is remembered for the next files, as a failed check is. None for any other failure,
    and where the endpoint answers the check again."""
    seen, timed_out, connect = set(), False, False
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names = {c.__name__ for c in type(e).__mro__}
        timed_out = timed_out or bool(names & {"TimeoutException", "Timeout", "TimeoutError"})
        connect = connect or bool(names & {"ConnectError", "ConnectionError", "gaierror"})
        e = e.__cause__ or e.__context__
    if not (timed_out or connect):
        return None
    where = _endpoint()[1]
    REACHABLE.pop(where, None)
    if connect and not timed_out:
        return unreachable_reason()
    mark_unreachable(failed, where)
    return failed


def _answer_timeout() -> float:
    """How long huggingface_hub waits for a download's first answer, its retry included:
    ``HF_HUB_ETAG_TIMEOUT``, as it read it when imported (10 s unless set), then its
    ``_ETAG_RETRY_TIMEOUT`` (60 s)."""
    from huggingface_hub import constants, file_download

    first = float(getattr(constants, "HF_HUB_ETAG_TIMEOUT", 10))
    return first + float(getattr(file_download, "_ETAG_RETRY_TIMEOUT", 60))


def answers(conn: socket.socket, url, timeout: float) -> bool:
    """Whether the server on connection ``conn`` (to ``url``, parsed) answers within ``timeout``
    seconds: the first byte of its reply to a HEAD request, or its side of a TLS handshake for
    https. A refusal (an error, a closed connection) is an answer too; only silence is not: a
    listener that accepts and never replies (a stalled proxy, a firewall) held each file's
    download for minutes of retries."""
    conn.settimeout(timeout)
    try:
        if url.scheme == "https":  # the certificate is the download's to check, not ours
            import ssl

            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.wrap_socket(conn, server_hostname=url.hostname).close()
        else:
            host = (url.hostname or "").encode("idna")
            conn.sendall(b"HEAD / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            conn.recv(1)
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def resolve_host(where: tuple[str, int], timeout: float) -> list[str]:
    """The addresses of host ``where[0]`` (at most 4, in the resolver's order), or an OSError
    after ``timeout`` seconds (the lookup goes on in a daemon thread, which does not hold up the
    exit)."""
    import threading

    found: list = []

    def lookup():
        try:
            infos = socket.getaddrinfo(*where, type=socket.SOCK_STREAM)
            found.append(list(dict.fromkeys(info[4][0] for info in infos))[:4])
        except OSError as e:
            found.append(e)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        raise OSError(f"no answer for {where[0]} within {timeout} s")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def hub_refusal(e: Exception, repo_id: str, filename: str, revision: str | None) -> str | None:
    """What to do where the hub answered a download of ``filename`` from ``repo_id`` (at
    ``revision``) with ``e``, that it has no such repo, revision or file: check the id, the
    revision or the repo, not the network; None for any other failure (no answer, the
    server's own error), where a download elsewhere may do."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RevisionNotFoundError):
        return (
            f"Hub repo {repo_id!r} has no branch, tag or commit {revision!r}: check the "
            f"revision ({repo_id} alone is its main branch)"
        )
    if isinstance(e, RepositoryNotFoundError):  # so is a private repo without a login
        return (
            f"The hub has no repo {repo_id!r} that may be read without a login: check the id, "
            "and for a private repo log in (set HF_TOKEN to an access token, or `hf auth login`)"
        )
    remote = isinstance(e, HfHubHTTPError) and not isinstance(e, LocalEntryNotFoundError)
    if remote and isinstance(e, EntryNotFoundError):
        at = "" if revision is None else f" at {revision!r}"
        return f"Hub repo {repo_id!r}{at} holds no {filename!r}: check that it is the repo meant"
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
