"""The looks at the meeting point (loftup.extract.point's client, its one factory) that are not
the meeting's own: the watch's (loftup.extract.watch) and those of the main thread before
gloo connects (loftup.extract.looks)."""

from __future__ import annotations

import datetime
import time

import pytest
import torch.distributed as dist

from loftup.extract import pulse, watch
from test_torchrun_meeting import free_port


@pytest.mark.parametrize("use_libuv", ["0", "1"])
def test_the_watchs_own_client_honours_use_libuv_as_the_meetings_does(use_libuv, monkeypatch):
    """The watch made its client beside the meeting's, without USE_LIBUV (torch's way back to
    its older store, where libuv's misbehaves): its looks went through libuv all the same."""
    monkeypatch.setenv("USE_LIBUV", use_libuv)
    port = free_port()
    held = dist.TCPStore("127.0.0.1", port, None, is_master=True, wait_for_workers=False,
                         timeout=datetime.timedelta(seconds=30))  # fmt: skip
    group = pulse.Rendezvous(held, "k", 0, 2, time.monotonic() + 60, "met", None)
    with watch.Watch(group, ("127.0.0.1", port), "k", 0, 2) as w:
        while w.silence.store is None:  # (its first look, BEAT_EVERY s on)
            time.sleep(0.05)
    assert w.silence.store.libuvBackend is (use_libuv == "1")
