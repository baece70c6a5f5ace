"""The lock a ``loftup upsample`` run holds while it writes or marks its record
(:func:`loftup.extract.record_lock.record_lock`): what it is open as, seen from the system."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loftup.extract.record_lock import LOCK_NAME, record_lock
from processes import src_env

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fdinfo").is_dir(), reason="the open flags and locks are read in /proc"
)


def _open_on(path: Path) -> list[str]:
    """The /proc/self/fdinfo text of each descriptor of this process open on ``path``."""
    target = os.path.realpath(path)
    return [
        Path(f"/proc/self/fdinfo/{fd}").read_text()
        for fd in os.listdir("/proc/self/fd")
        if os.path.realpath(f"/proc/self/fd/{fd}") == target
    ]


def _access(info: str) -> int:
    flags = next(line for line in info.splitlines() if line.startswith("flags:"))
    return int(flags.split()[1], 8) & os.O_ACCMODE


def test_the_record_lock_is_held_on_a_descriptor_open_for_writing(tmp_path):
    """The lock file was opened for reading only: on NFS, which makes an exclusive flock a
    POSIX lock, that fails with EBADF, one of the errors read as "this file system keeps no
    locks", so every run there wrote its record unlocked, silently."""
    with record_lock(tmp_path):
        (info,) = _open_on(tmp_path / LOCK_NAME)
        assert _access(info) == os.O_RDWR, info
        assert "FLOCK" in info and "WRITE" in info, info  # held, exclusive
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_lock_file_this_user_may_not_write_is_locked_read_only(tmp_path):
    """Another user's lock file, left by a killed run (read-only to this one), is still
    locked where the file system locks a descriptor open for reading, as before."""
    (tmp_path / LOCK_NAME).touch(mode=0o444)
    with record_lock(tmp_path):
        (info,) = _open_on(tmp_path / LOCK_NAME)
        assert _access(info) == os.O_RDONLY and "FLOCK" in info, info


#: Names a path may hold that a message escapes (:func:`loftup.escaping.printable`): a
#: newline, an escape, a C1 control, a bidirectional override, a byte that is no UTF-8; and
#: what a shell reads in quotes: a single quote, a backslash, a dollar.
ODD = ["odd\nname \x1b[31m$x 'q' -é", "c1\x85 rtl\u202e", os.fsdecode(b"byte\xfe\\n")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="the command is pasted into bash")
@pytest.mark.parametrize("name", ODD)
def test_the_rm_of_a_folder_in_the_lock_files_place_removes_it_pasted_into_a_shell(tmp_path, name):
    """The refusal's `rm -r '...'` of an odd name held the escapes a message shows inside
    single quotes: pasted into a shell it named a file that does not exist, and removed
    nothing. Said as the command line says it (escaped whole), it removes the folder."""
    from loftup.errors import LoftUpError, printable

    out = tmp_path / name
    (out / LOCK_NAME).mkdir(parents=True)
    with pytest.raises(LoftUpError) as e, record_lock(out):
        pass
    said = printable(str(e.value))  # as the command line prints it
    command = re.search(r"\((rm -r .*)\) and run again$", said).group(1)
    done = subprocess.run(
        ["bash", "-c", command], env={**os.environ, "LC_ALL": "C.UTF-8"}, capture_output=True
    )
    assert done.returncode == 0 and not (out / LOCK_NAME).exists(), (command, done.stderr)
    assert said.startswith(f"{printable(str(out / LOCK_NAME))} is a folder"), said


def test_a_record_is_said_replaced_only_once_it_is(photos, upsampler, tmp_path, capsys):
    """A finished run's record that describes no file there is replaced by a run of other
    options, which said so before taking the record lock: a run refused there (a folder in
    the lock file's place) said it replaced a record it left as it was."""
    from PIL import Image

    from loftup.cli import main
    from loftup.extract import OPTIONS_NAME

    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(upsampler), "-o", str(out)]
    args += ["--backbone-size", "28", "--no-progress"]
    assert main([*args, "--size", "32"]) == 0
    (out / "a.pt").unlink()  # its files deleted: a record that describes none
    record = (out / OPTIONS_NAME).read_text()
    (out / LOCK_NAME).mkdir()
    capsys.readouterr()
    assert main([*args, "--size", "48"]) == 2
    err = capsys.readouterr().err
    assert "is a folder, not the regular file" in err and "replacing" not in err, err
    assert (out / OPTIONS_NAME).read_text() == record
    (out / LOCK_NAME).rmdir()
    assert main([*args, "--size", "48"]) == 0
    assert f"replacing {out / OPTIONS_NAME}: its run, of other options" in capsys.readouterr().err


#: A run that holds the record lock of the folder argv[1], once it says so
HOLDS = """
import sys, time
from pathlib import Path
from loftup.extract.record_lock import record_lock
with record_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""

#: A run that waits for it, saying so after 0.2 s (not 10)
WAITS = """
import sys
from pathlib import Path
from loftup.extract import record_lock
record_lock.WAIT_NOTE_AFTER = 0.2
with record_lock.record_lock(Path(sys.argv[1])):
    print("locked", flush=True)
"""


def test_a_run_waiting_for_the_lock_of_a_stopped_run_says_so_once_and_waits_on(tmp_path):
    """A run holding the record lock stopped (Ctrl-Z, SIGSTOP) made every other run there wait
    for ever, silently. One waiting past WAIT_NOTE_AFTER says once for which file, held by
    which process, that it is stopped and what to do, and takes the lock once it is let go."""
    folder, waiter = str(tmp_path), None
    python = [sys.executable, "-c"]
    holder = subprocess.Popen(
        [*python, HOLDS, folder], env=src_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        os.kill(holder.pid, signal.SIGSTOP)
        waiter = subprocess.Popen(
            [*python, WAITS, folder], env=src_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        said = select.select([waiter.stderr], [], [], 60)[0]  # (none: it waits, silent)
        note = waiter.stderr.readline() if said else "nothing"
        os.kill(holder.pid, signal.SIGKILL)
        done = waiter.communicate(timeout=120)
    finally:
        for process in (holder, waiter):
            if process is not None:
                process.kill()
                process.wait()
    assert note == (
        f"waiting for the lock file {tmp_path / LOCK_NAME}, held by another loftup upsample "
        f"run (process {holder.pid}) for 0.2 s though a run holds it for moments: it is stopped "
        f"(Ctrl-Z, a debugger); let it go on (fg in its shell) or end it (kill {holder.pid}; "
        f"kill -CONT {holder.pid}); still waiting\n"
    )
    assert done == ("locked\n", "")  # (said once)
    assert not (tmp_path / LOCK_NAME).exists()
