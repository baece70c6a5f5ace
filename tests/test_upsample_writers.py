"""``upsample.json``'s ``running``: the runs writing under a record, each by its host, pid and
process start time, so that a run that ends drops those of processes gone (killed), and a
``--resume`` does not take over from a run still writing on this host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loftup.extract import OPTIONS_NAME
from loftup.extract.writers import entry
from upsample_helpers import noise_picture, upsample_small

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")


def _started(pid: int) -> int:
    """Process ``pid``'s start time, /proc/PID/stat's 22nd field (clock ticks since boot)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


@pytest.fixture
def live():
    """A process of this host that runs while the test does: a run writing, as far as its
    entry tells."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def _entry(pid: int, started: int, host: str | None = None) -> dict:
    return {
        "id": f"{pid:032x}",
        "host": host or socket.gethostname(),
        "pid": pid,
        "started": started,
    }


def _listing(out, *entries) -> None:
    """``out``'s record made one of a run under way: unfinished, ``entries`` writing."""
    record = json.loads((out / OPTIONS_NAME).read_text())
    for key in ("finished", "written"):
        record.pop(key, None)
    (out / OPTIONS_NAME).write_text(json.dumps({**record, "running": list(entries)}))


def _folder(upsampler, tmp_path):
    (tmp_path / "in").mkdir()
    for name in "ab":
        noise_picture(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    assert upsample_small([tmp_path / "in"], upsampler, out, "--no-progress") == 0
    return out, lambda *extra: upsample_small(
        [tmp_path / "in"], upsampler, out, "--no-progress", *extra
    )


def test_a_resume_over_a_run_still_writing_on_this_host_is_refused(
    upsampler, tmp_path, capsys, live
):
    """A --resume started while a run the record lists was writing deleted that run's temporary
    files ("removed 1 unfinished file(s) of the interrupted run": it was not interrupted), and
    the run then failed an image. Refused now, naming the process; one whose pid another
    process has taken since (another start time) is gone, and one on another host, which
    cannot be seen from here, is warned of as its files are removed."""
    out, again = _folder(upsampler, tmp_path)
    capsys.readouterr()
    entry = _entry(live.pid, _started(live.pid))
    for listed, code in (
        (entry, 2),
        ({**entry, "started": entry["started"] + 1}, 0),
        ({**entry, "host": "elsewhere.example"}, 0),
    ):
        (out / "b.pt").unlink(missing_ok=True)
        (out / ".b.pt.abcd1234.tmp").write_bytes(b"half")  # what a run writing has begun
        _listing(out, listed)
        assert again("--resume") == code
        err = capsys.readouterr().err
        assert (out / ".b.pt.abcd1234.tmp").exists() == (code == 2), err
        assert (out / "b.pt").exists() == (code == 0)
        if listed is entry:
            assert err == (
                f"error: --resume: a run is still writing in {out}: process {live.pid} on this "
                "host, which its record lists as writing; wait for it to end (then --resume "
                "goes on from what it wrote), or choose another -o\n"
            )
        elif listed["host"] == "elsewhere.example":
            assert (
                f"warning: {out} lists a run as writing there, process {live.pid} on "
                "elsewhere.example, which cannot be seen from here: if it still is, its "
                "unfinished files are removed now\n"
            ) in err, err
        else:
            assert "removed 1 unfinished file(s) of the interrupted run" in err, err


def test_a_killed_run_is_dropped_as_another_run_of_its_record_ends(
    upsampler, tmp_path, capsys, live
):
    """A killed run's id kept its record unfinished through any number of complete reruns,
    silently. A run that ends drops the runs whose process is gone from this host, says which
    others it still lists, and the last to end marks the record finished."""
    out, again = _folder(upsampler, tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed, writing = _entry(gone.pid, 1), _entry(live.pid, _started(live.pid))
    _listing(out, killed, writing)
    capsys.readouterr()
    assert again() == 0  # a whole run of the same options goes on under the record
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["running"], record.get("finished")) == ([writing], None), record
    said = f"{out / OPTIONS_NAME} still lists 1 other run(s) as writing: the last to end marks"
    assert said in capsys.readouterr().err
    live.kill()
    live.wait()
    assert again() == 0
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["running"], record["finished"], record["written"]) == ([], True, 2), record
    assert "still lists" not in capsys.readouterr().err


def test_a_run_of_another_pid_namespace_or_boot_is_not_taken_for_gone(upsampler, tmp_path, capsys):
    """A run in another container sharing the volume and the host name lists a pid of its own
    namespace: judged here, it was gone (or pid 1, init), dropped, and the record marked
    finished while it wrote. Each entry records its pid namespace and boot: one of another
    is kept as another host's is (said, not dropped), and a --resume warns of it."""
    out, again = _folder(upsampler, tmp_path)
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert record["finished"] is True
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = os.stat("/proc/self/ns/pid").st_ino
    for other, why in (
        ({"pid_ns": here + 1}, "in another pid namespace (another container?)"),
        ({"boot_id": "another boot"}, "of another boot of the host"),
    ):
        listed = {**_entry(gone.pid, 1), **other}
        _listing(out, listed)
        capsys.readouterr()
        assert again() == 0
        record = json.loads((out / OPTIONS_NAME).read_text())
        assert record["running"] == [listed] and "finished" not in record, record
        err = capsys.readouterr().err
        assert "still lists 1 other run(s) as writing" in err and "kept" not in err, err
        assert again("--resume") == 0
        said = f"process {gone.pid} on {socket.gethostname()}, {why}, which cannot be seen"
        assert said in capsys.readouterr().err
    assert entry("run")["pid_ns"] == here  # what a run's entry records


def test_a_rerun_over_a_run_still_writing_keeps_its_unfinished_files(
    upsampler, tmp_path, capsys, live
):
    """A plain rerun (no --resume) over a record listing a run still writing on this host
    deleted that run's temporary files, "removed 1 unfinished file(s) of the interrupted run":
    it was not interrupted. It goes on beside it now, keeping them and saying so; once that
    run is gone, the next removes them."""
    out, again = _folder(upsampler, tmp_path)
    _listing(out, _entry(live.pid, _started(live.pid)))
    (out / "b.pt").unlink()
    (out / ".b.pt.abcd1234.tmp").write_bytes(b"half")  # what the run writing has begun
    capsys.readouterr()
    assert again() == 0
    err = capsys.readouterr().err
    assert (out / ".b.pt.abcd1234.tmp").exists(), err
    assert (
        f"kept 1 unfinished file(s) in {out}: its record lists a run that may be writing them "
        f"(process {live.pid} on {socket.gethostname()}); once it has ended, --resume removes "
        "them\n"
    ) in err, err
    assert "removed" not in err
    live.kill()
    live.wait()
    assert again() == 0
    assert not (out / ".b.pt.abcd1234.tmp").exists()
    assert "removed 1 unfinished file(s) of the interrupted run" in capsys.readouterr().err


def test_a_zombie_run_is_gone_and_a_stopped_one_is_said_stopped(upsampler, tmp_path, capsys):
    """A listed process that is a zombie (killed, its parent never reaped it) was taken for a
    run still writing, and the --resume refused: it is gone. One stopped (Ctrl-Z) is still
    there, but "wait for it to end" waited for ever: it is said to be stopped, and how to go
    on."""
    import signal
    import time

    out, again = _folder(upsampler, tmp_path)
    zombie = subprocess.Popen(["sleep", "300"])
    stopped = subprocess.Popen(["sleep", "300"])
    try:
        started = {p.pid: _started(p.pid) for p in (zombie, stopped)}
        zombie.kill()  # not waited for: a zombie until then
        os.kill(stopped.pid, signal.SIGSTOP)
        for process, state in ((zombie, "Z"), (stopped, "T")):
            while Path(f"/proc/{process.pid}/stat").read_text().rsplit(") ", 1)[1][0] != state:
                time.sleep(0.01)
        _listing(out, _entry(zombie.pid, started[zombie.pid]))
        capsys.readouterr()
        assert again("--resume") == 0, capsys.readouterr().err
        _listing(out, _entry(stopped.pid, started[stopped.pid]))
        assert again("--resume") == 2
        assert capsys.readouterr().err == (
            f"error: --resume: a run is still writing in {out}: process {stopped.pid} on this "
            "host, which its record lists as writing; it is stopped (Ctrl-Z?): let it go on (fg "
            f"in its shell) and wait for it to end, or end it (kill {stopped.pid}; kill -CONT "
            f"{stopped.pid}: stopped, it takes the signal once let go on) and --resume goes on "
            "from what it wrote, or choose another -o\n"
        )
    finally:
        for process in (zombie, stopped):
            process.kill()
            process.wait()


def test_a_pid_no_process_can_have_is_a_run_gone(upsampler, tmp_path, capsys):
    """A record whose entry lists a pid past what a process id can hold (an edited or damaged
    upsample.json) failed each later run with a traceback (os.kill's OverflowError), at its
    end too, its every output written. No process has it: the run is gone, dropped."""
    out, again = _folder(upsampler, tmp_path)
    for pid in (2**40, 2**70):
        _listing(out, _entry(pid, 1))
        assert again() == 0, capsys.readouterr().err
        record = json.loads((out / OPTIONS_NAME).read_text())
        assert (record["running"], record["finished"]) == ([], True), record
        _listing(out, _entry(pid, 1))
        assert again("--resume") == 0, capsys.readouterr().err


def test_a_record_listing_many_runs_not_seen_from_here_is_said_in_a_few_lines(
    upsampler, tmp_path, capsys
):
    """Each run of another host (or container) killed stays listed until a --resume takes
    over (whether it still writes cannot be told from here): after many, a rerun's note of the
    files it keeps named every one on one line, and a --resume warned of each on a line of its
    own. Both name the first few, and count the others."""
    out, again = _folder(upsampler, tmp_path)
    listed = [_entry(1000 + i, 1, host=f"node{i}.example") for i in range(10)]
    _listing(out, *listed)
    (out / "b.pt").unlink()
    (out / ".b.pt.abcd1234.tmp").write_bytes(b"half")  # what one of them may be writing
    capsys.readouterr()
    assert again() == 0
    err = capsys.readouterr().err
    named = "; ".join(f"process {1000 + i} on node{i}.example" for i in range(3))
    assert (
        f"kept 1 unfinished file(s) in {out}: its record lists a run that may be writing them "
        f"({named}; and 7 more); once it has ended, --resume removes them\n"
    ) in err, err
    assert again("--resume") == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 4, err
    assert (
        f"warning: {out} lists 7 more runs as writing there, which cannot be seen from here: "
        "if any still is, its unfinished files are removed now\n"
    ) in err, err


def test_a_run_interrupted_in_a_process_that_lives_on_is_no_longer_listed(
    upsampler, tmp_path, capsys, monkeypatch
):
    """A run stopped by Ctrl-C (or an error) in a Python session left its record listing it
    as writing, by the pid of the session, which lives on: every other process took it for a
    run still writing, and its --resume was refused ("wait for it to end") until the session
    ended. Its entry is taken out (its record kept unfinished: resumable), the others kept."""
    import loftup.extract

    out, again = _folder(upsampler, tmp_path)
    other = _entry(1000, 1, host="node0.example")  # (not seen from here: kept)
    _listing(out, other)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loftup.extract, "run", interrupted)
    assert again() == 130
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["running"], "finished" in record) == ([other], False), record
    monkeypatch.undo()
    capsys.readouterr()
    assert again("--resume") == 0, capsys.readouterr().err


def test_a_stopped_run_ends_as_the_refusal_says_to_end_it(tmp_path):
    """A --resume over a run stopped with Ctrl-Z said to end it with `kill PID`: a loftup run
    handles SIGTERM, and a stopped process takes a signal it handles only once it goes on, so
    it stayed stopped, listed, and the next --resume was refused again. The commands said end
    it."""
    import re
    import signal
    import time

    from loftup.errors import LoftUpError
    from loftup.extract.writers import _check_not_writing

    handles = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))"
    run = subprocess.Popen([sys.executable, "-c", f"{handles}; print('ready', flush=True); "
                            "time.sleep(600)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert run.stdout.readline() == "ready\n"
        os.kill(run.pid, signal.SIGSTOP)
        while Path(f"/proc/{run.pid}/stat").read_text().rsplit(") ", 1)[1][0] != "T":
            time.sleep(0.01)
        saved = {"running": [_entry(run.pid, _started(run.pid))]}
        with pytest.raises(LoftUpError) as refused:
            _check_not_writing(tmp_path, saved, True, None)
        commands = re.search(r"end it \((kill [^:)]*)", str(refused.value)).group(1)
        subprocess.run(commands, shell=True, check=True)
        assert run.wait(timeout=10) == 143, commands
    finally:
        run.kill()
        run.wait()
