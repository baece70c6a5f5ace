"""The record of one meeting at the store (:mod:`.meeting`): each process claims its rank, and
RANK=0 says when all ``WORLD_SIZE`` ranks are claimed. Under ``key`` (the meeting's):

- ``key/run``: the run that meets there (its WORLD_SIZE and a hash of its command line), set by
  the first process to come; one that comes with another is refused at once (another run's
  rank started by hand on the same MASTER_PORT counted itself into this run's meeting and
  joined its group: each run then wrote half of its files);
- ``key/rank/R``: RANK=R's claim, the token of the process that holds it (``""``: none). A
  process started again in place of one that died waiting (SIGKILL, SIGHUP) overwrites the dead
  one's claim, where a count of arrivals counted it twice; one that leaves empties its own, an
  idempotent step that a signal cannot leave half done;
- ``key/all``: set by RANK=0 once it has locked every claim (``met:`` before the token). A
  claim is locked and emptied only through ``compare_set``, so a process whose wait runs out
  as RANK=0 closes the meeting either leaves before the lock (RANK=0 then lets go of the
  others' locks and waits on) or finds its claim locked and stays: it was counted out while
  the others went on to the group, which then waited a day for it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sys
import time

#: what RANK=0 puts before a claim's token once it counts it in the meeting
LOCK = "met:"

#: the longest pause (seconds) between two looks at the meeting point (the first are shorter)
LOOK_EVERY = 0.2


def identity(world: int) -> str:
    """What the processes of one run share: WORLD_SIZE, the hash of the command's arguments
    less a launcher's ``--local-rank``/``--local_rank`` (``torch.distributed.launch`` and
    DeepSpeed give each process its own; a run's processes are started with one command), and
    torchrun's run id where its agent names one (``TORCHELASTIC_RUN_ID``; torchrun's default
    for a run without ``--rdzv-id`` is "none", which tells no run from another)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg in ("--local-rank", "--local_rank"):
            skip = True  # its value follows
        elif not arg.startswith(("--local-rank=", "--local_rank=")):
            args.append(arg)
    argv = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:12]
    run = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return f"WORLD_SIZE={world} command={argv}" + ("" if run == "none" else f" run={run}")


def token() -> str:
    """This process's name on its claims (unique to it: a host, a pid, a random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def peek(store, key: str) -> str:
    """``key``'s value, ``""`` where it has none (it is then created so), without waiting (the
    store's ``get`` waits for a key to be set)."""
    return store.compare_set(key, "", "").decode()


def read(store, keys: list[str]) -> list[str]:
    """The values of ``keys`` (``""``: none), without waiting (:func:`peek`)."""
    if store.check(keys):  # (each once made, by its owner or a look here: one round trip)
        return [value.decode() for value in store.multi_get(keys)]
    return [peek(store, k) for k in keys]


def claims(store, key: str, world: int) -> list[str]:
    """Each rank's claim at the meeting ``key`` (``""``: none)."""
    return read(store, [f"{key}/rank/{r}" for r in range(world)])


def claim(store, key: str, rank: int, mine: str) -> bool:
    """Claim ``rank`` at the meeting ``key`` as ``mine`` (a :func:`token`), over the claim of a
    process that did not leave it (killed while it waited); False where RANK=0 locked it
    already (all had come)."""
    at = f"{key}/rank/{rank}"
    while True:
        held = peek(store, at)
        if held.startswith(LOCK):
            return False
        if store.compare_set(at, held, mine).decode() == mine:
            return True


def leave(store, key: str, rank: int, mine: str) -> bool:
    """Empty this process's claim (``mine``); False where RANK=0 has locked it (closing the
    meeting): the process is counted in, and stays. Idempotent."""
    return store.compare_set(f"{key}/rank/{rank}", mine, "").decode() != LOCK + mine


def close_if_all_came(store, key: str, world: int) -> int:
    """RANK=0's look: where every rank is claimed, lock each claim and set ``key/all``; where a
    claim changed under the locks (its process left, or one started again took it), let go of
    those locked. How many ranks are claimed."""
    held = claims(store, key, world)
    came = sum(1 for value in held if value)
    if came < world or any(value.startswith(LOCK) for value in held):  # (locked: closed)
        return came
    locked: list[tuple[str, str]] = []
    try:
        for r, value in enumerate(held):
            at = f"{key}/rank/{r}"
            if store.compare_set(at, value, LOCK + value).decode() != LOCK + value:
                break
            locked.append((at, value))
        else:
            store.set(f"{key}/all", "1")
    finally:  # (also where Ctrl-C or a closed store stops the locking half way)
        if len(locked) < world or not store.check([f"{key}/all"]):
            for at, value in locked:
                store.compare_set(at, LOCK + value, value)
    return came


def wait_for_all(store, key, rank, world, mine, deadline, closed, decides) -> str:
    """Wait until the meeting ``key`` is whole ("all"; "replaced" where this process's claim
    was not the one counted in), until ``deadline`` (``time.monotonic()``; "timeout", the claim
    left), until ``closed()`` says the point has closed ("left"), until another process took
    RANK=``rank``'s claim ("replaced"), or until one was refused for another command or
    WORLD_SIZE ("peer refused": the wait could only run out). RANK=0 ``decides`` when all came."""
    at, pause = f"{key}/rank/{rank}", 0.01
    while True:
        if closed():  # first: the store's own call to a closed point logs its trace
            return "left"
        if decides:
            close_if_all_came(store, key, world)
        if store.check([f"{key}/all"]):
            return "all" if peek(store, at) == LOCK + mine else "replaced"
        refused = store.check([f"{key}/refused"])  # one came with another command or WORLD_SIZE
        if refused and leave(store, key, rank, mine):
            return "peer refused"
        if peek(store, at) not in (mine, LOCK + mine):
            return "replaced"
        if time.monotonic() >= deadline and leave(store, key, rank, mine):
            return "timeout"
        time.sleep(max(min(pause, deadline - time.monotonic()), 0.001))
        pause = min(2 * pause, LOOK_EVERY)
