"""Where the processes of a torchrun job (or of one started by hand with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT) meet before they join the process group: a count of arrivals at a
TCPStore. The waits are Python's own (a connection looked for, a key looked at, a pause between
looks), not the store's: a process whose peers never come says so in one line, where torch's
store waiting for them first printed its C++ retries and stack traces (41 lines), and Ctrl-C
stops the wait at once, where the store's ignored it until its time-out (10 minutes)."""

from __future__ import annotations

import datetime
import itertools
import os
import re
import socket
import sys
import time

from ..errors import LoftUpError, UsageError
from ..ranks import dist_env
from ..ranks import env_int as _env_int
from .torchrun import MEET_ENV, MEET_TIMEOUT, join_process_group, timeout_from_env

#: the longest pause (seconds) between two looks at the meeting point (the first are shorter)
_LOOK_EVERY = 0.2


def meet_the_others(backend: str, seconds: float) -> None:
    """Join the group of the processes RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT name:
    wait :data:`MEET_ENV` seconds at most (default :data:`MEET_TIMEOUT`) for all of them to
    come, then ``seconds`` at most at each collective. A one-line error where those variables
    are not all set (:func:`_check_rendezvous`) or where the others never came (a job script
    that exports them for another launcher, one process started: torch's 44-line store
    traceback, after the collectives' whole wait, a day for ``upsample``, since
    ``init_process_group``'s time-out covers the meeting too)."""
    import torch.distributed as dist

    meet = timeout_from_env(MEET_TIMEOUT, MEET_ENV)
    _check_rendezvous()
    rank, world, _ = dist_env()
    # a store outlives a meeting (torchrun's agent's, and rank 0's own, kept in _HELD): a
    # restarted job's processes (torchrun --max-restarts) meet there again, and so do those of
    # a script that joins a group twice; each meeting's keys, and its group's (where gloo and
    # nccl publish each rank's address: an earlier group's were read, and a rank connected to
    # a process gone), are its own
    meeting = f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{next(_MEETINGS)}"
    store = _meeting_point(rank, world, meet, meeting)
    # the meeting is over: the group's own use of the store (nccl's communicators, made at the
    # first collective) may wait as long as a collective may
    store.set_timeout(datetime.timedelta(seconds=seconds))
    join_process_group(
        backend, store=dist.PrefixStore(f"default_pg/{meeting}", store), rank=rank,
        world_size=world, timeout=datetime.timedelta(seconds=seconds),
    )  # fmt: skip


#: the meetings of this process, counted (every process goes to the same ones, in one order)
_MEETINGS = itertools.count(1)

#: the meeting points rank 0 held (without torchrun's agent), kept for the process's life: a
#: peer that left a group first came to the next meeting while rank 0 was still leaving it,
#: counted itself in at a store that then closed, and was told rank 0 had left; rank 0's next
#: TCPStore at that port (multi_tenant) is this one's server again
_HELD: list = []


def _meeting_point(rank: int, world: int, seconds: float, meeting: str):
    """The store at MASTER_ADDR:MASTER_PORT (held by rank 0, or under torchrun by its agent, as
    torch's ``env://`` does), once all ``world`` processes have come to it for the
    ``meeting``-th time: each counts itself in, and the last one says so; ``seconds`` at most,
    else a one-line LoftUpError."""
    host, port = os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 0)
    where = f"{host}:{os.environ['MASTER_PORT']}"
    deadline = time.monotonic() + seconds

    def not_all_came(how: str) -> LoftUpError:
        return LoftUpError(
            f"this process (RANK={rank} of WORLD_SIZE={world}) {how}; start every process with "
            f"torchrun (or raise {MEET_ENV} where some start late), or unset RANK and "
            "WORLD_SIZE to run one"
        )

    waited = f"waited {seconds:g} s ({MEET_ENV}) at {where} for the others, and"
    never = f"{waited} RANK=0, which holds the meeting point, never came"
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    holds = rank == 0 and not agent
    # the others look for the meeting point themselves (the store's client, left to do it,
    # logs each failed try); the connection that finds it tells them when it closes
    line, why = (None, "") if holds else _reach(host, port, deadline)
    if not holds and line is None:
        raise not_all_came(never + why)
    met = False
    try:
        store = _open(host, port, world, rank, holds, max(deadline - time.monotonic(), 1.0))
        if store is None:  # a client's that reached the point yet timed out (rare)
            raise not_all_came(never)
        outcome, seen = _count_in(store, f"loftup_meet/{meeting}", world, deadline, line, holds)
        if outcome == "crowded":  # this process would be a second RANK=n of the group
            raise LoftUpError(
                f"this process (RANK={rank} of WORLD_SIZE={world}) came to {where} after all "
                f"{world} had come there: another run's processes meet at that port too (both "
                "started by hand with one MASTER_PORT), or one of this run's was started twice; "
                "give each run its own MASTER_PORT (torchrun --master-port PORT)"
            )
        if outcome == "all":
            met = True
            if holds:  # kept (a failed meeting's closes, the others told)
                _HELD[:] = [store]
            return store
        if outcome == "left":
            how = (  # rank 0's wait over, or rank 0 stopped (Ctrl-C, an error)
                f"came to {where}, but RANK=0 left it before all came (its {MEET_ENV} wait over, "
                "or stopped)"
            )
        else:  # (not how many: rank 0 has just left too)
            how = f"{waited} {f'only {seen} of {world}' if seen else 'not all'} came"
    finally:
        if line is not None:
            line.close()
        if holds and not met:  # the meeting point closes (an earlier meeting's server held it
            _HELD.clear()  # open), so that those who came are told now (Ctrl-C here too)
    del store  # (the error's traceback holds this frame: a caller that goes on would keep it)
    raise not_all_came(how)


def _reach(host: str, port: int, deadline: float) -> tuple[socket.socket | None, str]:
    """A connection to ``host:port`` once something listens there, looked for until
    ``deadline`` (``time.monotonic()``); else None, and a note on why where it is not that
    nothing listened (a name that resolves to no address)."""
    pause, note = 0.01, ""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, note
        try:
            line = socket.create_connection((host, port), timeout=min(left, 5.0))
            line.setblocking(False)
            return line, ""
        except socket.gaierror as e:
            note = f" (MASTER_ADDR={host} is no address here: {e.strerror})"
        except OSError:  # refused (not listening yet), or no answer
            pass
        time.sleep(max(min(pause, deadline - time.monotonic()), 0))
        pause = min(2 * pause, _LOOK_EVERY)


def _closed(line: socket.socket | None) -> bool:
    """Whether the other end of ``line`` (a non-blocking connection) has closed it."""
    if line is None:
        return False
    try:
        return line.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:  # open, with nothing to read
        return False
    except OSError:
        return True


def _open(host: str, port: int, world: int, rank: int, holds: bool, seconds: float):
    """The TCPStore at ``host:port``, its server here where this process (RANK=``rank``)
    ``holds`` it; None where a client's connection timed out; a port in use, or a client's
    connection that what answers there drops, is a one-line LoftUpError."""
    import torch.distributed as dist

    # USE_LIBUV=0 picks the older store server, as for torch's env:// (the default elsewhere
    # than on Windows, whose torch has no libuv)
    libuv = os.environ.get("USE_LIBUV", "0" if sys.platform == "win32" else "1") == "1"
    try:
        return dist.TCPStore(
            host, port, world, is_master=holds, timeout=datetime.timedelta(seconds=seconds),
            wait_for_workers=False, multi_tenant=True, use_libuv=libuv,
        )  # fmt: skip
    except RuntimeError as e:  # a client's that never reached it: DistNetworkError
        # rank 0's: two runs on one node with torchrun's default (libuv's EADDRINUSE, the
        # older server's errno 98; torch 2.4's libuv raised a plain RuntimeError)
        if re.search(r"EADDRINUSE|Address already in use", str(e)):
            raise LoftUpError(
                f"MASTER_PORT={port} is in use here (another run's?), so this process (RANK=0) "
                f"cannot hold the meeting point at {host}:{port}; give this run's processes "
                "another MASTER_PORT (torchrun --master-port PORT, or --standalone on one node)"
            ) from None
        if re.search(r"timed out", str(e), re.IGNORECASE):
            return None
        if holds:
            raise
        # another program at the port (rank 0, which could not hold it, said so), which drops
        # the store's connection: torch's traceback, after its retries
        raise LoftUpError(
            f"this process (RANK={rank}) reached {host}:{port}, but no meeting point answered "
            f"there ({str(e).splitlines()[0][:200]}): RANK=0 left it as this one came, or "
            f"another program holds MASTER_PORT={port}; free it, or give this run's processes "
            "another MASTER_PORT (torchrun --master-port PORT)"
        ) from None


def _count_in(
    store, key: str, world: int, deadline: float, line, stays: bool
) -> tuple[str, int | None]:
    """Count this process in at ``store`` (``key``: the meeting's) and wait until all
    ``world`` have come ("all"), until ``deadline`` ("timeout", with how many had come then),
    or until the point closes ("left": ``line``, this process's own connection to it, closed,
    or the store's); "crowded" where ``world`` had come before it. Unless it ``stays`` counted
    (rank 0, whose point then closes), a process that leaves a meeting before all came (its
    wait over, Ctrl-C, crowded) takes itself off the count: one started again in its place was
    counted twice, and it, or a rank still to come, made the count whole with a process gone
    (the group then waited a day for that one), or was refused as one too many."""
    import torch.distributed as dist

    came, outcome, seen = None, None, None
    try:
        came = store.add(f"{key}/came", 1)
        outcome = (
            "crowded" if came > world else _wait_for_all(store, key, came, world, deadline, line)
        )
        if outcome == "timeout":
            seen = store.add(f"{key}/came", 0)
    except dist.DistError:
        outcome = outcome or "left"
    finally:
        if came is not None and not stays and outcome in (None, "crowded", "timeout"):
            try:  # None: an exception (Ctrl-C) is on its way up
                store.add(f"{key}/came", -1)
            except dist.DistError:  # the point has just closed
                pass
    return outcome, seen


def _wait_for_all(store, key: str, came: int, world: int, deadline: float, line) -> str:
    """:func:`_count_in`'s wait, this process counted in as the ``came``-th."""
    if came == world:
        store.set(f"{key}/all", "1")
    pause = 0.01
    while True:
        if _closed(line):  # first: the store's own call to a closed point logs its trace
            return "left"
        if store.check([f"{key}/all"]):
            return "all"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(max(min(pause, deadline - time.monotonic()), 0))
        pause = min(2 * pause, _LOOK_EVERY)


def _check_rendezvous() -> None:
    """A :class:`UsageError` where RANK and WORLD_SIZE are set but not where the processes
    meet (MASTER_ADDR, MASTER_PORT, which torchrun sets): a shell or a job script that exports
    them for another launcher ran one process into torch's traceback."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"RANK and WORLD_SIZE are set (WORLD_SIZE={os.environ.get('WORLD_SIZE')}) but "
            f"{' and '.join(missing)} not, so this process cannot meet the others; start the "
            "processes with torchrun, or unset RANK and WORLD_SIZE to run one process"
        )
    _env_int("MASTER_PORT", 0, 65536)  # a TCP port (0: any free one, for a group of one)
