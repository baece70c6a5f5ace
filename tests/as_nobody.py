"""A call made as another user, for the tests of a refusal that this user's class of users (the
file's owner, its group, others) decides: in a forked child that takes user and group
:data:`NOBODY`'s ids and no other group (root only), and the chmod that the refusal advises, run
as the owner (root); and an ACL that refuses one user what a file's mode allows
(:func:`deny_by_acl`)."""

from __future__ import annotations

import os
import re
import shlex
import struct
import subprocess

import pytest

from loftup.errors import LoftUpError

NOBODY = 65534  # the run's user and group


def as_nobody(call) -> str:
    """What ``call()`` run as user and group :data:`NOBODY` raised (a LoftUpError's text; any
    other exception's type and text, which a failing test then shows), or "taken" where it
    returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                call()
                said = "taken"
            except LoftUpError as e:
                said = str(e)
            except BaseException as e:  # (not what a refusal raises: said so)
                said = f"{type(e).__name__}: {e}"
            os.write(w, said.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    return said


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
    """Do, as the owner, what the ``setfacl [-R] -m u:nobody:PERMS PATH`` that ``said`` advises
    does to PATH (setfacl itself may not be installed; of ``-R``, to PATH alone: what it holds
    has no ACL in these tests): the entry naming :data:`NOBODY` made PERMS, and the ACL's mask
    widened to it, as setfacl does."""
    words = advised(said, "setfacl ", 5)
    perms, path = words[3:5] if words[1] == "-R" else words[2:4]
    perms = perms.removeprefix("u:nobody:").lower()  # (X: x, of a folder)
    bits = sum(b for c, b in (("r", 4), ("w", 2), ("x", 1)) if c in perms)
    deny_by_acl(path, NOBODY, allowed=bits, mask=bits)


def deny_by_acl(path, uid: int, allowed: int = 0, mask: int | None = None) -> None:
    """A POSIX ACL on ``path`` that gives user ``uid`` alone ``allowed`` (0: ---; 5: r-x), its
    mode's bits kept (its group's as the ACL's mask too, or ``mask``'s bits added: an ACL's
    mask sets its group bits); the test is skipped where the file system takes no ACL."""
    mode, undefined = os.stat(path).st_mode, 0xFFFFFFFF  # (the id of entries naming no one)
    owner, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    widened = group | (mask or 0)
    entries = [(0x01, owner, undefined), (0x02, allowed, uid), (0x04, group, undefined),
               (0x10, widened, undefined), (0x20, other, undefined)]  # fmt: skip
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except (OSError, AttributeError) as e:
        pytest.skip(f"no POSIX ACL on this file system ({e})")
