"""Whether the Hugging Face hub may and can be asked: the offline switches (``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE``), and a quick check that its endpoint (or the proxy downloads go
through) answers at all, so that a machine without network hears so in seconds rather than
after minutes of retries (what a download's failure says to do: :mod:`.failures`).
:mod:`.remote` decides from these whether to download."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

# what a download's failure says to do: in :mod:`.failures`, importable from here
from .failures import cache_write_error, hub_refusal, server_error  # noqa: F401


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
    answer_by = start + max(timeout, _answer_timeout())
    conn = connection(where, timeout)
    why = NO_CONNECTION
    if conn is not None:
        with conn:
            wait = answer_by - time.monotonic()
            why = None if answers(conn, url, max(wait, 0.01)) else _silent(where, answer_by - start)
    if why is None:
        REACHABLE[where] = time.monotonic()
    else:
        mark_unreachable(why, where)
    return why


def unreachable_for_download(timeout: float = 3.0) -> str | None:
    """:func:`unreachable_reason`, for a download about to start: where its verdict is a pass
    remembered from an earlier check, the hub may have gone since (a mirror stopped, the
    network lost), and a refused connection met huggingface_hub's retries of the download's
    first request (1+2+4+8+8 s of back-off, 23 s, that no setting of it bounds). So a
    connection to the endpoint (or proxy) is made first, and closed: no request, no TLS, a
    round trip; where none is made within ``timeout`` seconds, the pass is forgotten and the
    whole check made again (a blip passes it, and the download then retries as it would).
    A slow hub accepts connections as a fast one does: its answer is not waited for here."""
    import time

    start = time.monotonic()
    why = unreachable_reason(timeout)
    where = _endpoint()[1]
    if why is not None or REACHABLE.get(where, start) >= start:  # failed, or passed just now
        return why
    conn = connection(where, timeout)
    if conn is not None:
        conn.close()
        return None
    REACHABLE.pop(where, None)
    return unreachable_reason(timeout)


def connection(where: tuple[str, int], timeout: float) -> socket.socket | None:
    """A TCP connection to ``where`` (host, port), to the first of its addresses that accepts
    one, as a download's connection tries them, within ``timeout`` seconds, the name lookup
    included; None where none does."""
    import time

    connect_by = time.monotonic() + timeout
    try:
        addresses = resolve_host(where, timeout)
    except OSError:
        return None
    for i, address in enumerate(addresses):
        left = connect_by - time.monotonic()  # shared by those still to try (IPv6 may be
        if left <= 0:  # unrouted, and its connection wait for nothing)
            return None
        try:
            return socket.create_connection(
                (address, where[1]), timeout=left / (len(addresses) - i)
            )
        except OSError:
            continue
    return None


def _endpoint():
    """The hub endpoint's URL, or the proxy's that downloads from it go through (parsed), and
    its (host, port): the proxy as huggingface_hub's own client picks it (:func:`proxy_for`:
    NO_PROXY by its rules, not urllib's). A UsageError where either is no URL, naming the
    variable that gave it (:func:`.proxy.bad_proxy_variable`), not a traceback."""
    from ..errors import UsageError
    from .proxy import bad_proxy_variable, malformed, proxy_for

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    proxy = proxy_for(endpoint)
    if proxy is not None and malformed(proxy):  # not a traceback from the port's parsing
        raise bad_proxy_variable(proxy) or UsageError(
            f"the proxy {proxy!r} that huggingface_hub's client sends downloads through is no "
            f"URL ({malformed(proxy)}): check its settings"
        )
    if proxy is None and malformed(endpoint):
        raise UsageError(
            f"HF_ENDPOINT={endpoint!r} is no URL of a hub ({malformed(endpoint)}): set it to "
            "https://HOST (:PORT where it is not 443), or unset it for huggingface.co"
        )
    url = urlparse(proxy or endpoint)
    return url, (url.hostname or "", url.port or DEFAULT_PORTS.get(url.scheme, 80))


#: The port a URL of each scheme means where it names none, as the clients (and httpcore's
#: SOCKS proxies, PySocks' for requests) take it
DEFAULT_PORTS = {"http": 80, "https": 443} | dict.fromkeys(
    ("socks4", "socks4a", "socks5", "socks5h"), 1080
)


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
        # urllib3's NewConnectionError (requests', so huggingface_hub's before 1.0) is a
        # ConnectTimeoutError by class, for a refusal too: its cause says which it was
        timing = names & {"TimeoutException", "Timeout", "TimeoutError"}
        timed_out = timed_out or bool(timing and "NewConnectionError" not in names)
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
