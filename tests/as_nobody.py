"""A call made as another user, for the tests of a refusal that this user's class of users (the
file's owner, its group, others) decides: in a forked child that takes user and group
:data:`NOBODY`'s ids and no other group (root only), and the chmod that the refusal advises, run
as the owner (root)."""

from __future__ import annotations

import os
import re
import subprocess

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
        mode, path = re.search(r"chmod -R (\S+) (\S+) ", said).group(1, 2)
        subprocess.run(["chmod", "-R", mode, path], check=True)
        return
    mode, path = re.search(r"chmod ([ugo]\+[rwx]+) (\S+?)\)?(;|$)", said).group(1, 2)
    subprocess.run(["chmod", mode, path], check=True)
