"""Two `loftup demo` on the same --out: both wrote the scenes (scenes/train, scenes/val) and
demo.json before either was refused (by a stage folder's lock, in training). The demo locks its
--out for its whole run; a second is refused, naming the first, before it writes there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from loftup.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ARGV = ["--size", "8", "--train-scenes", "4", "--val-scenes", "2", "--stage1-steps", "1"]
ARGV += ["--stage2-steps", "1", "--probe-epochs", "1", "--threads", "1"]


def _files(folder) -> dict:
    """Every file under ``folder`` and its bytes, but the demo's lock file: a POSIX lock is let
    go when its process closes any descriptor of the file (this one holds it)."""
    from loftup.train.lock_refusal import DEMO

    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != DEMO.name]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


#: Run in another process on a lock file: prints its note, and ends with status 3 where its
#: lock is held (a lockf refused), 0 where it was free, 1 where there is no such file.
_PROBE = """import fcntl, os, sys
print(open(sys.argv[1]).read(), end="")
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(3)
"""


def _lock_probe(lock) -> tuple[int, str]:
    """From another process (this one would let go of its own lock by opening the file): the
    status of :data:`_PROBE` on ``lock``, and the note it read there."""
    ran = subprocess.run([sys.executable, "-c", _PROBE, str(lock)], capture_output=True, text=True)
    return ran.returncode, ran.stdout


class _Enough(Exception):
    """Ends the first demo once the second was refused."""


def test_a_second_demo_on_an_out_in_use_is_refused_before_it_writes_there(tmp_path, monkeypatch):
    """The second a real process, started while the first (this one) has its --out locked and
    is about to write its scenes; the first is stopped there (the rest of a demo, its training,
    is not what this checks). The second leaves the first's lock file as it was, still held."""
    import loftup.world.demo as demo
    from loftup.train.lock_refusal import DEMO

    out = tmp_path / "out"
    seen = {}

    def second_demo_first(cfg, **kw):  # the first demo, its --out locked and its record written
        before, lock = _files(out), _lock_probe(out / DEMO.name)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        argv = [sys.executable, "-m", "loftup", "demo", "--out", str(out), *ARGV, "--resume"]
        seen["second"] = subprocess.run(argv, env=env, capture_output=True, text=True)
        seen["unchanged"] = _files(out) == before
        seen["lock"] = lock, _lock_probe(out / DEMO.name)
        raise _Enough

    monkeypatch.setattr(demo, "make_scenes", second_demo_first)
    with pytest.raises(_Enough):
        main(["demo", "--out", str(out), *ARGV])
    second = seen["second"]
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == (
        f"error: {out} is in use by another loftup demo (process {os.getpid()} on "
        f"{socket.gethostname()}); wait for it, or choose another --out"
    )
    assert seen["unchanged"]  # no scenes, no demo.json written by the second
    (status, note), after = seen["lock"]
    assert status == 3 and str(os.getpid()) in note, note  # the first's, held
    assert after == (3, note)  # neither deleted, written over nor let go by the second


def test_a_second_demo_of_the_same_process_is_refused_and_leaves_the_first_s_lock(tmp_path):
    """Its look at the lock opened and closed the lock file, which lets go of every POSIX lock
    this process holds on it: the first demo's too."""
    from loftup.errors import LoftUpError
    from loftup.train.lock_refusal import DEMO
    from loftup.train.run_lock import folder_lock
    from loftup.world.config import DemoConfig
    from loftup.world.demo import run_demo

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, another="--out", kind=DEMO):  # the first demo's
        with pytest.raises(LoftUpError) as e:
            run_demo(DemoConfig(out=str(out), size=8, train_scenes=4, val_scenes=2))
        taken, _ = _lock_probe(out / DEMO.name)
    assert str(e.value) == (
        f"{out} is in use by another loftup demo (process {os.getpid()}, this one); wait for "
        "it, or choose another --out"
    )
    assert taken == 3  # still the first's
    assert sorted(p.name for p in out.iterdir()) == [DEMO.name]  # nothing written


def test_a_demo_begun_there_between_the_look_and_the_lock_is_not_gone_on_with(
    tmp_path, monkeypatch
):
    """Its look at --out (an interrupted demo there without --resume refused) came before it
    took the lock, and only the report was looked at again: a demo that began there in between
    (killed since, its record written) was written over as if --out were new."""
    import loftup.train.run_lock as run_lock
    import loftup.world.demo as demo
    from loftup.errors import UsageError
    from loftup.world.config import DemoConfig

    cfg = DemoConfig(out=str(tmp_path / "out"), size=8, train_scenes=4, val_scenes=2)
    real, ran = run_lock.lock_run_folder, []

    def another_demo_begins_first(out, *args):
        out.mkdir()
        (out / demo.RECORD).write_text('{"size": 16}')  # another demo's, killed since
        return real(out, *args)

    monkeypatch.setattr(run_lock, "lock_run_folder", another_demo_begins_first)
    monkeypatch.setattr(demo, "_run_demo", lambda cfg, resume: ran.append(resume))
    with pytest.raises(UsageError, match="holds an interrupted demo; run the same command with"):
        demo.run_demo(cfg)
    assert ran == [] and (tmp_path / "out" / demo.RECORD).read_text() == '{"size": 16}'
