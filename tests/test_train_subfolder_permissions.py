"""A training run's ``tb/`` folder (``log.tensorboard``) that this user may not make files in is
refused before the run with the chmod for the class of users this user is of for it (its owner,
a member of its group, another), where it was "or chmod u+w OUT/tb" to all: nothing for a user
whose folder it is not. Runs as another user (root only): each check in a forked child that
takes that user's ids (tests/as_nobody.py)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from as_nobody import NOBODY, as_nobody, chmod_advised, deny_by_acl, setfacl_advised
from loftup.train.run_folder import check_run_subfolders

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)

CFG = SimpleNamespace(log=SimpleNamespace(tensorboard=True, viz_every=0))  # (tb/ alone)
ONE_PROCESS = SimpleNamespace(is_main=True, enabled=False)


@pytest.fixture
def tb():
    """OUT/tb, both root's, OUT open to all (pytest's own folder is root's only: 0700)."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(base, 0o777)
    (base / "tb").mkdir()
    yield base / "tb"
    shutil.rmtree(base)


def check(out: Path) -> str:
    """What a run into ``out`` as user :data:`NOBODY` is told, or "taken". Checked as root
    first (root may): what the check imports, the child need not."""
    check_run_subfolders(CFG, out, ONE_PROCESS, "--out")
    return as_nobody(lambda: check_run_subfolders(CFG, out, ONE_PROCESS, "--out"))


@pytest.mark.parametrize(
    "uid, gid, mode, advice",
    [(0, 0, 0o755, "have root run chmod o+w"), (0, NOBODY, 0o755, "have root run chmod g+w"),
     (NOBODY, NOBODY, 0o555, "chmod u+w")],
    ids=["other", "group", "owner"],
)  # fmt: skip
def test_a_tb_folder_this_user_may_not_write_is_told_its_class_s_chmod(tb, uid, gid, mode, advice):
    """Another user's tb/ in a shared run folder was "or chmod u+w", which changes nothing
    for this user and only the owner may run; once the owner runs the advised chmod, the run
    may write there. (Owner: the fix it was, kept.)"""
    os.chown(tb, uid, gid)
    os.chmod(tb, mode)
    said = check(tb.parent)
    assert said == (
        f"--out {tb.parent} cannot be written: {tb} takes no new files (Permission denied); "
        f"choose another folder (or {advice} {tb})"
    )
    chmod_advised(said)
    assert check(tb.parent) == "taken"


@pytest.mark.parametrize("mode", [0o777, 0o755])
def test_a_tb_folder_refused_by_an_acl_is_told_its_setfacl_no_chmod(tb, mode):
    """An ACL refuses this user a tb/ of mode 777: "or chmod u+w" changed nothing; one of mode
    755 (the ACL's mask r-x, as a chmod g-w leaves it) was told "chmod o+w", which changed
    nothing either. The setfacl naming this user, once the owner has run it, lets the run."""
    os.chmod(tb, mode)
    deny_by_acl(tb, NOBODY, allowed=0o7 if mode == 0o755 else 0o5)
    said = check(tb.parent)
    assert said == (
        f"--out {tb.parent} cannot be written: {tb} takes no new files (Permission denied); "
        f"choose another folder (or have root run setfacl -m u:nobody:rwx,m::rwx {tb})"
    )
    setfacl_advised(said)
    assert check(tb.parent) == "taken"


def test_a_relative_out_is_advised_as_an_absolute_tb(tb):
    """``--out runs/s1`` run in its parent: "have root run chmod o+w runs/s1/tb", which root
    runs in a folder of its own; now the absolute path, the message naming --out as given."""
    check(tb.parent)  # (as root: what the check imports)

    def there():
        os.chdir(tb.parent.parent)
        check_run_subfolders(CFG, Path(tb.parent.name), ONE_PROCESS, "--out")

    assert as_nobody(there) == (
        f"--out {tb.parent.name} cannot be written: {tb} takes no new files (Permission denied); "
        f"choose another folder (or have root run chmod o+w {tb})"
    )


def test_a_tb_folder_its_mode_and_acl_let_is_told_what_else_refuses(tb):
    """tb/ of mode 777 made immutable (chattr +i): it was "choose another folder" and nothing
    of why; now what else refuses, no chmod."""
    os.chmod(tb, 0o777)
    check_run_subfolders(CFG, tb.parent, ONE_PROCESS, "--out")  # (as root: what it imports)
    if subprocess.run(["chattr", "+i", str(tb)], capture_output=True).returncode:
        pytest.skip("no immutable flag here (chattr)")
    try:
        said = as_nobody(lambda: check_run_subfolders(CFG, tb.parent, ONE_PROCESS, "--out"))
    finally:
        subprocess.run(["chattr", "-i", str(tb)], check=True)
    assert said == (
        f"--out {tb.parent} cannot be written: {tb} takes no new files (Operation not "
        f"permitted); choose another folder (something else refuses: an ACL, getfacl {tb}; an "
        f"immutable flag, lsattr -d {tb}; a security module; or a read-only disk; no chmod "
        "would help)"
    )
