"""The meeting point of a torchrun job's processes (:mod:`.meeting`), as the network sees it:
the TCPStore at MASTER_ADDR:MASTER_PORT, held by RANK=0 (or torchrun's agent), looked for by
the others with a plain connection first (the store's client, left to find it, logged each
failed try), and what each can be told at once instead of after the meeting's wait (a name
that is no address, a MASTER_ADDR that is not RANK=0's machine, a port in use, a program at the
port that is no meeting point)."""

from __future__ import annotations

import datetime
import os
import re
import socket
import sys
import time

from ..errors import LoftUpError, first_line
from ..escaping import printable
from .claims import LOOK_EVERY


def holds(rank: int) -> bool:
    """Whether this process (RANK=``rank``) holds the meeting point: RANK=0, unless torchrun's
    agent holds it (its store, which outlives the processes)."""
    return rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"


def reach(host: str, port: int, deadline: float, this: str) -> socket.socket | None:
    """A connection to ``host:port`` once something listens there, looked for until
    ``deadline`` (``time.monotonic()``); else None. A name that resolves to no address is a
    LoftUpError at once (it waited the whole meeting to say so)."""
    pause = 0.01
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            line = socket.create_connection((host, port), timeout=min(left, ANSWER))
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
        pause = min(2 * pause, LOOK_EVERY)


def check_this_machine(host: str) -> None:
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
ANSWER = 5.0


def closed(line: socket.socket | None) -> bool:
    """Whether the other end of ``line`` (a non-blocking connection) has closed it."""
    if line is None:
        return False
    try:
        return line.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:  # open, with nothing to read
        return False
    except OSError:
        return True


def client(host: str, port: int, seconds: float, *, world: int | None = None, holds: bool = False):
    """A TCPStore client of the meeting point at ``host:port`` (its server, here, where this
    process ``holds`` it, for ``world`` processes), ``seconds`` its time-out: the one factory of
    the meeting's own client and of the one its looks use (:mod:`.looks`, the main thread's
    and the watch's). USE_LIBUV=0 picks the older store server and client, as for torch's
    ``env://`` (libuv is the default elsewhere than on Windows, whose torch has none). The
    time-out bounds a wait for a key and the connect; a call to a point that has stopped (its
    process, or its machine, or the network to it) waits whatever it is: time it from
    elsewhere."""
    import torch.distributed as dist

    libuv = os.environ.get("USE_LIBUV", "0" if sys.platform == "win32" else "1") == "1"
    return dist.TCPStore(
        host, port, world, is_master=holds, timeout=datetime.timedelta(seconds=seconds),
        wait_for_workers=False, multi_tenant=True, use_libuv=libuv,
    )  # fmt: skip


def open_store(host: str, port: int, world: int, rank: int, holds: bool, deadline: float, line):
    """The TCPStore at ``host:port``, its server here where this process (RANK=``rank``)
    ``holds`` it; a port in use, or a meeting point that does not answer (``line``, this
    process's connection to what listens there, dropped; or the store's client timed out), is
    a one-line LoftUpError."""
    seconds = max(deadline - time.monotonic(), 1.0)
    if not holds:  # a store's server keeps a connection open; a squatter may drop it at once
        time.sleep(0.1)
        seconds = ANSWER
    try:
        if not holds and closed(line):
            raise RuntimeError("the connection was closed at once")
        return client(host, port, seconds, world=world, holds=holds)
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
            f"there ({printable(first_line(e))}): RANK=0 left it as this "
            "one came, "
            f"or another program holds MASTER_PORT={port}; free it, or give this run's "
            "processes another MASTER_PORT (torchrun --master-port PORT)"
        ) from None
