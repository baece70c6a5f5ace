"""Two gloo processes under torchrun train like one process; a SIGKILLed run resumes exactly."""

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import loftup
from loftup.train import load_config, train
from loftup.train.checkpoint import unpack_history
from processes import GLOO_THREADS, gloo_left
from train_fixtures import write_sa1b

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 8


def overrides(root, out):
    return [
        "backbone=dinov2_tiny", f"data.root={root}", "data.num_workers=0",
        "batch_size=4", f"max_steps={STEPS}", f"log.out_dir={out}", "log.tensorboard=false",
        "log.progress=false", "log.viz_every=0", "log.ckpt_every=1", "model.depth=1",
        "model.num_heads=2", "model.n_freqs=4", "stage1.image_size=56",
        "optim.clip_steps=2", "optim.clip_grad_norm=0.5", "data.masks=sa1b",
        "optim.name=sgd", "optim.lr=0.01",
    ]  # fmt: skip


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    return e


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 16, size=56)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted single-process run everything is compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("ref") / "run"
        return train(load_config({}, overrides(data, out), stage=1))
    finally:
        torch.set_num_threads(threads)


def params(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_run(ckpt, reference, atol):
    got, want = params(ckpt), params(reference.checkpoint)
    assert got["step"] == want["step"] == STEPS
    for part in ("model", "downsampler", "uncertainty"):
        for key, value in want[part].items():
            assert torch.allclose(got[part][key], value, atol=atol, rtol=1e-4), (part, key)
    losses = [r["loss"] for r in unpack_history(got["history"])]
    assert losses == pytest.approx(reference.losses, rel=1e-4)


def resume_in_process(args: list[str], capsys) -> None:
    """``loftup ARGS --resume`` in this process, on one thread as the reference ran: the run
    to resume was stopped in a process of its own; going on needs none (its start, importing
    torch and transformers again, is most of the time a short run takes)."""
    from loftup.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--resume"]) == 0, capsys.readouterr().err[-3000:]
    finally:
        torch.set_num_threads(threads)


# 9 s: slow; a run lost after a checkpoint goes on from it, in the default suite:
# test_train_loop.py::test_a_run_lost_between_step_checkpoints_goes_on_from_the_timed_one
@pytest.mark.slow
def test_a_sigkilled_run_resumes_from_its_last_checkpoint(data, reference, tmp_path, capsys):
    out = tmp_path / "killed"
    ckpt = out / "checkpoint.pt"
    args = ["train", "--stage", "1", *overrides(data, out)]
    cmd = [sys.executable, "-m", "loftup", *args]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists():
                seen.append(params(ckpt)["step"])  # whatever moment we look, it loads
                if seen[-1] >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    killed_at = params(ckpt)["step"]
    assert 2 <= killed_at < STEPS and seen == sorted(seen)
    loftup.load_upsampler(ckpt)  # the surviving checkpoint is whole
    resume_in_process(args, capsys)
    assert not list(out.glob(".*.tmp"))
    assert_same_run(ckpt, reference, atol=1e-6)
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(STEPS))


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux): torchrun's workers run in sessions of their own,
    which a signal to its process group does not reach."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in map(int, children) for d in (c, *descendants(c))]


def _terminal_ctrl_c() -> None:
    """In the child: SIGINT raises KeyboardInterrupt, as in a program started from a terminal
    (a child of a process that ignores SIGINT, such as a background job, ignores it too)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def signal_after_first_checkpoint(
    cmd, ckpt, patience: float = 60, sig=signal.SIGTERM
) -> tuple[int, str]:
    """Start ``cmd`` in a session of its own, send ``sig`` to its process group (as Slurm does
    SIGTERM to a job's processes, and a terminal Ctrl-C to its foreground job; torchrun passes
    it on to its own) once ``ckpt`` exists: (exit status, stderr). A command that has not ended
    ``patience`` seconds later fails the test (it hangs), its processes killed."""
    proc = subprocess.Popen(
        cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=_terminal_ctrl_c,
    )  # fmt: skip
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not ckpt.exists():
            time.sleep(0.005)
        os.killpg(proc.pid, sig)
        try:
            _, err = proc.communicate(timeout=patience)
        except subprocess.TimeoutExpired:
            for pid in [*descendants(proc.pid), proc.pid]:  # they hold the pipes too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            err = proc.communicate()[1]
            pytest.fail(f"still running {patience:.0f} s after {sig.name}, a hang: "
                        f"{' '.join(cmd[:3])}...\n{err.decode(errors='replace')[-3000:]}")  # fmt: skip
    finally:
        proc.kill()
    return proc.returncode, err.decode()


# 11-14 s: slow; a SIGTERM stops after the step with that step's checkpoint, the resume ends
# where an uninterrupted run ends and the CSV holds the steps the checkpoint holds, in the
# default suite: test_sigterm_under_torchrun_stops_every_rank_at_one_step_and_two_processes_
# match_one (each rank a process of this, torchrun's signal passed on); the DataLoader's
# workers through a SIGTERM: test_train_loader.py::test_data_workers_go_on_feeding_through_
# ctrl_c_sigterm_and_a_hang_up
@pytest.mark.slow
def test_sigterm_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(
    data, reference, tmp_path, capsys
):
    """A scheduler's cancel or preemption (SIGTERM, to the process and its DataLoader worker,
    as Slurm sends it to every process of a job) stops training after the current step with a
    checkpoint of that step, exit status 143; the same command with --resume ends where an
    uninterrupted run ends."""
    out = tmp_path / "terminated"
    ckpt = out / "checkpoint.pt"
    args = [
        "train",
        "--stage",
        "1",
        *overrides(data, out),
        "log.ckpt_every=2",
        "data.num_workers=1",
    ]
    cmd = [sys.executable, "-m", "loftup", *args]
    returncode, err = signal_after_first_checkpoint(cmd, ckpt)
    assert returncode == 143, err[-3000:]
    stopped = int(err.split("SIGTERM: stopped after step ")[1].split(" ")[0])
    assert 2 <= stopped < STEPS and params(ckpt)["step"] == stopped
    assert "run the same command with --resume to go on" in err
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == stopped  # the CSV holds every step the checkpoint holds
    resume_in_process(args, capsys)
    assert_same_run(ckpt, reference, atol=1e-6)


# slow: the stop after the step, its checkpoint and the exact resume are SIGTERM's path
# (test_sigterm_under_torchrun_stops_every_rank_at_one_step_and_two_processes_match_one, and
# the DataLoader's workers test_train_loader.py's); Ctrl-C's own handling is checked in-process, a
# real SIGINT each (test_a_second_ctrl_c_stops_at_once_and_the_handlers_are_put_back here, the
# Ctrl-C tests of test_train_stopping.py: the stop, stopped.txt's words, the resume)
@pytest.mark.slow
def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(
    data, reference, tmp_path, capsys
):
    """Ctrl-C (SIGINT, which a terminal sends to the command and its DataLoader worker) after
    hours of training loses none of them, as SIGTERM does: it says at once that the run stops
    after this step, finishes the step, writes its checkpoint, says where it is and to go on with
    --resume, and exits with status 130; the same command with --resume ends where an
    uninterrupted run ends. (Before, Ctrl-C left only the last periodic checkpoint.)"""
    out = tmp_path / "interrupted"
    ckpt = out / "checkpoint.pt"
    args = ["train", "--stage", "1", *overrides(data, out), "log.ckpt_every=3"]
    cmd = [sys.executable, "-m", "loftup", *args, "data.num_workers=1"]
    returncode, err = signal_after_first_checkpoint(cmd, ckpt, sig=signal.SIGINT)
    assert returncode == 130, err[-3000:]
    said_at_once = "Ctrl-C (SIGINT): stopping after this step, with a checkpoint (Ctrl-C again"
    assert said_at_once in err
    stopped = int(err.split("Ctrl-C (SIGINT): stopped after step ")[1].split(" ")[0])
    assert 3 < stopped < STEPS and stopped % 3, err[-3000:]  # not a periodic checkpoint
    assert f"{ckpt} holds it: run the same command with --resume to go on" in err
    assert "Traceback" not in err and err.rstrip().endswith("interrupted")
    assert params(ckpt)["step"] == stopped and not list(out.glob(".*.tmp"))
    loftup.load_upsampler(ckpt)
    resume_in_process(args, capsys)
    assert_same_run(ckpt, reference, atol=1e-6)


# 10 s: slow; SIGHUP stops as SIGTERM does (test_sighup_stops_like_sigterm_and_every_rank_agrees_
# on_which_stopped_them), which ends the step with a checkpoint (test_sigterm_under_torchrun_...)
@pytest.mark.slow
def test_sighup_of_a_dropped_ssh_connection_stops_after_the_step_with_a_checkpoint(data, tmp_path):
    """An ssh connection that drops (or a terminal window closed) with the run in it, without
    tmux or nohup: the terminal hangs up, then its processes get SIGHUP, which used to end the run
    with no checkpoint of the steps since the last one. As for SIGTERM, it finishes the step,
    writes its checkpoint and exits, with status 129 (128 + SIGHUP); what it writes to the
    hung-up terminal (the progress bar, the stop's messages) fails with EIO and is dropped,
    without turning the stop into a traceback, and kept in the run's folder (stopped.txt), where
    the user learns how to go on. (Going on with --resume is SIGTERM's path.)"""
    out = tmp_path / "hung_up"
    ckpt = out / "checkpoint.pt"
    args = [*overrides(data, out), "log.ckpt_every=3", "data.num_workers=1", "log.progress=true"]
    cmd = [sys.executable, "-m", "loftup", "train", "--stage", "1", *args]
    terminal, tty = os.openpty()  # the ssh session's terminal: stderr, bar and log on it
    proc = subprocess.Popen(  # SIGHUP's default action, as in a terminal: a suite run under
        cmd, env=env(), stdout=subprocess.PIPE, stderr=tty, start_new_session=True,  # nohup
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),  # passed on SIG_IGN,
    )  # which the run keeps (nohup's choice), so it ran to its end  # fmt: skip
    os.close(tty)
    said = b""
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not ckpt.exists():
            while select.select([terminal], [], [], 0.005)[0]:  # read, or the run blocks
                said += os.read(terminal, 1 << 16)
        os.close(terminal)  # the connection drops: the terminal hangs up first
        os.killpg(proc.pid, signal.SIGHUP)  # then the shell (or the kernel) sends SIGHUP
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 129, said.decode(errors="replace")[-3000:]
    stopped = params(ckpt)["step"]
    assert 3 < stopped < STEPS and stopped % 3, stopped  # the stop's checkpoint, not a periodic one
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == stopped and not list(out.glob(".*.tmp"))
    loftup.load_upsampler(ckpt)
    assert (out / "stopped.txt").read_text() == (
        f"SIGHUP: stopped after step {stopped} of {STEPS}; {ckpt} holds it: run the same command "
        "with --resume to go on\n"
    )


def test_sighup_stops_like_sigterm_and_every_rank_agrees_on_which_stopped_them():
    """SIGHUP while the steps run asks them to stop after the current one (and raises HungUp,
    exit status 129, before or after them); SIGHUP that was ignored (nohup) stays ignored. The
    ranks of a torchrun job, which may have got different signals, stop on one: SIGTERM where
    any rank got it, then SIGHUP, then Ctrl-C."""
    from loftup.train.stopping import HungUp, StopOnSignals

    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal (pytest may run
    try:  # under nohup)
        stops_and_agrees(StopOnSignals, HungUp)
    finally:
        signal.signal(signal.SIGHUP, before)


def stops_and_agrees(StopOnSignals, HungUp):  # noqa: N803 - the classes, imported in the test
    with StopOnSignals(announce=False) as signals:
        with pytest.raises(HungUp) as hung_up:
            os.kill(os.getpid(), signal.SIGHUP)  # before the steps
        assert hung_up.value.code == 129
        signal.signal(signal.SIGHUP, signals._handle)  # as the handler left it: SIGHUP ignored
        with signals.steps():
            os.kill(os.getpid(), signal.SIGHUP)
            assert signals.requested == signal.SIGHUP
            os.kill(os.getpid(), signal.SIGTERM)  # a later signal changes nothing
            assert signals.requested == signal.SIGHUP
            votes = signals.votes()
            ctrl_c = {"stop": 1.0, **dict.fromkeys(set(votes) - {"stop"}, 0.0)}
            two_ranks = {k: (votes[k] + ctrl_c[k]) / 2 for k in votes}
            assert signals.agreed(two_ranks) == signal.SIGHUP and not two_ranks
            assert signals.agreed(dict(ctrl_c)) == signal.SIGINT
            assert signals.agreed(dict.fromkeys(votes, 0.0)) is None
            with pytest.raises(HungUp):
                signals.stop(signal.SIGHUP)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # put back
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with StopOnSignals(announce=False) as signals, signals.steps():
        os.kill(os.getpid(), signal.SIGHUP)
        assert signals.requested is None


def test_a_second_ctrl_c_stops_at_once_and_the_handlers_are_put_back():
    """The first Ctrl-C while the steps run asks them to stop after the current one; a second
    one (the user will not wait) raises KeyboardInterrupt at once, as does one before or after
    the steps; SIGINT that was ignored (nohup, a background job) stays ignored."""
    from loftup.train.stopping import StopOnSignals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopOnSignals(announce=False) as signals:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # before the steps
        with pytest.raises(KeyboardInterrupt), signals.steps():
            os.kill(os.getpid(), signal.SIGINT)
            assert signals.requested == signal.SIGINT
            os.kill(os.getpid(), signal.SIGTERM)  # a later SIGTERM changes nothing
            assert signals.requested == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second Ctrl-C did not stop at once")
        with pytest.raises(RuntimeError), signals.steps():
            raise RuntimeError("a step failed")  # then a Ctrl-C stops at once again
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignals(announce=False) as signals, signals.steps():
            os.kill(os.getpid(), signal.SIGINT)
            assert signals.requested is None
    finally:
        signal.signal(signal.SIGINT, before[0])


def test_a_later_sigterm_or_sighup_does_not_interrupt_the_stops_clean_up():
    """Once the steps stop on a signal (:meth:`StopOnSignals.stop`), the clean-up that follows
    (the DataLoader's workers shut down: interrupted, they outlive the run, ignoring SIGTERM)
    is not cut short by a later SIGTERM (a launcher's second, torchrun's) or SIGHUP (bash's and
    then the kernel's at a dropped connection); a Ctrl-C still stops at once."""
    from loftup.train.stopping import HungUp, StopOnSignals

    before = signal.signal(signal.SIGHUP, signal.SIG_DFL), signal.getsignal(signal.SIGTERM)
    try:
        for stop_on, raised in ((signal.SIGHUP, HungUp), (signal.SIGINT, KeyboardInterrupt)):
            with StopOnSignals(announce=False) as signals:
                with pytest.raises(raised), signals.steps():
                    try:
                        signals.stop(stop_on)
                    finally:  # the clean-up, as the loop's with-blocks run it
                        os.kill(os.getpid(), signal.SIGTERM)
                        os.kill(os.getpid(), signal.SIGHUP)
                with pytest.raises(KeyboardInterrupt):
                    os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGHUP, before[0])
    assert signal.getsignal(signal.SIGTERM) == before[1]


#: ``python -m loftup`` that says, when training leaves the process group, how many
#: DistributedDataParallel wrappers are alive: one outliving the group destroyed the group
#: later, from its Reducer, which holds the GIL while gloo's destructor waits for a worker
#: thread that may need it (a process then hung at exit); and how many of gloo's threads are
#: left once it has: none, or the group outlived destroy_process_group (processes.GLOO_THREADS)
LOFTUP_WATCHING_TEARDOWN = (
    GLOO_THREADS
    + """
import gc, sys, warnings
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from loftup.cli import run

destroy = dist.destroy_process_group

def watched(*args, **kwargs):
    with warnings.catch_warnings():  # isinstance on torch.distributed.reduce_op warns
        warnings.simplefilter("ignore")
        alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    print(f"DDP wrappers alive when the process group is destroyed: {alive}", file=sys.stderr)
    destroy(*args, **kwargs)
    print(f"gloo threads left: {gloo_threads()}", file=sys.stderr)

dist.destroy_process_group = watched
run()
"""
)


def test_sigterm_under_torchrun_stops_every_rank_at_one_step_and_two_processes_match_one(
    data, reference, tmp_path
):
    """torchrun passes a SIGTERM on to its processes, which may be at different points of a
    step: they agree (the request travels with the step's all-reduce), stop after the same
    step with rank 0's checkpoint of it, and the resumed two-process run ends where one
    uninterrupted process ends. Every process exits: none hangs at exit.

    Two gloo processes train like one with the same global batch: the same data, randomness,
    BatchNorm statistics and averaged gradients, over the steps before the stop and those after
    it (one launch of each, not a third for an uninterrupted two-process run; the resumed one
    as its two processes, without torchrun's agent, a third start of torch). SGD (with
    momentum) keeps float-rounding differences at their own size; Adam-type optimisers turn a
    rounding-level gradient into a full step of either sign (the stem's conv biases, which
    BatchNorm cancels, have exactly such gradients), so they cannot be compared this way. The
    tolerance is 10x rounding's: one process with 2 threads instead of 1 ends these 8 steps with
    the stem's conv weights 5.4e-6 apart (BatchNorm's backward cancels most of their gradient);
    the two processes end 5.4e-6 from one.
    """
    out = tmp_path / "ddp"
    ckpt = out / "checkpoint.pt"
    loftup_cli = tmp_path / "loftup_cli.py"
    loftup_cli.write_text(LOFTUP_WATCHING_TEARDOWN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(loftup_cli), "train", "--stage", "1", *overrides(data, out), "log.ckpt_every=2"]  # fmt: skip
    _, err = signal_after_first_checkpoint(cmd, ckpt)
    for rank in (0, 1):  # both ranks, not a hang, each saying which it is
        assert err.count(f"[rank {rank}] terminated (SIGTERM)") == 1, err[-3000:]
    # and both exit: torchrun SIGKILLs a process still there 30 s after its SIGTERM
    assert "forcefully exiting via 9" not in err, f"a rank hung at exit:\n{err[-3000:]}"
    # the wrapper is gone before the group, whatever the timing (the hang above needs an
    # unlucky one: 1 run in about 60)
    assert err.count("DDP wrappers alive when the process group is destroyed: 0") == 2, err[-3000:]
    assert gloo_left(err) == [0, 0], err[-3000:]
    stopped = int(err.split("SIGTERM: stopped after step ")[1].split(" ")[0])
    assert 2 <= stopped < STEPS and params(ckpt)["step"] == stopped
    assert "run the same command with --resume to go on" in err
    # the same command with --resume, as its two processes (torchrun's agent, whose handling
    # of SIGTERM is checked above, would add a third start of torch to this test's time)
    rank_cmd = [sys.executable, *cmd[cmd.index(str(loftup_cli)) :], "--resume"]
    ranks = two_ranks_without_an_agent(rank_cmd, 300, grace=60)
    for status, rank_err, _ in ranks:  # each rank exits, having left the group in order
        assert status == 0, rank_err[-3000:]
        assert re.findall(r"DDP wrappers alive when the process group is destroyed: (\d+)",
                          rank_err) == ["0"], rank_err[-3000:]  # fmt: skip
        assert gloo_left(rank_err) == [0], rank_err[-3000:]
    (_, resumed, said), (_, resumed_1, said_1) = ranks
    assert "2 process(es)" in err and "2 process(es)" in resumed
    assert said.count("final loss") == 1 and not said_1  # the summary, said by rank 0 only
    # SyncBatchNorm2d's all_reduce is our own
    assert not any("deprecated" in text for text in (err, resumed, resumed_1))
    assert_same_run(ckpt, reference, atol=5e-5)
    # only rank 0 wrote: one CSV row per step, before the stop and after it
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(STEPS))


SYNC_BN_WORKER = """
import sys, torch, torch.distributed as dist
from torch import nn
from loftup.train.distributed import SyncBatchNorm2d
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
x = torch.randn(4, 8, 168, 168, generator=torch.Generator().manual_seed(0)) * 3 + 5
bn = SyncBatchNorm2d(8).train()
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = bn(x.chunk(world)[rank].to(torch.bfloat16))
torch.save({"y": y, "mean": bn.running_mean, "var": bn.running_var}, f"{sys.argv[1]}/{rank}.pt")
dist.destroy_process_group()
"""


def test_sync_batchnorm_keeps_float32_statistics_under_bf16_autocast(tmp_path):
    """A bf16 input (a conv's output under autocast) gets float32 statistics, as plain
    BatchNorm2d gives it: in bf16 the sums and the pixel count (2 x 168 x 168 = 56448 per
    process, 56320 in bf16) were rounded, and so were the running mean and variance."""
    (tmp_path / "worker.py").write_text(SYNC_BN_WORKER)
    cmd = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path)]
    for status, err, _ in two_ranks_without_an_agent(cmd, 300, grace=60):  # no agent to start
        assert status == 0, err[-3000:]
    x = torch.randn(4, 8, 168, 168, generator=torch.Generator().manual_seed(0)) * 3 + 5
    one = torch.nn.BatchNorm2d(8).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = one(x.to(torch.bfloat16))
    got = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    assert got[0]["y"].dtype == want.dtype == torch.bfloat16
    for key, ref in (("mean", one.running_mean), ("var", one.running_var)):
        assert torch.allclose(got[0][key], ref, rtol=1e-5, atol=1e-6), (key, got[0][key], ref)
    y = torch.cat([g["y"] for g in got]).float()
    assert (y - want.float()).abs().max() <= 0.04  # a bf16 step at |y| ~ 4


#: ``python -m loftup`` whose rank 1 hangs at the start of step 1 (a stalled disk, a stuck GPU),
#: as a process that does not die does
LOFTUP_RANK_1_HANGS = """
import os, time
from loftup.train import loop
from loftup.cli import run

real = loop.draw_step

def draw_step(cfg, step, *args, **kwargs):
    if step == 1 and os.environ["RANK"] == "1":
        time.sleep(120)
    return real(cfg, step, *args, **kwargs)

loop.draw_step = draw_step
run()
"""


def two_ranks_without_an_agent(
    cmd, patience: float, grace: float, **extra_env
) -> list[tuple[int | None, str, str]]:
    """``cmd`` as ranks 0 and 1 of a job whose launcher starts them and does nothing else (no
    torchrun agent to stop the others when one ends): the environment torchrun would give.
    Rank 0's (exit status, stderr, stdout), then rank 1's; rank 0 still running ``patience``
    seconds after the start, or rank 1 ``grace`` seconds after rank 0 ended, gets SIGKILL
    (status None)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        e = dict(env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                 LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", **extra_env)  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    said = []
    for proc, wait in zip(procs, (patience, grace)):
        try:
            out, err = proc.communicate(timeout=wait)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            (out, err), status = proc.communicate(), None
        said.append((status, err.decode(errors="replace"), out.decode(errors="replace")))
    return said


@pytest.mark.slow  # two processes start (about 10 s)
def test_an_out_dir_rank_0_cannot_write_stops_every_rank_without_an_agent(data, tmp_path):
    """Rank 0 checked that it can write --out before joining the process group, and stopped
    there alone: under a launcher without torchrun's agent (srun, mpirun, a script), rank 1 then
    waited for it at the rendezvous for the group's time-out. The check is now made by rank 0
    once the group is joined, and said by every rank."""
    out = tmp_path / "gone"
    out.symlink_to(tmp_path / "nowhere")  # a link to nothing: no file can be made there
    cmd = [sys.executable, "-m", "loftup", "train", "--stage", "1", *overrides(data, out)]
    said = two_ranks_without_an_agent(cmd, 60, grace=20, LOFTUP_DIST_TIMEOUT="600")
    for rank, (status, err, _) in enumerate(said):
        assert status == 2, (rank, err[-3000:])
        assert f"[rank {rank}] error: --out (log.out_dir) {out} cannot be written: {out} is a " in (
            err
        )


@pytest.mark.slow  # two processes start and train a step (about 30 s)
def test_a_rank_that_hangs_ends_the_others_after_loftup_dist_timeout_in_one_line(data, tmp_path):
    """A process of the run that hangs (rather than dies) made the others wait at their next
    collective for torch's default time-out (30 minutes for gloo), then fail with gloo's
    traceback. The time-out is LOFTUP_DIST_TIMEOUT seconds (default 30 minutes), and the
    waiting process says in one line that another hangs and which variable to raise."""
    script = tmp_path / "loftup_cli.py"
    script.write_text(LOFTUP_RANK_1_HANGS)
    out = tmp_path / "run"
    cmd = [sys.executable, str(script), "train", "--stage", "1", *overrides(data, out)]
    (status, err, _), _ = two_ranks_without_an_agent(cmd, 60, grace=0.1, LOFTUP_DIST_TIMEOUT="3")
    assert status == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "[rank 0] error: no word from another process of this run for 3 s (LOFTUP_DIST_TIMEOUT)"
    ), err[-3000:]
    assert "set LOFTUP_DIST_TIMEOUT=SECONDS" in last and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_a_bad_loftup_dist_timeout_is_refused_before_the_group_is_joined(
    value, monkeypatch, tmp_path
):
    from loftup.errors import UsageError
    from loftup.train.distributed import dist_timeout
    from loftup.train.preflight import preflight

    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", value)
    with pytest.raises(UsageError, match=f"LOFTUP_DIST_TIMEOUT={value} is not a number of sec"):
        dist_timeout()
    # by the preflight, under torchrun (2 processes), before any process joins the group
    data = write_sa1b(tmp_path / "sa1b", 4, size=28)
    cfg = load_config("stage1_cpu", overrides(data, tmp_path / "run"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match=f"LOFTUP_DIST_TIMEOUT={value} is not a number of sec"):
        preflight(cfg)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process joins no group: the variable is unread
    preflight(cfg)
    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", " 90 ")
    assert dist_timeout() == 90
    monkeypatch.delenv("LOFTUP_DIST_TIMEOUT")
    assert dist_timeout() == 1800


def test_gloos_errors_of_a_rank_that_hangs_or_died_are_said_in_one_line(monkeypatch):
    """What gloo raises at a collective (its words, as torch 2.13 gives them) when another
    process hangs past the time-out, or has ended, becomes one line that says so (the slow
    test above makes a rank hang under two real processes); other errors are left alone."""
    from loftup.train.distributed import DistInfo, collective_failure

    monkeypatch.setenv("LOFTUP_DIST_TIMEOUT", "90")
    two = DistInfo(rank=0, world=2)
    hung = ("[third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
            "3000ms for recv operation to complete", "Application timeout caused pair closure")  # fmt: skip
    for text in hung:
        said = str(collective_failure(RuntimeError(text), two))
        assert said.startswith("no word from another process of this run for 90 s (LOFTUP_DIST")
    gone = ("[third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
            "[127.0.0.1]:32995. This is typically caused by a remote worker crashing.")  # fmt: skip
    said = str(collective_failure(RuntimeError(gone), two))
    assert said == (
        "another process of this run has ended, so this one cannot go on; its error says why"
    )
    assert collective_failure(RuntimeError(hung[0]), DistInfo()) is None  # one process
    assert collective_failure(RuntimeError("mat1 and mat2 shapes differ"), two) is None
    assert collective_failure(ValueError(gone), two) is None
