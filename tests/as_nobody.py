"""A call made as another user, for the tests of a refusal that this user's class of users (the
file's owner, its group, others) decides: in a forked child that takes user and group
:data:`NOBODY`'s ids and no other group (root only), and the chmod that the refusal advises, run
as the owner (root); and an ACL that refuses one user what a file's mode allows
(:func:`deny_by_acl`)."""

from __future__ import annotations

import grp
import itertools
import json
import os
import pwd
import re
import select
import shlex
import signal
import stat
import struct
import subprocess
import time
from contextlib import suppress

import pytest

from loftup.acl import access_acl
from loftup.errors import LoftUpError

NOBODY = 65534  # the run's user and group
OWNER, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20  # ACL tags
UNDEFINED = 0xFFFFFFFF  # the id of an ACL's entries that name no one


def as_nobody(call, uid: int = NOBODY, gid: int | None = None, timeout: float = 60) -> str:
    """What ``call()`` run as user and group :data:`NOBODY` (or as user ``uid`` of group
    ``gid``, its number where None) raised (a LoftUpError's text; any other exception's type
    and text, which a failing test then shows), or "taken" where it returned. Fails where the
    ids could not be taken (saying why), where the child ended before it said anything (its
    status), or where it had not ended after ``timeout`` seconds (killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(r)
            os.setpgid(0, 0)  # (what the call starts is killed with it)
            try:
                os.setgroups([])
                os.setresgid(*[uid if gid is None else gid] * 3)
                os.setresuid(uid, uid, uid)
            except BaseException as e:
                answer = {"setup": f"{type(e).__name__}: {e}"}
            else:
                try:
                    call()
                    answer = {"said": "taken"}
                except LoftUpError as e:
                    answer = {"said": str(e)}
                except BaseException as e:  # (not what a refusal raises: said so)
                    answer = {"said": f"{type(e).__name__}: {e}"}
            data = json.dumps(answer).encode()
            while data:
                data = data[os.write(w, data) :]
            status = 0  # (said in full)
        finally:
            os._exit(status)
    os.close(w)
    with suppress(OSError):  # (as the child does: whichever comes first)
        os.setpgid(pid, pid)
    try:
        got, status = _read_all(r, pid, timeout)
    finally:
        os.close(r)
    who = f"uid {uid}, gid {uid if gid is None else gid}"
    assert status is not None, f"the call as {who} had not ended after {timeout} s (killed)"
    assert status == 0 and got, (
        f"the child that makes the call as {who} ended with status {status} before it said "
        f"what the call did ({got!r} read)"
    )
    answer = json.loads(got)
    assert "setup" not in answer, f"the child could not take the ids of {who}: {answer['setup']}"
    return answer["said"]


def _read_all(fd: int, pid: int, timeout: float) -> tuple[bytes, int | None]:
    """What the child ``pid`` writes to ``fd`` until it ends, and its exit status; None where
    it had not ended after ``timeout`` seconds (then killed, with its process group)."""
    deadline, got = time.monotonic() + timeout, b""
    try:
        while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # closed: at its end, but for a call that closed it
                break
            got += chunk
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return got, os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
    except BaseException:  # (Ctrl-C: not left running)
        _kill(pid)
        raise
    _kill(pid)
    return got, None


def _kill(pid: int) -> None:
    """Kill the child ``pid`` with its process group, and wait for it."""
    with suppress(OSError):  # (ended already)
        os.killpg(pid, signal.SIGKILL)
    with suppress(OSError):  # (not yet in its group)
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def advised(said: str, start: str, words: int) -> list[str]:
    """The command in ``said`` that begins with the regex ``start`` ("chmod -R "), its first
    ``words`` words as a shell reads them: a quoted path with a space is one."""
    lexer = shlex.shlex(said[re.search(start, said).start() :], posix=True, punctuation_chars=";()")
    lexer.whitespace_split = True
    return [next(lexer) for _ in range(words)]


def chmod_advised(said: str, recursive: bool = False) -> None:
    """Run, as the owner (root here), the chmod that the refusal ``said`` advises: its first,
    or its ``chmod -R``."""
    command = advised(said, "chmod -R " if recursive else r"chmod [ugo]\+", 4 if recursive else 3)
    assert re.fullmatch(r"[ugo]\+[rwxX]+", command[-2]), command
    subprocess.run(command, check=True)


def setfacl_advised(said: str) -> None:
    """Do, as the owner, what each ``setfacl [-R] -m ENTRIES PATH`` (joined by ``&&``) that
    ``said`` advises does to PATH (setfacl itself may not be installed; of ``-R``, to PATH
    alone: what it holds has no ACL in these tests): each entry (``u:NAME:PERMS``,
    ``g::PERMS``, ``m::PERMS``; ``X``: x of a folder or a file some may execute) set, and the
    mask, unless an entry sets it, recalculated as the union of all entries it limits (the
    named users and groups, the file's group), as setfacl does."""
    lexer = shlex.shlex(said[said.index("setfacl ") :], posix=True, punctuation_chars=";()")
    lexer.whitespace_split = True
    words = itertools.takewhile(lambda word: not set(word) <= set(";()"), lexer)  # (to ")", ");")
    for command in " ".join(words).split(" && "):
        *_, spec, path = shlex.split(command)
        _setfacl(spec, path)


def _setfacl(spec: str, path: str) -> None:
    """What ``setfacl -m SPEC PATH`` does to PATH (as for :func:`setfacl_advised`)."""
    mode = os.stat(path).st_mode
    exe = stat.S_ISDIR(mode) or mode & 0o111
    entries = {(tag, who): p for tag, p, who in access_acl(path) or _of_mode(mode)}
    for entry in spec.split(","):
        kind, name, perms = entry.split(":")
        bits = sum(b for c, b in (("r", 4), ("w", 2), ("x", 1)) if c in perms)
        bits |= 1 if "X" in perms and exe else 0
        tag = {"u": USER, "g": GROUP if name else GROUP_OBJ, "m": MASK}[kind]
        entries[tag, _id(name, tag) if name else UNDEFINED] = bits
    if "m::" not in spec:
        union = 0
        for (tag, _), p in entries.items():
            union |= p if tag in (USER, GROUP_OBJ, GROUP) else 0
        entries[MASK, UNDEFINED] = union
    _write_acl(path, [(tag, p, who) for (tag, who), p in entries.items()])


def deny_by_acl(
    path, uid: int, allowed: int = 0, mask: int | None = None, others: dict[int, int] | None = None
) -> None:
    """A POSIX ACL on ``path`` that gives user ``uid`` ``allowed`` (0: ---; 5: r-x), and each
    other user of ``others`` its bits ({1234: 7}), its mode's bits kept (its group's as the
    ACL's mask too, or ``mask``: an ACL's mask sets its group bits); the test is skipped where
    the file system takes no ACL."""
    mode = os.stat(path).st_mode
    mask = (mode >> 3) & 7 if mask is None else mask
    named = {**(others or {}), uid: allowed}
    entries = [*_of_mode(mode), (MASK, mask, UNDEFINED)]
    _write_acl(path, entries + [(USER, bits, who) for who, bits in named.items()])


def _of_mode(mode: int) -> list[tuple[int, int, int]]:
    """The entries of the ACL of a file of mode ``mode`` that has none: its owner's, group's
    and others' bits."""
    return [(OWNER, (mode >> 6) & 7, UNDEFINED), (GROUP_OBJ, (mode >> 3) & 7, UNDEFINED),
            (OTHER, mode & 7, UNDEFINED)]  # fmt: skip


def _id(name: str, tag: int) -> int:
    """The id of the user (or group, of ``tag`` GROUP) a setfacl entry names."""
    if name.isdigit():
        return int(name)
    return grp.getgrnam(name).gr_gid if tag == GROUP else pwd.getpwnam(name).pw_uid


def _write_acl(path, entries) -> None:
    """Set ``entries`` (tag, bits, id) as ``path``'s access ACL, in the order the kernel takes
    (by tag, then id); the test is skipped where the file system takes no ACL."""
    blob = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", *e) for e in sorted(entries, key=lambda e: (e[0], e[2]))
    )
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except (OSError, AttributeError) as e:
        pytest.skip(f"no POSIX ACL on this file system ({e})")
