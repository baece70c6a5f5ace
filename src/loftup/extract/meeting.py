"""Where the processes of a torchrun job (or of one started by hand with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT) meet before they join the process group: each claims its rank at a
TCPStore (:mod:`.claims`). The waits are Python's own (a connection looked for, a key looked
at, a pause between looks), not the store's: a process whose peers never come says so in one
line, where torch's store waiting for them first printed its C++ retries and stack traces (41
lines), and Ctrl-C stops the wait at once, where the store's ignored it until its time-out (10
minutes)."""

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
from . import claims
from .torchrun import MEET_ENV, MEET_TIMEOUT, join_process_group, timeout_from_env


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
    deadline = time.monotonic() + meet
    store = _meeting_point(rank, world, meet, meeting)
    # the group's own rendezvous (each rank's address, at the store) waits what is left of the
    # meeting's wait, not the collectives' (a process killed after it came: a day, Ctrl-C
    # ignored, then torch's traceback); the collectives' wait is set once the group is joined
    join = max(deadline - time.monotonic(), _JOIN_LEAST)
    # _set_pg_timeout is torch's private API, which a release may drop: without it the group is
    # joined with the collectives' wait
    set_timeout = getattr(dist.distributed_c10d, "_set_pg_timeout", None)
    store.set_timeout(datetime.timedelta(seconds=join))
    try:
        join_process_group(
            backend, store=dist.PrefixStore(f"default_pg/{meeting}", store), rank=rank,
            world_size=world, timeout=datetime.timedelta(seconds=join if set_timeout else seconds),
        )  # fmt: skip
    except RuntimeError as e:  # torch's DistError, gloo's connection errors
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise LoftUpError(
            f"this process (RANK={rank} of WORLD_SIZE={world}) met the others at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}, but not all of them "
            f"joined the process group within {join:.0f} s ({why}): one ended after it came "
            "(its own error says why, or it was killed); start the run again"
        ) from None
    # the meeting is over: the group's own use of the store (nccl's communicators, made at the
    # first collective) may wait as long as a collective may
    store.set_timeout(datetime.timedelta(seconds=seconds))
    if set_timeout is not None and dist.is_initialized():  # (a test's stand-in joins none)
        set_timeout(datetime.timedelta(seconds=seconds))


#: the least wait (seconds) for the group's rendezvous after a meeting that came whole just
#: before its own wait ran out
_JOIN_LEAST = 10.0


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
    ``meeting``-th time, each claiming its rank (:mod:`.claims`); ``seconds`` at most, else a
    one-line LoftUpError."""
    host, port = os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 0)
    where = f"{host}:{os.environ['MASTER_PORT']}"
    deadline = time.monotonic() + seconds
    this = f"this process (RANK={rank} of WORLD_SIZE={world})"

    def not_all_came(how: str) -> LoftUpError:
        return LoftUpError(
            f"{this} {how}; start every process with torchrun (or raise {MEET_ENV} where some "
            "start late), or unset RANK and WORLD_SIZE to run one"
        )

    waited = f"waited {seconds:g} s ({MEET_ENV}) at {where} for the others, and"
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    holds = rank == 0 and not agent
    if holds:
        _check_this_machine(host)
    # the others look for the meeting point themselves (the store's client, left to do it,
    # logs each failed try); the connection that finds it tells them when it closes
    line = None if holds else _reach(host, port, deadline, this)
    if not holds and line is None:
        raise not_all_came(f"{waited} RANK=0, which holds the meeting point, never came")
    met = False
    try:
        store = _open(host, port, world, rank, holds, deadline, line)
        outcome, said = _come(store, f"loftup_meet/{meeting}", rank, world, deadline, line)
        if outcome == "all":
            met = True
            if holds:  # kept (a failed meeting's closes, the others told)
                _HELD[:] = [store]
            return store
    finally:
        if line is not None:
            line.close()
        if holds and not met:  # the meeting point closes (an earlier meeting's server held it
            _HELD.clear()  # open), so that those who came are told now (Ctrl-C here too)
    del store  # (the error's traceback holds this frame: a caller that goes on would keep it)
    if outcome == "timeout":  # (not how many: rank 0 has just left too)
        raise not_all_came(f"{waited} {f'only {said} of {world}' if said else 'not all'} came")
    if outcome == "left":  # rank 0's wait over, or rank 0 stopped (Ctrl-C, an error)
        raise not_all_came(
            f"came to {where}, but RANK=0 left it before all came (its {MEET_ENV} wait over, "
            "or stopped)"
        )
    raise LoftUpError(f"{this} came to {where} {said}")


def _come(store, key: str, rank: int, world: int, deadline: float, line):
    """This process's part in the meeting ``key`` (:mod:`.claims`): the outcome ("all",
    "timeout", "left" or a refusal) and what to say of it (how many came; why refused)."""
    import torch.distributed as dist

    mine, outcome, said, ours = claims.token(), None, None, None
    two = "give each run its own MASTER_PORT (torchrun --master-port PORT)"
    try:
        run = store.compare_set(f"{key}/run", "", claims.identity(world)).decode()
        if run != claims.identity(world):  # another run's, or this one's with another WORLD_SIZE
            store.set(f"{key}/refused", claims.identity(world))  # those who wait are told
            if not run.startswith(f"WORLD_SIZE={world} "):
                return "refused", (
                    f"where the processes that came first have {run.split()[0]}: start every "
                    f"process of a run with one WORLD_SIZE, and {two}"
                )
            return "refused", (
                "where processes started with another command meet (another run's, started by "
                "hand with the same MASTER_PORT, or one of this run's started with other "
                f"arguments): {two}, and start every process of a run with the same command"
            )
        ours = mine  # (before the claim: Ctrl-C as it returns leaves it too; idempotent)
        if not claims.claim(store, key, rank, mine):  # RANK=0 locked the claims: all came
            ours = None
            return "refused", (
                f"after all {world} had come there: another run's processes meet at that port too "
                "(both started by hand with one MASTER_PORT), or one of this run's was started "
                f"twice; {two}"
            )
        outcome = claims.wait_for_all(
            store, key, rank, world, mine, deadline, lambda: _closed(line), rank == 0
        )
        if outcome == "timeout":
            said = 1 + sum(1 for value in claims.claims(store, key, world) if value)
        elif outcome == "peer refused":
            outcome, said = (
                "refused",
                "and a process came there with another command or WORLD_SIZE and was refused (one "
                "of this run's started with other arguments or another WORLD_SIZE, or another "
                f"run's started by hand with the same MASTER_PORT); {two}, and start every "
                "process of a run with the same command",
            )
        elif outcome == "replaced":
            outcome, said = (
                "refused",
                (
                    f"and another process came there as RANK={rank} while this one waited (one of this "
                    f"run's started twice, or another run's with the same command); {two}, and start "
                    "each rank once"
                ),
            )
    except dist.DistError:  # the point closed under a look
        outcome = outcome or "left"
    finally:
        if ours is not None and outcome not in ("all", "left"):  # ("left": the point closed)
            try:  # None: an exception (Ctrl-C) is on its way up
                claims.leave(store, key, rank, mine)
            except dist.DistError:  # the point has just closed
                pass
    return outcome, said


def _reach(host: str, port: int, deadline: float, this: str) -> socket.socket | None:
    """A connection to ``host:port`` once something listens there, looked for until
    ``deadline`` (``time.monotonic()``); else None. A name that resolves to no address is a
    LoftUpError at once (it waited the whole meeting to say so)."""
    pause = 0.01
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = socket.create_connection((host, port), timeout=min(left, _ANSWER))
            line.setblocking(False)
            return line
        except socket.gaierror as e:
            raise LoftUpError(
                f"{this} cannot meet the others: MASTER_ADDR={host} is no address here "
                f"({e.strerror}); set it to RANK=0's machine (its name or address, as this "
                "machine resolves it)"
            ) from None
        except OSError:  # refused (not listening yet), or no answer
            pass
        time.sleep(max(min(pause, deadline - time.monotonic()), 0))
        pause = min(2 * pause, claims.LOOK_EVERY)


def _check_this_machine(host: str) -> None:
    """A one-line LoftUpError unless ``host`` (MASTER_ADDR) names this machine, where RANK=0
    holds the meeting point (it waited, printed torch's 45 lines, and blamed itself)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        found, why = [], f"no address here: {e.strerror}"
    else:
        why = "none of its addresses is this machine's"
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.bind((address[0], 0, *address[2:]))
            return
        except OSError:  # not an address of this machine (EADDRNOTAVAIL)
            pass
    raise LoftUpError(
        f"MASTER_ADDR must name this machine (RANK=0's), which holds the meeting point: "
        f"MASTER_ADDR={host} is {why}; set it to this machine's name or address (the one the "
        "others reach it by), e.g. 127.0.0.1 where all run here"
    )


#: how long (seconds) a store client waits for what listens at MASTER_PORT to answer as a
#: meeting point (a program that accepts and drops connections there: torch's retries, logged
#: at each, for the whole meeting wait, and Ctrl-C ignored)
_ANSWER = 5.0


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


def _open(host: str, port: int, world: int, rank: int, holds: bool, deadline: float, line):
    """The TCPStore at ``host:port``, its server here where this process (RANK=``rank``)
    ``holds`` it; a port in use, or a meeting point that does not answer (``line``, this
    process's connection to what listens there, dropped; or the store's client timed out), is
    a one-line LoftUpError."""
    import torch.distributed as dist

    # USE_LIBUV=0 picks the older store server, as for torch's env:// (the default elsewhere
    # than on Windows, whose torch has no libuv)
    libuv = os.environ.get("USE_LIBUV", "0" if sys.platform == "win32" else "1") == "1"
    seconds = max(deadline - time.monotonic(), 1.0)
    if not holds:  # a store's server keeps a connection open; a squatter may drop it at once
        time.sleep(0.1)
        seconds = _ANSWER
    try:
        if not holds and _closed(line):
            raise RuntimeError("the connection was closed at once")
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
        if holds:
            raise
        # another program at the port (rank 0, which could not hold it, said so), which drops
        # the store's connection, or holds it without an answer
        raise LoftUpError(
            f"this process (RANK={rank}) reached {host}:{port}, but no meeting point answered "
            f"there ({str(e).strip().splitlines()[0][:200]}): RANK=0 left it as this one came, "
            f"or another program holds MASTER_PORT={port}; free it, or give this run's "
            "processes another MASTER_PORT (torchrun --master-port PORT)"
        ) from None


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
    # a TCP port; 0 (any free one) only for a group of one, where none is met
    _env_int("MASTER_PORT", 1 if dist_env()[1] >= 2 else 0, 65536)
