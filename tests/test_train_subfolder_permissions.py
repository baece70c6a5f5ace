"""A training run's ``tb/`` folder (``log.tensorboard``) that this user may not make files in is
refused before the run with the chmod for the class of users this user is of for it (its owner,
a member of its group, another), where it was "or chmod u+w OUT/tb" to all: nothing for a user
whose folder it is not. Runs as another user (root only): each check in a forked child that
takes that user's ids (tests/as_nobody.py)."""

import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from as_nobody import NOBODY, as_nobody, chmod_advised, deny_by_acl
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


def test_a_tb_folder_whose_mode_lets_this_user_is_told_no_chmod(tb):
    """An ACL refuses this user a tb/ of mode 777: "or chmod u+w" changed nothing."""
    os.chmod(tb, 0o777)
    deny_by_acl(tb, NOBODY, allowed=0o5)
    said = check(tb.parent)
    assert said.endswith("takes no new files (Permission denied); choose another folder"), said
