"""Which proxy huggingface_hub's requests for a URL go through, as its own HTTP client decides
(:func:`proxy_for`), so that :mod:`.reach`'s check connects where a download will: httpx
(huggingface_hub 1.0 on) reads NO_PROXY by curl's rules, where a ``host:port``, an address
range (``10.0.0.0/8``) or ``*.domain`` bypasses the proxy, which urllib's reading does not
know; requests (before 1.0) has rules of its own."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from ..escaping import printable

#: The client's choice could not be read (a client or transport of the user's, a release
#: built otherwise): urllib's reading of the environment decides, as it did before
_UNKNOWN = object()


def proxy_for(url: str) -> str | None:
    """The URL of the proxy that huggingface_hub's session sends a request for ``url``
    through (``http://proxy:3128``), None where it goes straight to ``url``'s host. Asked of
    the session itself, which downloads use: it read the environment when it was made
    (where it cannot be, :func:`client_error`'s error). A proxy given without a scheme
    (``HTTPS_PROXY=proxy.corp:3128``) is an http one, as each client takes it (requests' own
    answer leaves it so)."""
    try:
        from huggingface_hub.utils import get_session
    except ImportError:  # none to ask: the environment decides
        session = None
    else:
        try:
            session = get_session()
        except Exception as e:  # noqa: BLE001 - each download would fail so: said now
            raise client_error(e) from e
    found, by_requests = _httpx_proxy(session, url), False
    if found is _UNKNOWN:
        found, by_requests = _requests_proxy(session, url), True
    if found is _UNKNOWN:
        found, by_requests = _urllib_proxy(url), False
    if by_requests and found and found.lower().startswith("socks"):
        _needs_pysocks(found)
    return found if found is None or "://" in found else f"http://{found}"


def _httpx_proxy(client, url: str):
    """The proxy of an httpx client (httpx or its fork httpx2) for ``url``: the transport it
    picks for it (its proxy mounts, NO_PROXY's exceptions among them), whose connection pool
    is a proxy's (with its URL) or a direct one, or the client's own transport of another
    kind (direct: none of the environment's proxies); :data:`_UNKNOWN` where these private
    parts are not there or not as expected."""
    pick = getattr(client, "_transport_for_url", None)
    if pick is None or not hasattr(client, "build_request"):
        return _UNKNOWN
    try:
        transport = pick(client.build_request("HEAD", url).url)
    except Exception:  # noqa: BLE001 - not the client expected
        return _UNKNOWN
    pool = getattr(transport, "_pool", None)
    proxy = getattr(pool, "_proxy_url", None)  # httpcore's HTTPProxy and SOCKSProxy
    if proxy is None:  # a plain ConnectionPool: straight to the host
        names = [c.__name__ for c in type(pool).__mro__]
        direct = "ConnectionPool" in names and not any("Proxy" in n for n in names)
        # or the client's own transport, a user's (a wrapper): no proxy mount matched, and
        # httpx reads no proxy variables for a client given a transport
        own = transport is getattr(client, "_transport", _UNKNOWN)
        return None if direct or own else _UNKNOWN
    try:
        scheme, host = proxy.scheme.decode("ascii"), proxy.host.decode("ascii")
    except (AttributeError, UnicodeDecodeError):
        return _UNKNOWN
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{scheme}://{host}" + (f":{proxy.port}" if proxy.port else "")


def _requests_proxy(session, url: str):
    """The proxy of a requests session for ``url``, as its request picks it: the session's
    proxies merged with the environment's (NO_PROXY read by requests' rules), then the one
    for the URL's scheme and host; :data:`_UNKNOWN` for no requests session."""
    merge = getattr(session, "merge_environment_settings", None)
    if merge is None:
        return _UNKNOWN
    try:
        from requests.utils import select_proxy

        return select_proxy(url, merge(url, {}, None, None, None)["proxies"]) or None
    except Exception:  # noqa: BLE001 - not the session expected
        return _UNKNOWN


def _needs_pysocks(proxy: str) -> None:
    """A MissingDependencyError where requests (huggingface_hub's client before 1.0) is to go
    through SOCKS proxy ``proxy`` and PySocks, which it needs for one, is not installed: each
    download failed ("Missing dependencies for SOCKS support"), said as no network's."""
    import importlib.util

    from ..errors import MissingDependencyError

    if importlib.util.find_spec("socks") is not None:
        return
    name = next((n for n in PROXY_VARIABLES if os.environ.get(n) == proxy), None)
    given = f"{name}={proxy!r}" if name else f"the proxy {proxy!r}"
    raise MissingDependencyError(
        f"{given} is a SOCKS proxy, which requests (huggingface_hub's HTTP client before 1.0) "
        "goes through only with PySocks, which is not installed: pip install PySocks (or "
        "'requests[socks]'), or use another proxy"
    )


def _urllib_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` and the like) unless
    urllib reads NO_PROXY as bypassing it for the host; None where none."""
    import urllib.request

    parsed = urlparse(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parsed.hostname or ""):
        return None
    return proxy


#: The variables that name a proxy, as huggingface_hub's clients read them
PROXY_VARIABLES = (
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "http_proxy",
    "HTTP_PROXY",
)


def malformed(url: str) -> str | None:
    """What makes ``url`` (a proxy's, or the endpoint's) no URL a connection can be made to
    (a port that is no number up to 65535, a bracket left open, no host); None where it is
    one. A proxy's scheme may be left out, as the clients read it."""
    try:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        parsed.port  # noqa: B018 - a ValueError where it is no number up to 65535
    except ValueError as e:
        return str(e)
    return None if parsed.hostname else "it names no host"


def bad_proxy_variable(proxy: str | None = None):
    """A UsageError naming the proxy variable whose value is no proxy URL (:func:`malformed`):
    the one that gave ``proxy``, where one did, else the first such (huggingface_hub's client
    reads them all); None where each set is a URL."""
    from ..errors import UsageError

    bad = [(n, v) for n in PROXY_VARIABLES if (v := os.environ.get(n)) and malformed(v)]
    bad.sort(key=lambda nv: proxy not in (nv[1], f"http://{nv[1]}"))
    if not bad:
        return None
    name, value = bad[0]
    return UsageError(
        f"{name}={value!r}, a proxy that downloads from the Hugging Face hub go through, is no "
        f"proxy URL ({malformed(value)}): set it to http://HOST:PORT, or unset it"
    )


def client_error(e: Exception):
    """The error to raise where huggingface_hub's HTTP client cannot be made (``e``, as its
    ``get_session`` raised it), as each download would fail: a proxy variable that is no URL
    named (:func:`bad_proxy_variable`), or ``e`` itself with the proxy settings it was made
    with: a package missing (socksio, for a SOCKS proxy) is no network's fault."""
    from ..errors import MissingDependencyError, UsageError, one_line

    bad = bad_proxy_variable()
    if bad is not None:
        return bad
    named = ", ".join(f"{n}={v!r}" for n in PROXY_VARIABLES if (v := os.environ.get(n)))
    why = (
        f"huggingface_hub's HTTP client cannot be made{f' (with {named})' if named else ''}, "
        f"so no download can start ({printable(one_line(e, None, typed=True))})"
    )
    if isinstance(e, ImportError):
        return MissingDependencyError(f"{why}: install what it names, or use another proxy")
    return UsageError(f"{why}: check the proxy variables, and any client factory of yours")
