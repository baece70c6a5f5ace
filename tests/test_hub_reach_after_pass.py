"""A pass of the hub's check, remembered a minute, and a hub lost since: the next download
learns it in milliseconds, not through huggingface_hub's retries, and a slow hub still passes."""

from __future__ import annotations

import socket
import time

import pytest

from loftup import WeightsNotFoundError
from loftup.hub import reach
from test_hub_reach import short_waits


def _no_backoff_waits(monkeypatch) -> None:
    """huggingface_hub's back-off between retries of a request (``time.sleep`` in its HTTP
    helpers) returns at once; the rest of its ``time`` is the real one."""
    import importlib

    http = importlib.import_module("huggingface_hub.utils._http")

    class NoWait:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            pass

    monkeypatch.setattr(http, "time", NoWait())


def _connections(monkeypatch, port: int) -> list[int]:
    """The connections this process tries to make to 127.0.0.1:``port`` from now on, any
    library's (a socket's ``connect``, which each calls), made as before: the list grows by
    one for each."""
    tried = []
    real = socket.socket.connect

    def connect(self, address):
        if address[:2] == ("127.0.0.1", port):
            tried.append(port)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


def test_a_hub_lost_after_a_pass_is_said_unreachable_and_the_next_file_waits_no_more(
    tmp_path, monkeypatch, local_hub
):
    """A pass is remembered a minute: a mirror gone after one file was still "reachable", so
    the next file's download met the refused connection through huggingface_hub's retries
    (7 tries, 23 s of back-off, which no setting of it bounds) and was said "the download
    failed (LocalEntryNotFoundError ...)". A connection is now tried before a download the
    remembered pass would let through: refused, the hub is checked again and cannot be
    reached (2 tries in all, in milliseconds), and the file after is refused at once, without
    a try (the verdict is remembered).

    huggingface_hub's back-off waits are skipped here (its tries are still made and counted),
    so that a regression fails in a second rather than in 23."""
    from hub_helpers import _use_mirror
    from loftup.hub.remote import hub_file

    _no_backoff_waits(monkeypatch)
    files = {("someone/repo", n): b"x" * 100 for n in ("a.bin", "b.bin", "c.bin")}
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    assert (
        hub_file("someone/repo", "a.bin", what="x", local_hint="H").read_bytes()
        == files[("someone/repo", "a.bin")]
    )
    (server,) = local_hub.servers
    server.shutdown()
    server.server_close()
    tried = _connections(monkeypatch, server.server_address[1])
    for name, tries in (("b.bin", 2), ("c.bin", 0)):
        with pytest.raises(WeightsNotFoundError, match="the Hugging Face hub cannot be reached"):
            hub_file("someone/repo", name, what="x", local_hint="H")
        assert len(tried) <= tries, name
        tried.clear()
    assert not reach.REACHABLE and list(reach.UNREACHABLE) == [
        ("127.0.0.1", server.server_address[1])
    ]


def test_a_slow_hub_after_a_remembered_pass_is_still_downloaded_from(
    tmp_path, monkeypatch, local_hub
):
    """What is tried before a download after a remembered pass does not wait for an answer: a
    mirror slower than HF_HUB_ETAG_TIMEOUT, but answering within the download's retry, gives
    the next file as it gave the first (a request of its own, waiting HF_HUB_ETAG_TIMEOUT,
    would have said it cannot be reached).

    huggingface_hub before 1.0 (pyproject allows 0.24) has no such retry: each of its tries
    of the first request waits HF_HUB_ETAG_TIMEOUT alone, so a mirror slower than that gives
    no file there, the first one included, with loftup or without (0.36: 6 tries timed out,
    then LocalEntryNotFoundError). There the mirror answers within HF_HUB_ETAG_TIMEOUT."""
    from huggingface_hub import file_download

    from hub_helpers import _use_mirror
    from loftup.hub.remote import hub_file

    files = {("someone/repo", n): n.encode() * 10 for n in ("a.bin", "b.bin")}
    _use_mirror(monkeypatch, local_hub(files, slow=0.5), tmp_path / "hub")
    retried = hasattr(file_download, "_ETAG_RETRY_TIMEOUT")  # huggingface_hub 1.0 and newer
    short_waits(monkeypatch, 0.2 if retried else 2.0, 30)
    for name in ("a.bin", "b.bin"):  # b.bin: on the pass a.bin's check left
        assert (
            hub_file("someone/repo", name, what="x", local_hint="H").read_bytes()
            == files[("someone/repo", name)]
        )
    assert reach.REACHABLE and not reach.UNREACHABLE
