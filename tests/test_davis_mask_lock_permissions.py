"""A lock file of ``loftup eval davis --save-masks DIR`` (:mod:`loftup.eval.mask_lock`) that this
user may not write: the refusal says what refuses it with the fix for the class of users it is
of for the file, and that fix, applied, lets the run take the lock. Runs as another user (root
only): each attempt in a forked child that takes that user's ids."""

import grp
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from as_nobody import NOBODY, as_nobody, chmod_advised
from loftup.eval.mask_lock import lock

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)

LOCK = ".loftup-eval-davis-masks.lock"


def attempt(masks: Path) -> str:
    """What a run into ``masks`` as user and group :data:`NOBODY` is told, or "taken" where it
    gets the lock."""
    return as_nobody(lambda: lock(masks))


@pytest.fixture
def masks():
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    os.chmod(base, 0o755)
    folder = base / "masks"
    folder.mkdir()
    (folder / LOCK).write_text("")
    yield folder
    shutil.rmtree(base)


me, group = pwd.getpwuid(NOBODY).pw_name, grp.getgrgid(NOBODY).gr_name


def test_a_user_outside_the_lock_file_s_group_is_told_o_rw_which_lets_the_run_in(masks):
    """Root's lock file (group root) in a folder open to all: the run was told "ask root to run
    chmod g+w", which changes nothing for a user outside the file's group."""
    os.chmod(masks, 0o777)
    os.chmod(masks / LOCK, 0o640)
    said = attempt(masks)
    assert said == (
        f"--save-masks {masks}: this user may not write its lock file {masks / LOCK}, which "
        f"every run into it locks: permission denied (mode -rw-r-----, owner root, group root: "
        f"this user, {me}, is not in its group, and others may not read and write it); have "
        f"root make it readable and writable (chmod o+rw {masks / LOCK}); or choose another "
        "folder"
    )
    chmod_advised(said)
    assert attempt(masks) == "taken"


@pytest.mark.parametrize("recursive", [False, True])
def test_a_member_is_told_g_rw_or_the_folder_s_g_rwX_each_letting_the_run_in(masks, recursive):
    """A member of the folder's group, the lock file made under umask 077 (0600): the run was
    told "chmod g+w", which still refuses an open for reading and writing."""
    for path in (masks, masks / LOCK):
        os.chown(path, 0, NOBODY)
    os.chmod(masks, 0o2775)
    os.chmod(masks / LOCK, 0o600)
    said = attempt(masks)
    assert said == (
        f"--save-masks {masks}: this user may not write its lock file {masks / LOCK}, which "
        f"every run into it locks: permission denied (mode -rw-------, owner root, group "
        f"{group}: this user, {me}, is in its group, which may not read and write it); have "
        f"root make it readable and writable (chmod g+rw {masks / LOCK}); or, for the whole "
        f"folder, chmod -R g+rwX {masks} (the owner's next run into it mends the lock file "
        "too); or choose another folder"
    )
    chmod_advised(said, recursive)
    assert attempt(masks) == "taken"
