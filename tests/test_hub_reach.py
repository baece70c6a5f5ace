"""The quick check that the hub (or the proxy downloads go through) answers at all, before a
download that would otherwise wait through minutes of retries."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from loftup import WeightsNotFoundError, load_upsampler
from loftup.hub import reach

PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@contextlib.contextmanager
def listener(host: str = "127.0.0.1", reply: bytes | None = b"HTTP/1.0 200 OK\r\n\r\n"):
    """A server on ``host`` (yields its port) that accepts each connection and sends ``reply``
    (None: nothing, ever, as a stalled proxy or a firewall that accepts does)."""
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
            if reply is not None:
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


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_endpoint_that_accepts_and_never_answers_is_unreachable(monkeypatch, no_proxy, scheme):
    """A connection accepted and never answered was "reachable": each file's download then
    waited through 5 retries (401 s for one file) before it failed."""
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
