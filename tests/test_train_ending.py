"""A training run's end (loftup.train.ending, and train()'s own): a stop that comes once the run
is complete (final/ and summary.json written) says so, and under torchrun stops every rank."""

from __future__ import annotations

import json
import os
import signal

import pytest

from finalisers import signal_in_a_finaliser
from processes import forked_ranks
from train_fixtures import tiny_config as tiny

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools"),
    pytest.mark.usefixtures("one_thread"),
]


def _plain_sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100):  # its handler's turn comes here
        pass


@pytest.mark.parametrize("how", ["finaliser", "plain"])
def test_a_stop_as_a_complete_runs_folder_is_let_go_says_the_run_is_complete(
    how, sa1b, tmp_path, monkeypatch, caplog
):
    """A SIGTERM as train() let go of the run's folder (its lock), after the export: swallowed
    by a finaliser and raised again at the run's end, or raised there in plain code, it ended
    the run with only "terminated (SIGTERM)", final/ and summary.json written, as if there
    were nothing to show for it. It says that the run is complete now."""
    from loftup.errors import Terminated
    from loftup.train import loop

    locked = loop.lock_run_folder
    stop = signal_in_a_finaliser if how == "finaliser" else _plain_sigterm

    def lock(out_dir, info, held, *args):
        got = locked(out_dir, info, held, *args)
        held.callback(stop)  # (as the lock is let go)
        return got

    monkeypatch.setattr(loop, "lock_run_folder", lock)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(Terminated):
        loop.train(tiny(sa1b, out, 1, 2))
    lines = [r.getMessage() for r in caplog.records if "SIGTERM" in r.getMessage()]
    assert lines == [
        f"SIGTERM: stopped after the last step (2 of 2): the run is complete, {out / 'checkpoint.pt'}"
        f" and {out / 'final'} are written"
    ]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


def test_a_stop_as_a_complete_run_leaves_its_process_group_says_the_run_is_complete(
    sa1b, tmp_path, monkeypatch, caplog
):
    """A SIGTERM as train() let go of the process group (its teardown, after the signals'
    handlers were put back: the command line's raises Terminated) ended the run with only
    "terminated (SIGTERM)", final/ and summary.json written. It says that the run is complete
    now, once."""
    from loftup.errors import Terminated, terminate
    from loftup.train import loop

    torn = loop.teardown

    def teardown(info, error=None):
        if error is None:  # (the run's own end, not an error's)
            _plain_sigterm()
        torn(info, error)

    monkeypatch.setattr(loop, "teardown", teardown)
    out = tmp_path / "run"
    previous = signal.signal(signal.SIGTERM, terminate)  # the command line's
    try:
        with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(Terminated):
            loop.train(tiny(sa1b, out, 1, 2))
    finally:
        signal.signal(signal.SIGTERM, previous)
    lines = [r.getMessage() for r in caplog.records if "complete" in r.getMessage()]
    assert lines == [
        f"SIGTERM: stopped after the last step (2 of 2): the run is complete, {out / 'checkpoint.pt'}"
        f" and {out / 'final'} are written"
    ]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


def test_a_stop_as_train_puts_its_handlers_back_says_the_run_is_complete_and_puts_them_back(
    sa1b, tmp_path, monkeypatch, caplog
):
    """A SIGTERM as the run's signals closed their scope, their handler still on (after they
    said any stop that came through them): it stops the complete run, which train() says is
    complete, once. The handlers were left as the run and the stop had set them for the
    caller's rest (SIGTERM ignored, Ctrl-C a handler of the ended run's). They are put back."""
    from loftup.errors import Terminated
    from loftup.train import loop, stopping

    class Scope(stopping.Scope):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            _plain_sigterm()  # (its handler still on)

    monkeypatch.setattr(stopping, "Scope", Scope)
    out = tmp_path / "run"
    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)]
    try:
        with caplog.at_level("WARNING", logger="loftup.train"), pytest.raises(Terminated):
            loop.train(tiny(sa1b, out, 1, 2))
        after = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)]
    finally:
        for signum, handler in zip((signal.SIGTERM, signal.SIGHUP, signal.SIGINT), before):
            signal.signal(signum, handler)
    lines = [r.getMessage() for r in caplog.records if "complete" in r.getMessage()]
    assert lines == [
        f"SIGTERM: stopped after the last step (2 of 2): the run is complete, {out / 'checkpoint.pt'}"
        f" and {out / 'final'} are written"
    ]
    assert after == before


#: two ranks (rank 1 forked from rank 0, once both imported torch) at the end of a run, once for
#: each case of CASES (the export a stand-in): each says what ended it, and rank 0 what it logged
_RANKS = """
import datetime, logging, os, signal, sys, threading, time
from pathlib import Path
import torch.distributed as dist
from finalisers import signal_in_a_finaliser
from loftup.errors import LoftUpError, Terminated
from loftup.train import ending
from loftup.train.distributed import DistInfo
from loftup.train.ending import end_run
from loftup.train.stopping import StopOnSignals

child = os.fork()
rank = 0 if child else 1
logging.basicConfig(level=logging.WARNING, format=f"{rank} said: %(message)s", stream=sys.stdout)
dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
signal.signal(signal.SIGTERM, signal.SIG_DFL)

def say(line):  # (one write: the two ranks' lines do not mix)
    sys.stdout.write(f"{rank} {line}\\n")
    sys.stdout.flush()

def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(100):
        pass

for case in sys.argv[1:]:
    def export(done):
        done()
        if case.startswith("rank 0 as its export ends") and rank == 0:
            sigterm()
        if case == "rank 1 as it waits" and rank == 0:  # until rank 1 has had its SIGTERM
            for _ in range(600):  # (it cannot have passed the barrier, which waits for this)
                if os.path.exists("sent"):
                    break
                time.sleep(0.05)

    say(case)
    signals = StopOnSignals(announce=rank == 0)
    try:
        with signals:
            if case == "rank 1 swallowed" and rank == 1:
                signal_in_a_finaliser(signal.SIGTERM)  # kept by the run's scope
            if case == "rank 1 as it waits" and rank == 1:  # (for rank 0's export)
                def send():
                    os.kill(os.getpid(), signal.SIGTERM)
                    open("sent", "w").close()
                threading.Timer(0.2, send).start()
            if "rank 1 dies at the barrier" in case and rank == 1:
                os._exit(0)
            if "rank 1 dies before the vote" in case and rank == 1:
                ending.mean_over_ranks = lambda *args: os._exit(0)
            end_run(signals, DistInfo(rank, 2), export, 4, 4, Path("run/checkpoint.pt"))
        say("ended: done")
    except Terminated:
        say("ended: terminated")
    except RuntimeError:  # (another process ended)
        say(f"ended: error, at_end {signals.at_end}")
    except LoftUpError as e:  # (another process ended after the run was complete)
        say(f"ended: error, at_end {signals.at_end}: {e}")
dist.destroy_process_group()
if child:
    say(f"rank 1's status: {os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])}")
"""

#: each rank's SIGTERM after rank 0's export: one a finaliser swallowed (rank 1, after
#: the barrier: raised again at the check), one as rank 0's export ended (in plain code), one
#: as rank 1 waited for the export; and none
CASES = ["rank 1 swallowed", "rank 0 as its export ends", "rank 1 as it waits", "none"]


def _two_ranks(tmp_path, cases: list[str]) -> tuple[dict[str, list[str]], str, int]:
    """What each rank of :data:`_RANKS` said, run for ``cases`` (its lines less the rank), its
    stdout and stderr, and its status."""
    return forked_ranks(_RANKS, cases, tmp_path)


#: what rank 0 says where a SIGTERM stops its complete run
_COMPLETE = (
    "said: SIGTERM: stopped after the last step (4 of 4): the run is complete, "
    "run/checkpoint.pt and run/final are written"
)


def test_a_stop_one_rank_caught_after_the_export_stops_every_rank(tmp_path):
    """Under torchrun, a SIGTERM one process alone caught once rank 0's export was done (a
    finaliser swallowed it, raised again at the end's check; or it came as the export ended)
    ended that process alone, with only "terminated (SIGTERM)", while the other said the
    run was done and exited 0 (or hung, waiting for it at a collective it skipped). The ranks
    vote on it now: every one stops with it, and rank 0 says the run is complete."""
    said, out, returncode = _two_ranks(tmp_path, CASES)
    complete = _COMPLETE
    stopped = ["ended: terminated"]
    ended = ["none", "ended: done"]
    for rank, lines, last in (
        ("0", [complete, *stopped], ["rank 1's status: 0"]),
        ("1", stopped, []),
    ):
        expected = [line for case in CASES[:-1] for line in (case, *lines)]
        assert said[rank] == [*expected, *ended, *last], out
    assert returncode == 0, out


#: rank 0's error where another process ended once its run was complete
_ENDED_COMPLETE = (
    "ended: error, at_end False: another process of this run ended after the run was complete; "
    "nothing is lost"
)


@pytest.mark.parametrize(
    ("case", "said_0"),
    [
        (
            "rank 1 dies at the barrier",
            [
                "said: the last step taken (4 of 4): the run is complete, run/checkpoint.pt and "
                "run/final are written (no --resume needed)",
                _ENDED_COMPLETE,
            ],
        ),
        (
            "rank 1 dies before the vote",
            [
                "said: the last step taken (4 of 4): the run is complete, run/checkpoint.pt and "
                "run/final are written (no --resume needed)",
                _ENDED_COMPLETE,
            ],
        ),
        (
            "rank 0 as its export ends, rank 1 dies before the vote",
            [_COMPLETE, "ended: terminated"],
        ),
    ],
)
def test_a_rank_that_dies_at_the_end_leaves_rank_0_saying_the_run_is_complete(
    case, said_0, tmp_path
):
    """Under torchrun, another process that died at the run's end (its barrier, or before the
    vote: the collective fails) left rank 0, whose run was complete, saying only "another
    process of this run has ended" (its error), then "terminated (SIGTERM)" as torchrun
    stopped it, as if the run needed --resume; one that died before the vote skipped the stop
    on the SIGTERM rank 0 had caught, and its line. Rank 0 says that the run is complete
    first now, or stops on its signal with that line; a signal then stops it at once (at_end
    cleared). Its error said that the run "cannot go on; its error says why" after the line
    that said it complete: it says that the other process ended after the run was complete,
    nothing lost."""
    said, out, returncode = _two_ranks(tmp_path, [case])
    assert said["0"] == [case, *said_0, "rank 1's status: 0"], out
    assert returncode == 0, out
