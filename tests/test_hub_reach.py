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


@pytest.fixture
def no_proxy(monkeypatch):
    """No proxy set, and no failure remembered from elsewhere."""
    for var in PROXIES:
        for name in (var, var.upper()):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setattr(reach, "REACHABLE", {})


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_endpoint_that_accepts_and_never_answers_is_unreachable(monkeypatch, no_proxy, scheme):
    """A connection accepted and never answered was "reachable": each file's download then
    waited through 5 retries (401 s for one file) before it failed."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 0.5)  # the answer's wait
    with listener(reply=None) as silent, listener() as answering:
        monkeypatch.setenv("HF_ENDPOINT", f"{scheme}://127.0.0.1:{silent}")
        assert not reach.hub_reachable(timeout=0.5)
        monkeypatch.setenv("HF_ENDPOINT", f"{scheme}://127.0.0.1:{answering}")
        assert reach.hub_reachable(timeout=0.5)  # a reply, even no TLS one, is an answer


def test_a_silent_endpoint_is_said_unreachable_and_the_next_file_waits_no_more(
    tmp_path, monkeypatch, no_proxy
):
    """Loading a released upsampler that is not cached, with an endpoint that accepts and never
    answers: the error says the hub cannot be reached (after the check's 3 s), and the next
    file is refused at once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 0.5)  # a download's wait, were it tried
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with listener(reply=None) as silent:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent}")
        for _ in range(2):
            with pytest.raises(
                WeightsNotFoundError, match="the Hugging Face hub cannot be reached"
            ):
                load_upsampler("loftup_dinov2s")
        assert list(reach.UNREACHABLE) == [("127.0.0.1", silent)]


def test_a_mirror_slower_than_the_check_but_not_than_a_download_is_reachable(monkeypatch, no_proxy):
    """The check waited 3 s for the first byte where huggingface_hub waits
    HF_HUB_ETAG_TIMEOUT (10 s unless set): a mirror answering in 4 s was "cannot be reached",
    for a minute, while hf_hub_download from it worked."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 5)
    with listener(delay=0.8) as slow:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{slow}")
        assert reach.hub_reachable(timeout=0.2)


def test_the_first_address_that_accepts_decides_and_a_pass_is_remembered(monkeypatch, no_proxy):
    """A name with four addresses that all accept and stay silent was tried four times (each
    waited for, 12 s in all where the README said 3 s); and a reachable hub was asked again
    before every file (a HEAD / and a TLS handshake before each of a backbone's shards)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 0.3)
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
