"""The process group's own join (:mod:`.meeting`, once all came): how long torch may wait in it,
what its failure says, and the collectives' wait set once it is joined. gloo's connects between
the ranks run in torch's C++ (Python's signal handlers wait for it; the others' pulses are
watched from a thread, :mod:`.watch`), each try as long as the group's time-out, and tried
again: a process killed as the others connect to it held them there several times the
meeting's wait. They are given :data:`CONNECT` seconds a try, where live peers take
milliseconds; the collectives get theirs after."""

from __future__ import annotations

import datetime
import re
import socket
import sys

from ..errors import LoftUpError, first_line

#: how long (seconds) gloo's connects between the ranks may wait, a try (gloo tries again)
CONNECT = 5.0

_REFUSED = re.compile(r"Connection refused|ECONNREFUSED|Connection reset|Broken pipe")
_TIMED_OUT = re.compile(r"[Tt]imed? ?out|timeout")
_REMOTE = re.compile(r"remote=\[([^\]]*)\]:(\d+)")


def _sockaddr(host: str, port: int) -> re.Pattern | None:
    """A bytes pattern of ``host:port``'s sockaddr as gloo publishes a rank's address (its
    family in this machine's byte order, then the port and the address in the network's), to
    search a rank's published blob with; None for a host that is no numeric address. gloo's
    error prints the port's two bytes as this machine reads them (5001 for 35091 here): the
    pattern matches the port in either byte order."""
    ports = b"|".join(re.escape(port.to_bytes(2, order)) for order in ("big", "little"))
    for family, between in ((socket.AF_INET, b""), (socket.AF_INET6, b"....")):
        try:
            address = socket.inet_pton(family, host)
        except OSError:
            continue
        head = re.escape(family.to_bytes(2, sys.byteorder))
        return re.compile(head + b"(?:" + ports + b")" + between + re.escape(address), re.DOTALL)
    return None


def refused_by(error: str, addresses: dict[int, bytes]) -> int | None:
    """The rank whose address for the group (``addresses``: each rank's, as gloo put it at the
    store) is the one gloo's ``error`` names (``remote=[HOST]:PORT``): the rank that refused or
    dropped this one's connection; None where not exactly one is."""
    found = _REMOTE.search(error)
    pattern = _sockaddr(found.group(1), int(found.group(2))) if found else None
    if pattern is None:
        return None
    ranks = [r for r, blob in addresses.items() if pattern.search(blob)]
    return ranks[0] if len(ranks) == 1 else None


def _detail() -> bool:
    """Whether torch wraps each group in its debug wrapper (TORCH_DISTRIBUTED_DEBUG=DETAIL),
    whose helper group checks each collective with the time-out the group was joined with,
    which cannot be set after."""
    import torch.distributed as dist

    return dist.get_debug_level() == dist.DebugLevel.DETAIL


def _set_pg_timeout():
    """torch's private ``_set_pg_timeout``, which a release may drop (None then)."""
    import torch.distributed as dist

    return getattr(dist.distributed_c10d, "_set_pg_timeout", None)


def join_wait(backend: str, join: float, seconds: float) -> datetime.timedelta:
    """The time-out to join the ``backend`` group with: ``join`` (what is left of the meeting's
    wait), at most :data:`CONNECT` for gloo; the collectives' ``seconds`` where they cannot be
    set after (no ``_set_pg_timeout``, or TORCH_DISTRIBUTED_DEBUG=DETAIL: a dead peer then
    holds the join longer)."""
    if _set_pg_timeout() is None or _detail():
        return datetime.timedelta(seconds=seconds)
    return datetime.timedelta(seconds=min(join, CONNECT) if backend == "gloo" else join)


def set_collectives_timeout(seconds: float) -> None:
    """The joined default group's wait at a collective: ``seconds``. Under DETAIL the debug
    wrapper's inner group is set (torch's ``_set_pg_timeout`` only warned there)."""
    import torch
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=seconds)
    set_timeout = _set_pg_timeout()
    if set_timeout is None:  # joined with it
        return
    group = dist.distributed_c10d._get_default_group()
    wrapped = []
    for device in getattr(group, "_device_types", []):
        inner = getattr(group._get_backend(torch.device(device)), "wrapped_pg", None)
        if hasattr(inner, "_set_default_timeout"):
            wrapped.append(inner)
    if not wrapped:
        set_timeout(timeout)
    for inner in wrapped:
        inner._set_default_timeout(timeout)


def join_failed(
    error: RuntimeError, met: str, waited: float, seen: str | None = None, ended: int | None = None
) -> LoftUpError:
    """What this process says where torch's join of the group failed with ``error`` after
    ``waited`` seconds; ``met``: "this process ... met the others at ..., but"; ``seen``: what
    the join's watch (:mod:`.watch`) saw (a rank gone silent), said first; ``ended``: the rank
    that refused (or dropped) this one's connection (:func:`refused_by`), where known."""
    text = str(error).strip()
    why = first_line(error)
    if _REFUSED.search(text) and ended is not None:
        said = (
            f"RANK={ended} ended before all joined the process group: it refused (or dropped) "
            f"this one's connection after {waited:.0f} s ({why}); it was killed, or its own "
            "error says why"
        )
    elif _REFUSED.search(text):
        said = (
            f"another process of the group refused (or dropped) this one's connection after "
            f"{waited:.0f} s ({why}): it ended after it came (its own error says why, or it was "
            "killed)"
        )
    elif _TIMED_OUT.search(text):
        said = (
            f"not all of them joined the process group: this one's connects to them went "
            f"unanswered for {waited:.0f} s ({why}): one ended after it came (its own error says "
            "why, or it was killed), or hangs"
        )
    else:
        said = f"joining the process group failed after {waited:.0f} s ({why})"
    if seen is not None:  # (it starts with met, and ends with "; start the run again")
        return LoftUpError(
            f"{seen.removesuffix('; start the run again')} (gloo's connects then gave up after "
            f"{waited:.0f} s: {why}); start the run again"
        )
    return LoftUpError(f"{met} {said}; start the run again")
