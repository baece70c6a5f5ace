"""``extract.torchrun.from_rank_0``: rank 0's verdict (a refusal naming the output folder) said
by every rank of a torchrun job, whatever the text holds."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from loftup.extract.torchrun import judged_by_rank_0
from processes import run_torchrun, src_env

#: Each rank: the group joined, rank 0's text taken by both, written to a file of its own
SAYS = """
import os, sys
import torch.distributed as dist
from loftup.extract.torchrun import from_rank_0, join_process_group

folder, rank = sys.argv[1], int(os.environ["RANK"])
join_process_group("gloo")
text = os.fsdecode(b"in /data/caf\\xe9-\\xff: r\\xc3\\xa9sum\\xc3\\xa9 " * 300)
got = [from_rank_0(text if rank == 0 else "rank 1's own", 2), from_rank_0(None if rank == 0 else "x", 2)]
with open(os.path.join(folder, f"got{rank}.txt"), "w", encoding="utf-8", errors="surrogateescape") as f:
    f.write(repr(got == [text, None]))
dist.destroy_process_group()
"""


def test_rank_0s_text_of_a_folder_name_no_encoding_can_hold_reaches_every_rank(tmp_path):
    """A path of bytes that are no UTF-8 (os.fsdecode's surrogates: a folder of an old Latin-1
    disk) named in rank 0's refusal failed its encoding (UnicodeEncodeError) before the
    broadcast: rank 0 said a traceback instead of the refusal, and the others that their peer
    had ended. Every rank says rank 0's text, as it is, and None stays None."""
    assert _torchrun(tmp_path, SAYS, "got")[1] == ["True", "True"]


def _torchrun(tmp_path, code: str, file: str = "said") -> tuple[int, list[str]]:
    """``code`` run by each of 2 gloo ranks under torchrun: the pid of torchrun (the ranks'
    parent), and what each rank wrote to its ``file``RANK.txt (torchrun's stderr where it
    wrote none)."""
    script = tmp_path / "ranks.py"
    script.write_text(code)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*torchrun, "--nproc_per_node=2", str(script), str(tmp_path)]
    env = {**src_env(), "OMP_NUM_THREADS": "1"}
    done = run_torchrun(cmd, env)
    got = [(tmp_path / f"{file}{rank}.txt") for rank in "01"]
    return done.pid, [p.read_text() if p.exists() else done.stderr for p in got]


#: Rank 0 fails at its look at the record under its lock (no file can be opened: the lock's
#: open is an OSError, no refusal) while rank 1 waits for its verdict
RANK_0_FAILS = """
import os, resource, sys
from pathlib import Path
import torch
import loftup.extract.record_lock
from loftup.extract.settle import settled_again
from loftup.extract.torchrun import barrier, process_group

folder, rank = Path(sys.argv[1]), int(os.environ["RANK"])
said = "nothing raised"
try:
    with process_group(torch.device("cpu"), 2):
        barrier(2)  # (each rank's connections made before rank 0 can open no file)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if rank == 0:
            resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
        try:
            settled_again(folder, {}, None, None, None, {"resume": False, "said_as": None}, rank, 2)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
except Exception as e:
    said = f"{type(e).__name__}: {e}"
(folder / f"said{rank}.txt").write_text(said)
"""


def test_rank_0s_failure_that_is_no_refusal_is_said_by_every_rank(tmp_path):
    """An error of rank 0's look that is no refusal (an OSError: no file could be opened, its
    record lock's; a bug) was raised on rank 0 alone, before the broadcast the others waited
    in: they learnt only that their peer had gone, from gloo ("Connection closed by peer"; on
    nccl they waited until torchrun ended them). Rank 0 raises it as it was, and each other
    rank says that rank 0 failed, and how."""
    failed = f"OSError: [Errno 24] Too many open files: '{tmp_path / '.upsample.lock'}'"
    assert _torchrun(tmp_path, RANK_0_FAILS)[1] == [
        failed,
        f"LoftUpError: process RANK=0 of this run failed ({failed}), so this one cannot go on; "
        "its error says why",
    ]


#: Rank 1 has left (its own error, say) as rank 0 refuses a --resume over a run still writing
#: (its torchrun agent, the record says)
OTHERS_GONE = """
import os, socket, sys, time
from pathlib import Path
import torch
from loftup.extract.torchrun import barrier, process_group
from loftup.extract.run_entries import _seen_from, _started
from loftup.extract.writers import check_not_writing

folder, rank = Path(sys.argv[1]), int(os.environ["RANK"])
agent = os.getppid()
listed = {"id": "x", "host": socket.gethostname(), "pid": agent, "started": _started(agent)}
saved = {"loftup_version": "0", "running": [{**listed, **_seen_from()}]}
said = "nothing raised"
try:
    with process_group(torch.device("cpu"), 2):
        barrier(2)  # (both in the group: rank 0 is not left alone in its join)
        if rank == 0:
            while not (folder / "said1.txt").exists():
                time.sleep(0.05)
            check_not_writing(folder, saved, True, None, rank, 2)
except Exception as e:
    said = f"{type(e).__name__}: {e}"
(folder / f"said{rank}.txt").write_text(said)
"""


def test_rank_0s_refusal_is_its_own_where_another_rank_has_ended(tmp_path):
    """Rank 0's refusal (a --resume over a run still writing) was lost where another rank had
    ended before its broadcast: rank 0 said only that another process had ended, whose error
    does not say what to do about the run writing. Rank 0 raises its refusal whatever the
    others did."""
    agent, said = _torchrun(tmp_path, OTHERS_GONE)
    assert said == [
        f"LoftUpError: resume=True: a run is still writing in {tmp_path}: process {agent} on "
        "this host, which its record lists as writing; wait for it to end (then resume=True "
        "goes on from what it wrote), or choose another out",
        "nothing raised",
    ]


class _Unreadable(Exception):
    """A bug whose message cannot be read: its ``__str__`` fails."""

    def __str__(self):
        raise RuntimeError("no message")


@pytest.mark.parametrize("kind", [_Unreadable, KeyboardInterrupt, SystemExit])
def test_one_process_raises_what_its_look_raised_untouched(kind):
    """One process (no torchrun) read its look's error for the other ranks (there are none):
    a bug whose message cannot be read (its ``__str__`` fails) was replaced by that failure,
    its own type and traceback lost. It, a Ctrl-C and an exit go up as raised."""
    raised = kind()

    def look():
        raise raised

    with pytest.raises(kind) as e:
        judged_by_rank_0(look, 0, 1)
    assert e.value is raised and e.traceback[-1].name == "look"


def test_one_process_leaves_no_cycle_that_keeps_the_callers_frames():
    """The error rank 0's look raised was kept in a local of the frame it was raised from
    again, which its traceback holds: a cycle that kept every frame of the caller (a Python
    session's models, on the GPU) until the garbage collector ran. Caught and dropped, it is
    freed at once."""

    class Bug(Exception):
        pass

    def look():
        raise Bug("a bug")

    gc.disable()
    try:
        try:
            judged_by_rank_0(look, 0, 1)
        except Bug as e:
            dropped = weakref.ref(e)
        assert dropped() is None
    finally:
        gc.enable()


def test_rank_0s_bug_whose_message_cannot_be_read_is_said_by_its_type():
    """Rank 0 read its error's message for the others before the broadcast they wait in: one
    whose ``__str__`` fails raised that failure there instead, and the others learnt only that
    their peer had gone. They are told its type."""
    from loftup.extract.torchrun import _said_of

    assert _said_of(_Unreadable()) == (
        "process RANK=0 of this run failed (_Unreadable), so this one cannot go on; its error "
        "says why"
    )
