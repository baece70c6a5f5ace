"""A call made as another user, for the tests of a refusal that this user's class of users (the
file's owner, its group, others) decides: in a forked child that takes user and group
:data:`NOBODY`'s ids and no other group (root only), and the chmod that the refusal advises, run
as the owner (root); and an ACL that refuses one user what a file's mode allows
(:func:`deny_by_acl`)."""

from __future__ import annotations

import os
import re
import struct
import subprocess

import pytest

from loftup.errors import LoftUpError

NOBODY = 65534  # the run's user and group


def as_nobody(call) -> str:
    """What ``call()`` run as user and group :data:`NOBODY` raised (a LoftUpError's text), or
    "taken" where it returned."""
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
            os.write(w, said.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    return said


def chmod_advised(said: str, recursive: bool = False) -> None:
    """Run, as the owner (root here), the chmod that the refusal ``said`` advises: its first,
    or its ``chmod -R``."""
    if recursive:
        mode, path = re.search(r"chmod -R (\S+) (\S+?)\)?(;| |$)", said).group(1, 2)
        subprocess.run(["chmod", "-R", mode, path], check=True)
        return
    mode, path = re.search(r"chmod ([ugo]\+[rwx]+) (\S+?)\)?(;|$)", said).group(1, 2)
    subprocess.run(["chmod", mode, path], check=True)


def deny_by_acl(path, uid: int, allowed: int = 0) -> None:
    """A POSIX ACL on ``path`` that gives user ``uid`` alone ``allowed`` (0: ---; 5: r-x), its
    mode's bits kept (its group's as the ACL's mask too); the test is skipped where the file
    system takes no ACL."""
    mode, undefined = os.stat(path).st_mode, 0xFFFFFFFF  # (the id of entries naming no one)
    owner, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    entries = [(0x01, owner, undefined), (0x02, allowed, uid), (0x04, group, undefined),
               (0x10, group, undefined), (0x20, other, undefined)]  # fmt: skip
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except (OSError, AttributeError) as e:
        pytest.skip(f"no POSIX ACL on this file system ({e})")
