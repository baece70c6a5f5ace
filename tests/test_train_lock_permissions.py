"""A lock file of the train folder lock (:mod:`loftup.train.run_lock`) that this user may not
write: the refusal names the run that holds it, or what refuses this user and the fix for the
class of users it is of for the file, and that fix, applied, lets the run take the lock. Runs
as another user (root only): each attempt in a forked child that takes that user's ids."""

import grp
import os
import pwd
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from as_nobody import NOBODY, as_nobody, chmod_advised
from loftup.train.distributed import DistInfo
from loftup.train.run_lock import LOCK_NAME, lock_run_folder

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)


def attempt(out: Path) -> str:
    """What a run into ``out`` as user and group :data:`NOBODY` is told, or "taken" where it
    gets the lock."""

    def run():
        with ExitStack() as held:
            lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)

    return as_nobody(run)


me, group = pwd.getpwuid(NOBODY).pw_name, grp.getgrgid(NOBODY).gr_name
ANOTHER = "or choose another --out (log.out_dir)"


def test_a_lock_file_made_under_umask_077_in_a_group_folder_says_g_rw_which_lets_the_run_in(base):
    """A member's lock file made under umask 077 (0600) in a group-shared folder (2775): the run
    was told "ask root to run chmod g+w"; after it (0620) the same again, word for word: an
    open for reading and writing needs both. The missing bits are named, and they work."""
    out, lock = base / "run", base / "run" / LOCK_NAME
    out.mkdir()
    os.chown(out, 0, NOBODY)
    os.chmod(out, 0o2775)
    lock.write_text("process 4242 on elsewhere\n")
    os.chown(lock, 0, NOBODY)
    os.chmod(lock, 0o600)
    said = attempt(out)
    assert said == (
        f"this user may not write {lock}, the file every loftup train run into {out} locks: "
        f"permission denied (mode -rw-------, owner root, group {group}: this user, {me}, is in "
        f"its group, which may not read and write it); have root make it readable and writable "
        f"(chmod g+rw {lock}); {ANOTHER}"  # (unreadable: whether a run holds it is not known)
    )
    os.chmod(lock, 0o620)  # the half of it the old refusal advised
    said = attempt(out)
    assert f"(chmod g+r {lock})" in said
    chmod_advised(said)
    assert attempt(out) == "taken"


def test_another_users_file_says_o_w_and_the_users_own_u_w_each_letting_the_run_in(base):
    """Not in the file's group, the run was told "chmod g+w", which changed nothing for it; of
    its own read-only file, to ask nobody for "chmod g+w" where "u+w" is the fix."""
    theirs, mine = base / "theirs", base / "mine"
    theirs.mkdir(mode=0o777)
    os.chmod(theirs, 0o777)
    (theirs / LOCK_NAME).write_text("")
    os.chmod(theirs / LOCK_NAME, 0o664)  # root's, group root
    mine.mkdir()
    (mine / LOCK_NAME).write_text("")
    for path in (mine, mine / LOCK_NAME):
        os.chown(path, NOBODY, NOBODY)
    os.chmod(mine / LOCK_NAME, 0o444)
    said = attempt(theirs)
    assert said == (
        f"this user may not write {theirs / LOCK_NAME}, the file every loftup train run into "
        f"{theirs} locks; no run holds it: permission denied (mode -rw-rw-r--, owner root, "
        f"group root: this user, {me}, is not in its group, and others may not read and write "
        f"it); have root make it readable and writable (chmod o+w {theirs / LOCK_NAME}); or "
        f"remove it, as no run holds it: rm {theirs / LOCK_NAME}; {ANOTHER}"
    )
    chmod_advised(said)
    assert attempt(theirs) == "taken"
    said = attempt(mine)
    assert said.startswith(
        f"this user may not write {mine / LOCK_NAME}, the file every loftup train run into "
        f"{mine} locks; no run holds it: permission denied (mode -r--r--r--: this user, {me}, "
        f"owns it and may not read and write it); make it readable and writable: chmod u+w "
    )
    chmod_advised(said)
    assert attempt(mine) == "taken"


def test_a_folder_the_lock_file_cannot_be_made_in_is_named_not_the_missing_file(base):
    """No lock file yet, and a folder this user may not write: the refusal named the lock file
    that is not there, and its owner as "its owner"."""
    out = base / "run"
    out.mkdir(mode=0o755)
    said = attempt(out)
    assert said == (
        f"this user may not make files in {out}, where every loftup train run locks the file "
        f"{LOCK_NAME}: permission denied (mode drwxr-xr-x, owner root, group root: this user, "
        f"{me}, is not in its group, and others may not make files in it); have root make it "
        f"writable (chmod o+w {out}); {ANOTHER}"
    )
    chmod_advised(said)
    assert attempt(out) == "taken"


def test_a_lock_file_this_user_may_not_write_names_the_run_that_holds_it(base):
    """Another user's lock file held by a run: that run is named, as where the file can be
    written (probed through a read-only open), not the chmod of a file in use."""
    out, lock = base / "run", base / "run" / LOCK_NAME
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    lock.write_text("process 4242 on elsewhere\n")
    os.chmod(lock, 0o644)
    hold = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lock)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        said = attempt(out)
    finally:
        holder.communicate("", timeout=60)
    assert said == (
        f"{out} is in use by another loftup train run (process 4242 on elsewhere); wait for it "
        f"to end (then --resume continues it), {ANOTHER}"
    )
