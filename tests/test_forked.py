"""tests/forked.py, which runs the signal tests' cases each in a child of its own: a failed
assert says its values, a hung child is said to have timed out and is killed with what it
started, a child that cannot open its log never serves as the prepared process does, one that
closes its stderr passes, and a prepared process that ended is said with what it said."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forked import Forked


def _values(seen: list) -> None:
    assert sorted(seen) == ["upsample.json"]


def test_a_failed_assert_of_a_case_says_its_values(tmp_path, forked):
    """The case module's asserts rewritten as pytest rewrites them: the failure was a bare
    ``AssertionError``."""
    with pytest.raises(AssertionError, match=r"\['a.tmp', 'upsample.json'\] == \['upsample"):
        forked.run(_values, tmp_path / "log", seen=["upsample.json", "a.tmp"])


def _hangs(pid_file: str) -> None:
    started = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(pid_file).write_text(str(started.pid))
    time.sleep(120)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (its zombie, waiting for a parent, counted as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_hung_case_is_said_to_time_out_and_is_killed_with_what_it_started(tmp_path, forked):
    """It was said as 'ended with status -9', and the process it started lived on."""
    pid_file = tmp_path / "pid"
    with pytest.raises(AssertionError) as failed:
        forked.run(_hangs, tmp_path / "log", timeout=1, pid_file=str(pid_file))
    started = int(pid_file.read_text())
    for _ in range(500):  # SIGKILL is sent; it ends once the kernel takes it
        if _gone(started):
            break
        time.sleep(0.01)
    else:
        os.kill(started, 9)
        pytest.fail(f"the process the case started ({started}) outlived it")
    assert "_hangs timed out after 1 s (killed)" in str(failed.value)


def _closes_stderr() -> None:
    sys.stderr.close()


def test_a_case_that_closes_its_stderr_passes(tmp_path, forked):
    """The child's last flush, of the closed stderr, raised: the child left for the prepared
    process's loop and ended there with status 1, the case said to have failed."""
    forked.run(_closes_stderr, tmp_path / "log")


def _passes() -> None:
    pass


def test_a_child_whose_log_cannot_be_opened_fails_and_serves_nothing(tmp_path, forked):
    """os.open of the log failed before the case's try, and the child went on out of it (into
    the prepared process's loop, then its exit): now it ends there, said with the log that was
    never made, and each later order is answered once, by the prepared process. Why it failed
    (written to the prepared process's stderr, read only if that process died) is said too."""
    with pytest.raises(AssertionError, match=r"_passes ended with status 1:\n\(no log: ") as e:
        forked.run(_passes, tmp_path / "no such folder" / "log")
    assert f"FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path}" in str(e.value)
    for n in range(3):
        forked.run(_passes, tmp_path / f"log{n}")
    forked.close()
    assert forked.process.returncode == 0


def test_a_prepared_process_that_ended_is_said_with_its_status_and_what_it_said(tmp_path):
    """One that ended (a PREPARED module not installed: triton without CUDA's torch) showed as
    a BrokenPipeError as the order was sent, its status and the import's error unsaid."""
    cases = Forked([__name__, "no_such_module_for_loftup"])
    try:
        cases.process.wait(timeout=60)  # (ended before the order is sent)
        with pytest.raises(AssertionError, match="ended with status 1:") as failed:
            cases.run(_passes, tmp_path / "log")
        assert "No module named 'no_such_module_for_loftup'" in str(failed.value)
    finally:
        cases.close()
