"""The hub's quick check connects where huggingface_hub's own client sends a download: through
the proxy the environment names, or straight to the endpoint where NO_PROXY says so, read by
the client's rules (curl's, in httpx: a host:port, an address range, ``*.domain``)."""

from __future__ import annotations

import socket

import pytest

from hub_helpers import _use_mirror
from loftup import WeightsNotFoundError
from loftup.hub import reach
from test_hub_reach import PROXIES, fresh_session, listener


@pytest.fixture
def proxy_env(monkeypatch):
    """No proxy set, no verdict remembered, and huggingface_hub's client made afresh; yields
    ``set(**variables)``, which sets environment variables as a process started with them has
    them (the client made again). The client is made afresh after the test too."""
    for var in PROXIES:
        for name in (var, var.upper()):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setattr(reach, "REACHABLE", {})

    def set_env(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        fresh_session()

    fresh_session()
    yield set_env
    monkeypatch.undo()
    fresh_session()


def _httpx_client() -> bool:
    """Whether huggingface_hub's client is httpx's (1.0 on), which reads NO_PROXY by curl's
    rules; requests (before 1.0) has rules of its own."""
    from huggingface_hub.utils import get_session

    return hasattr(get_session(), "_transport_for_url")


def test_the_quick_reachability_check_goes_through_the_proxy_downloads_use(proxy_env):
    """Behind a proxy (HTTPS_PROXY, which huggingface_hub honours) the hub itself cannot be
    reached directly, while downloads work through the proxy: the 3 s check connected to the
    endpoint directly and refused every download as "cannot be reached"."""
    with socket.socket() as closed, listener() as proxy:
        closed.bind(("127.0.0.1", 0))  # nothing listens: the endpoint, unreachable directly
        proxy_env(HF_ENDPOINT=f"https://127.0.0.1:{closed.getsockname()[1]}")
        assert not reach.hub_reachable(timeout=1)
        proxy_env(HTTPS_PROXY=f"http://127.0.0.1:{proxy}")
        assert reach.hub_reachable(timeout=1)
        proxy_env(NO_PROXY="127.0.0.1")  # the endpoint bypasses the proxy
        assert not reach.hub_reachable(timeout=1)


@pytest.mark.parametrize("entry", ["host:port", "address range", "address", "*", "another port"])
def test_a_mirror_that_no_proxy_exempts_is_downloaded_from_beside_a_dead_proxy(
    tmp_path, monkeypatch, proxy_env, local_hub, entry
):
    """HTTPS_PROXY and HTTP_PROXY name a proxy that is down, and NO_PROXY exempts the mirror
    (127.0.0.1:PORT, 127.0.0.0/8): huggingface_hub's client goes straight to it, while the
    check read NO_PROXY by urllib's rules, connected to the proxy, and refused the download
    ("the Hugging Face hub cannot be reached"). An entry for another port exempts nothing:
    that download goes to the dead proxy, and is refused at once."""
    from loftup.hub.remote import hub_file

    endpoint = local_hub({("someone/repo", "a.bin"): b"weights"})
    port = int(endpoint.rsplit(":", 1)[1])
    if entry == "host:port" and not _httpx_client():
        pytest.skip("requests (huggingface_hub before 1.0) sends 127.0.0.1:PORT to the proxy")
    exempt = {
        "host:port": f"127.0.0.1:{port}",
        "address range": "127.0.0.0/8",
        "address": "127.0.0.1",
        "*": "*",
        "another port": f"127.0.0.1:{port + 1}",
    }[entry]
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # nothing listens there: the proxy is down
        _use_mirror(monkeypatch, endpoint, tmp_path / "hub")
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        proxy_env(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, NO_PROXY=exempt, no_proxy=exempt)
        kw = {"what": "a.bin", "local_hint": "a local file"}
        if entry == "another port":
            with pytest.raises(WeightsNotFoundError, match="hub cannot be reached"):
                hub_file("someone/repo", "a.bin", **kw)
            assert local_hub.requests == []
        else:
            assert hub_file("someone/repo", "a.bin", **kw).read_bytes() == b"weights"


@pytest.mark.parametrize(
    "endpoint, no_proxy, where",
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("http://127.0.0.1:8080", "127.0.0.1:9090", ("proxy.invalid", 3128)),
        ("http://10.1.2.3:8080", "10.0.0.0/8", ("10.1.2.3", 8080)),
        ("http://11.1.2.3:8080", "10.0.0.0/8", ("proxy.invalid", 3128)),
        ("https://hub.corp.example", ".corp.example", ("hub.corp.example", 443)),
        ("https://hub.corp.example", "*.corp.example", ("hub.corp.example", 443)),
        ("https://hub.corp.example", "corp.example", ("hub.corp.example", 443)),
        ("https://hubcorp.example", "corp.example", ("proxy.invalid", 3128)),
        ("https://huggingface.co", "other.example, *", ("huggingface.co", 443)),
        ("https://huggingface.co", "", ("proxy.invalid", 3128)),
    ],
)
def test_the_check_reads_no_proxy_as_huggingface_hubs_client_does(
    proxy_env, endpoint, no_proxy, where
):
    """Where the check connects, for NO_PROXY's forms, as httpx (huggingface_hub's client from
    1.0) reads them: urllib's reading sent a host:port, an address range and ``*.domain``
    entry's endpoint to the proxy, where downloads went straight to it."""
    if not _httpx_client():
        pytest.skip("huggingface_hub before 1.0 reads NO_PROXY by requests' rules")
    proxy = "http://proxy.invalid:3128"
    proxy_env(HF_ENDPOINT=endpoint, HTTPS_PROXY=proxy, HTTP_PROXY=proxy, NO_PROXY=no_proxy)
    assert reach._endpoint()[1] == where


@pytest.fixture(params=["requests", "this huggingface_hub's"])
def client(request, monkeypatch):
    """huggingface_hub's client, as the check asks it: requests' Session, huggingface_hub's
    before 1.0 (a real one, where requests is installed), or this huggingface_hub's own."""
    if request.param == "requests":
        requests = pytest.importorskip(
            "requests", reason="requests (huggingface_hub before 1.0's client) is not installed"
        )
        import huggingface_hub.utils

        monkeypatch.setattr(huggingface_hub.utils, "get_session", requests.Session)
    return request.param


def test_a_proxy_given_without_a_scheme_is_connected_to(proxy_env, client):
    """HTTPS_PROXY=127.0.0.1:PORT, a live proxy without ``http://``: requests' choice of it
    was taken as a URL whose scheme is 127.0.0.1, with no host, and the check connected to
    ('', 80) and refused every download on huggingface_hub before 1.0 ("the Hugging Face hub
    cannot be reached"); requests itself, httpx and urllib take it as http://."""
    with listener() as proxy:
        variable = f"127.0.0.1:{proxy}"
        proxy_env(HF_ENDPOINT="http://hub.invalid", HTTPS_PROXY=variable, HTTP_PROXY=variable)
        assert reach._endpoint()[1] == ("127.0.0.1", proxy)
        assert reach.unreachable_reason(timeout=1) is None


def _download_error(tmp_path, monkeypatch, capsys) -> str:
    """What ``loftup download loftup_clip --no-backbone`` prints, with nothing cached and no
    offline switch: it must fail (status 2), on one line without a traceback."""
    from huggingface_hub import constants

    from loftup.cli import main

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["download", "loftup_clip", "--no-backbone"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("value", ["http://p:notaport", "http://p:99999", "http://[::1", ":3128"])
def test_a_proxy_variable_that_is_no_url_is_named(
    tmp_path, monkeypatch, capsys, proxy_env, client, value
):
    """A malformed HTTPS_PROXY (a port that is no number up to 65535, a bracket left open, no
    host): ``loftup download`` ended in a traceback (ValueError: Port could not be cast to
    integer value), or connected to no host; one line names the variable and the fix."""
    proxy_env(HTTPS_PROXY=value)
    err = _download_error(tmp_path, monkeypatch, capsys)
    assert err.startswith(
        f"error: HTTPS_PROXY={value!r}, a proxy that downloads from the Hugging Face hub go "
        "through, is no proxy URL ("
    ), err
    assert err.endswith("): set it to http://HOST:PORT, or unset it\n"), err


def test_a_socks_proxy_without_its_package_is_said_so(
    tmp_path, monkeypatch, capsys, proxy_env, client
):
    """ALL_PROXY names a SOCKS proxy that listens, and the package the client needs for it
    (socksio for httpx, PySocks for requests) is not installed: the check passed, the
    download failed, and its advice was to run it "on a machine with network"; the missing
    package is said, as no network's fault."""
    import importlib.util

    httpx = _httpx_client()
    package = "socksio" if httpx else "socks"
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed: the client goes through SOCKS proxies")
    with listener() as proxy:
        variable = f"socks5://127.0.0.1:{proxy}"
        proxy_env(ALL_PROXY=variable, HF_ENDPOINT="http://hub.invalid")
        err = _download_error(tmp_path, monkeypatch, capsys)
    if httpx:
        assert err.startswith(
            f"error: huggingface_hub's HTTP client cannot be made (with ALL_PROXY={variable!r}), "
            "so no download can start (ImportError: Using SOCKS proxy, but the 'socksio' "
            "package is not installed"
        ), err
        assert err.endswith("): install what it names, or use another proxy\n"), err
    else:
        assert err == (
            f"error: ALL_PROXY={variable!r} is a SOCKS proxy, which requests (huggingface_hub's "
            "HTTP client before 1.0) goes through only with PySocks, which is not installed: "
            "pip install PySocks (or 'requests[socks]'), or use another proxy\n"
        ), err


def test_an_endpoint_that_is_no_url_is_named(proxy_env):
    """HF_ENDPOINT with a port that is no number: a traceback from the check's parsing."""
    from loftup.errors import UsageError

    proxy_env(HF_ENDPOINT="https://hub.corp:44x")
    with pytest.raises(UsageError, match=r"^HF_ENDPOINT='https://hub.corp:44x' is no URL of a hub"):
        reach.unreachable_reason(timeout=1)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_socks_proxy_without_a_port_is_checked_on_1080(proxy_env, client, scheme):
    """ALL_PROXY=socks5h://p: the check connected to port 80, where the clients (httpcore,
    PySocks) connect to 1080, SOCKS' own."""
    import importlib.util

    package = "socksio" if _httpx_client() else "socks"  # httpx's, PySocks for requests
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: the client goes through no SOCKS proxy")
    proxy_env(ALL_PROXY=f"{scheme}://proxy.invalid")
    assert reach._endpoint()[1] == ("proxy.invalid", 1080)


def test_a_client_of_ones_own_with_its_own_transport_is_not_sent_to_the_proxy(
    tmp_path, monkeypatch, proxy_env, local_hub
):
    """A client factory of the user's whose client wraps its transport (to log, to retry):
    httpx reads no proxy variables for it, and its downloads go straight to the mirror; the
    check connected to HTTPS_PROXY, a dead proxy, and refused them."""
    import importlib

    from huggingface_hub import utils

    from loftup.hub.remote import hub_file

    if not hasattr(utils, "set_client_factory"):
        pytest.skip("huggingface_hub before 1.0 takes no client factory")
    httpx = importlib.import_module(type(utils.get_session()).__module__.split(".")[0])

    class Wrapper(httpx.BaseTransport):
        def __init__(self):
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request):
            return self.inner.handle_request(request)

    endpoint = local_hub({("someone/repo", "a.bin"): b"weights"})
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # nothing listens there: the proxy is down
        _use_mirror(monkeypatch, endpoint, tmp_path / "hub")
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        proxy_env(HTTPS_PROXY=proxy, HTTP_PROXY=proxy, NO_PROXY="", no_proxy="")
        before = utils._http._GLOBAL_CLIENT_FACTORY
        utils.set_client_factory(lambda: httpx.Client(transport=Wrapper()))
        try:
            path = hub_file("someone/repo", "a.bin", what="a.bin", local_hint="a local file")
        finally:
            utils.set_client_factory(before)
    assert path.read_bytes() == b"weights"
