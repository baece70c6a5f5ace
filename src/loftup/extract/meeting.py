"""Where the processes of a torchrun job (or of one started by hand with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT) meet before they join the process group: each claims its rank at a
TCPStore (:mod:`.claims`), found at the meeting point (:mod:`.point`), then all join the group
(:mod:`.pulse`). The waits are Python's own (a connection looked for, a key looked at, a pause
between looks), not the store's: a process whose peers never come says so in one line, where
torch's store waiting for them first printed its C++ retries and stack traces (41 lines), and
Ctrl-C stops the wait at once, where the store's ignored it until its time-out (10 minutes)."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import time

from ..errors import LoftUpError, UsageError
from ..ranks import dist_env
from ..ranks import env_int as _env_int
from . import claims, looks, point, pulse
from .join import join_failed, join_wait, refused_by, set_collectives_timeout
from .pulse import BEAT_EVERY, SILENT_FOR
from .torchrun import MEET_ENV, MEET_TIMEOUT, join_process_group, timeout_from_env
from .watch import Watch


def meet_the_others(backend: str, seconds: float) -> None:
    """Join the group of the processes RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT name:
    wait :data:`MEET_ENV` seconds at most (default :data:`MEET_TIMEOUT`) for all of them to
    come, then ``seconds`` at most at each collective. A one-line error where those variables
    are not all set (:func:`_check_rendezvous`) or where the others never came (a job script
    that exports them for another launcher, one process started: torch's 44-line store
    traceback, after the collectives' whole wait, a day for ``upsample``, since
    ``init_process_group``'s time-out covers the meeting too)."""

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
    kept: list = []  # this process's connection to the point, kept open for the join
    store = _meeting_point(rank, world, meet, meeting, kept)
    _join(backend, store, meeting, rank, world, max(deadline - time.monotonic(), _JOIN_LEAST),
          seconds, kept[0] if kept else None)  # fmt: skip


def _join(backend: str, store, meeting: str, rank: int, world: int, join: float, seconds: float,
          line=None):  # fmt: skip
    """Join the group of the ``meeting`` just met at ``store``: its own rendezvous waits
    ``join`` seconds at most (what is left of the meeting's wait), not the collectives'
    ``seconds`` (a process killed after it came: a day, Ctrl-C ignored, then torch's traceback),
    which are set once the group is joined. gloo's rendezvous is waited for in looks
    (:mod:`.pulse`): Ctrl-C ends it at once, and a process gone silent ends it within seconds,
    named; its connects then wait :data:`.join.CONNECT` seconds a try, watched from a thread
    (:mod:`.watch`) that ends the process as the looks would have; nccl's (its
    communicators, made at the first collective) is not in the join. ``line``: this process's
    connection to the meeting point, kept from the meeting (closed here): its close says at once
    that RANK=0, which holds it, has ended."""
    import torch.distributed as dist

    key = f"loftup_meet/{meeting}"
    met = (
        f"this process (RANK={rank} of WORLD_SIZE={world}) met the others at "
        f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}, but"
    )
    watched = backend == "gloo"
    try:
        # the first beat at once, before anything slow: the others time this one from it
        with pulse.Pulse(store, key, rank, line) if watched else contextlib.nullcontext() as beat:
            # (the port the store holds or reached: MASTER_PORT=0, a group of one's, is any)
            where = (
                os.environ["MASTER_ADDR"],
                getattr(store, "port", 0) or _env_int("MASTER_PORT", 0),
            )
            group = (
                pulse.Rendezvous(
                    store, key, rank, world, time.monotonic() + join, met, line, where
                )  # fmt: skip
                if watched
                else store
            )
            group.set_timeout(datetime.timedelta(seconds=join))
            started = time.monotonic()
            watch = Watch(group, where, key, rank, world) if watched else None
            try:
                with watch or contextlib.nullcontext():  # (gloo's connects, in C++, watched)
                    join_process_group(
                        backend, store=dist.PrefixStore(f"default_pg/{meeting}", group), rank=rank,
                        world_size=world, timeout=join_wait(backend, join, seconds),
                    )  # fmt: skip
            except RuntimeError as e:  # torch's DistError, gloo's connection errors
                seen = watch.saw if watch is not None else None
                # the rank that refused a connect, by its address as this one read it
                ended = (
                    refused_by(str(e), group.addresses(f"default_pg/{meeting}", rank, world))
                    if watched
                    else None
                )
                raise join_failed(e, met, time.monotonic() - started, seen, ended) from None
            if watched:
                beat.joined()
                group.joined()
                _JOINED[:] = [group]
    finally:
        if line is not None:
            line.close()
    # the meeting is over: the group's own use of the store (nccl's communicators, made at the
    # first collective) may wait as long as a collective may
    group.set_timeout(datetime.timedelta(seconds=seconds))
    if dist.is_initialized():  # (a test's stand-in joins none)
        set_collectives_timeout(seconds)


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

#: the group's store (:class:`.pulse.Rendezvous`) while the group may use it: torch holds its
#: C++ half only, whose calls into Python fail once the Python half is gone
_JOINED: list = []


def _meeting_point(rank: int, world: int, seconds: float, meeting: str, kept: list | None = None):
    """The store at MASTER_ADDR:MASTER_PORT (held by rank 0, or under torchrun by its agent, as
    torch's ``env://`` does), once all ``world`` processes have come to it for the
    ``meeting``-th time, each claiming its rank (:mod:`.claims`); ``seconds`` at most, else a
    one-line LoftUpError. This process's connection to it (where it does not hold it) is
    closed, or put open in ``kept`` once all came."""
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
    holds = point.holds(rank)
    if holds:
        point.check_this_machine(host)
    # the others look for the meeting point themselves (the store's client, left to do it,
    # logs each failed try); the connection that finds it tells them when it closes
    line = None if holds else point.reach(host, port, deadline, this)
    if not holds and line is None:
        raise not_all_came(f"{waited} RANK=0, which holds the meeting point, never came")
    met = False
    try:
        store = point.open_store(host, port, world, rank, holds, deadline, line)
        # the meeting's calls to a point another process holds are timed (one stopped held
        # them for as long as it stayed stopped, Ctrl-C ignored)
        calls = store if holds else looks.Timed(store, (host, port), this, SILENT_FOR, BEAT_EVERY)
        outcome, said = _come(calls, f"loftup_meet/{meeting}", rank, world, deadline, line)
        if outcome == "all":
            met = True
            if holds:  # kept (a failed meeting's closes, the others told)
                _HELD[:] = [store]
            # the line kept for the join: one reached again there took up to point.ANSWER a
            # try (a slow name look-up, a lost SYN), silent, and the others took it for dead
            if kept is not None and line is not None:
                kept.append(line)
            return store
    finally:
        if line is not None and not (met and kept is not None):
            line.close()
        if holds and not met:  # the meeting point closes (an earlier meeting's server held it
            _HELD.clear()  # open), so that those who came are told now (Ctrl-C here too)
    # (the error's traceback holds this frame: a caller that goes on would keep the point)
    del store, calls
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
    # read once: the run recorded is the one compared (a sys.argv changed in between, as a
    # test's two runs in one process do, had RANK=0 refuse its own run and close the point)
    this_run = claims.identity(world)
    try:
        run = store.compare_set(f"{key}/run", "", this_run).decode()
        if run != this_run:  # another run's, or this one's with another WORLD_SIZE
            store.set(f"{key}/refused", this_run)  # those who wait are told
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
            store, key, rank, world, mine, deadline, lambda: point.closed(line), rank == 0
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
    except looks.Unanswered:
        outcome = "unanswered"
        raise
    finally:  # ("left": the point closed; "unanswered": it stopped)
        # (a point another process holds that is not answering now is left as it is: its
        # call held Ctrl-C's or SIGTERM's end for seconds; the claim is taken over by a
        # process started again, claims.claim)
        leaving = store.last() if isinstance(store, looks.Timed) else store
        if (
            leaving is not None
            and ours is not None
            and outcome not in ("all", "left", "unanswered")
        ):
            try:  # None: an exception (Ctrl-C) is on its way up
                claims.leave(leaving, key, rank, mine)
            except (dist.DistError, looks.Unanswered):  # the point has just closed, or stopped
                pass
    return outcome, said


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
