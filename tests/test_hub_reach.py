"""The quick check that the hub (or the proxy downloads go through) answers at all, before a
download that would otherwise wait through minutes of retries."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from loftup import WeightsNotFoundError, load_upsampler
from loftup.hub import reach

PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@contextlib.contextmanager
def listener(
    host: str = "127.0.0.1",
    reply: bytes | None = b"HTTP/1.0 200 OK\r\n\r\n",
    delay: float = 0.0,
    accepted: list | None = None,
):
    """A server on ``host`` (yields its port) that accepts each connection and sends ``reply``
    after ``delay`` seconds (None: nothing, ever, as a stalled proxy or a firewall that accepts
    does); each connection's peer address is added to ``accepted``, where given."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen()
    held = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            held.append(conn)
            if accepted is not None:
                accepted.append(conn.getsockname()[0])
            if reply is not None:
                time.sleep(delay)
                conn.sendall(reply)
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in held:
            conn.close()


def fresh_session() -> None:
    """huggingface_hub's shared client made again at its next use, from the environment as it
    is then (httpx reads the proxies once, when the client is made, and the check asks the
    client; requests, before 1.0, reads them at each request and has no such client)."""
    import huggingface_hub

    close = getattr(huggingface_hub, "close_session", None)
    if close is not None:
        close()


@pytest.fixture
def no_proxy(monkeypatch):
    """No proxy set (nor in huggingface_hub's client, made afresh before and after), and no
    failure remembered from elsewhere."""
    for var in PROXIES:
        for name in (var, var.upper()):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setattr(reach, "REACHABLE", {})
    fresh_session()
    yield
    monkeypatch.undo()
    fresh_session()


def short_waits(monkeypatch, first: float, retry: float) -> None:
    """A download's first wait for an answer (HF_HUB_ETAG_TIMEOUT) and its retry's (60 s;
    huggingface_hub before 1.0 has none of its own, and the check reads 60 s then)."""
    from huggingface_hub import constants, file_download

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", first)
    monkeypatch.setattr(file_download, "_ETAG_RETRY_TIMEOUT", retry, raising=False)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_endpoint_that_accepts_and_never_answers_is_unreachable(monkeypatch, no_proxy, scheme):
    """A connection accepted and never answered was "reachable": each file's download then
    waited through 5 retries (401 s for one file) before it failed."""
    short_waits(monkeypatch, 0.3, 0.2)  # the answer's wait
    with listener(reply=None) as silent, listener() as answering:
        monkeypatch.setenv("HF_ENDPOINT", f"{scheme}://127.0.0.1:{silent}")
        assert not reach.hub_reachable(timeout=0.5)
        monkeypatch.setenv("HF_ENDPOINT", f"{scheme}://127.0.0.1:{answering}")
        assert reach.hub_reachable(timeout=0.5)  # a reply, even no TLS one, is an answer


def test_a_silent_endpoint_is_said_unreachable_and_the_next_file_waits_no_more(
    tmp_path, monkeypatch, no_proxy
):
    """Loading a released upsampler that is not cached, with an endpoint that accepts and never
    answers: the error says so (after as long as a download waits), and the next file is
    refused at once. It said the hub cannot be reached and to download on "a machine with
    network", where the connection was accepted."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    short_waits(monkeypatch, 0.3, 0.2)  # a download's waits, were it tried
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with listener(reply=None) as silent:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent}")
        for _ in range(2):
            with pytest.raises(WeightsNotFoundError) as e:
                load_upsampler("loftup_dinov2s")
            said = str(e.value)
            assert f"127.0.0.1:{silent} accepted the connection but did not answer" in said
            assert "machine with network" not in said and "Check HF_ENDPOINT" in said
        assert list(reach.UNREACHABLE) == [("127.0.0.1", silent)]


def test_a_mirror_slower_than_the_check_but_not_than_a_download_is_reachable(monkeypatch, no_proxy):
    """The check waited 3 s for the first byte where huggingface_hub waits
    HF_HUB_ETAG_TIMEOUT (10 s unless set): a mirror answering in 4 s was "cannot be reached",
    for a minute, while hf_hub_download from it worked."""
    short_waits(monkeypatch, 5, 60)
    with listener(delay=0.8) as slow:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{slow}")
        assert reach.hub_reachable(timeout=0.2)


def test_a_mirror_slower_than_hf_hub_etag_timeout_is_reachable_as_the_download_retries(
    monkeypatch, no_proxy
):
    """hf_hub_download asks again, waiting 60 s, where the first answer took longer than
    HF_HUB_ETAG_TIMEOUT: a mirror answering in 11 s was downloaded from in 21 s, while the
    check said "cannot be reached" after 10 s, for a minute."""
    short_waits(monkeypatch, 0.3, 60)
    with listener(delay=0.8) as slow:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{slow}")
        assert reach.hub_reachable(timeout=0.2)


def test_the_first_address_that_accepts_decides_and_a_pass_is_remembered(monkeypatch, no_proxy):
    """A name with four addresses that all accept and stay silent was tried four times (each
    waited for, 12 s in all where the README said 3 s); and a reachable hub was asked again
    before every file (a HEAD / and a TLS handshake before each of a backbone's shards)."""
    short_waits(monkeypatch, 0.2, 0.1)
    real = socket.getaddrinfo

    def four(host, port, *args, **kwargs):  # as huggingface.co has 4 A records
        if host != "hub.example":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"127.0.0.{i}", port)) for i in (1, 2, 3, 4)]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", four)
    accepted = []
    with listener("0.0.0.0", reply=None, accepted=accepted) as silent:
        monkeypatch.setenv("HF_ENDPOINT", f"http://hub.example:{silent}")
        assert not reach.hub_reachable(timeout=0.3)
    assert accepted == ["127.0.0.1"]
    accepted.clear()
    with listener("0.0.0.0", accepted=accepted) as answering:
        monkeypatch.setenv("HF_ENDPOINT", f"http://hub.example:{answering}")
        assert reach.hub_reachable(timeout=0.3) and reach.hub_reachable(timeout=0.3)
    assert accepted == ["127.0.0.1"]  # the second file: no second check
    assert reach.hub_reachable(timeout=0.3)  # within the minute, even with the listener gone


def test_an_unreachable_hub_is_named_at_once(tmp_path, monkeypatch, capsys):
    """No network and HF_HUB_OFFLINE unset: one line that says so within seconds, not minutes
    of huggingface_hub's retries. (In this process: a start of its own took most of its time.)"""
    import socket
    import time

    from hub_helpers import _use_mirror
    from loftup.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _use_mirror(monkeypatch, f"http://127.0.0.1:{port}", tmp_path / "hub")
    t0 = time.perf_counter()
    code = main(["download", "dinov2_vits14"])
    assert time.perf_counter() - t0 < 60
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "'config.json' of hub repo 'facebook/dinov2-small'" in line
    assert "the Hugging Face hub cannot be reached" in line
    assert "--backbone-weights /path/to/folder" in line


def test_a_name_lookup_that_gets_no_answer_is_bounded_and_not_repeated(monkeypatch, no_proxy):
    """A resolver that gets no answer (no network, a DNS server configured but out of reach)
    retries for tens of seconds, which the 3 s connection timeout does not bound; each file
    of a backbone waited for it again."""
    import socket
    import time

    from loftup.hub import reach

    calls = []

    def no_answer(*args, **kwargs):
        calls.append(args[0])
        time.sleep(30)
        raise socket.gaierror("timed out")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    t0 = time.perf_counter()
    assert not reach.hub_reachable(timeout=0.5)
    assert not reach.hub_reachable(timeout=0.5)  # the next file: no second wait
    assert time.perf_counter() - t0 < 5 and calls == ["hub.example"]


def test_the_hub_is_reachable_by_any_of_its_addresses(monkeypatch, no_proxy):
    """A name resolves to several addresses (IPv6 first on many machines, where IPv6 may have no
    route): the check tried the first alone, as no download does, and refused the hub."""
    import socket

    from loftup.hub import reach
    from test_hub_reach import listener

    with socket.socket() as closed, listener() as port:
        closed.bind(("127.0.0.2", 0))  # nothing listens there

        def two_addresses(host, port, *args, **kwargs):  # a literal address: itself alone
            found = addresses if host == "hub.example" else [host]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in found]

        addresses = ["127.0.0.2", "127.0.0.1"]
        monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
        monkeypatch.setenv("HF_ENDPOINT", f"https://hub.example:{port}")
        assert reach.hub_reachable(timeout=1)
        addresses = ["127.0.0.2"]
        monkeypatch.setattr(reach, "REACHABLE", {})  # the pass above is remembered a minute
        assert not reach.hub_reachable(timeout=1)
