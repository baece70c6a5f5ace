"""A SIGTERM or Ctrl-C at the worst moments of writing a file leaves no temporary file: the
signal is sent from a profile hook at a chosen point, so the moment is the same on every run."""

from __future__ import annotations

import os
import signal
import sys

import pytest


def test_ctrl_c_just_after_atomic_write_makes_its_temporary_file_leaves_nothing(tmp_path):
    """Ctrl-C at the first moment the temporary file exists (inside the call that makes it,
    before its name is returned): atomic_write removes it all the same."""
    from loftup.atomic import atomic_write_bytes

    fired = []

    def hook(frame, event, arg):
        if not fired and any(tmp_path.glob(".*.tmp")):
            fired.append((event, frame.f_code.co_name))
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(hook)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write_bytes(tmp_path / "upsample.json", b"{}\n")
    finally:
        sys.setprofile(None)
        signal.signal(signal.SIGINT, previous)
    assert fired and list(tmp_path.iterdir()) == []
