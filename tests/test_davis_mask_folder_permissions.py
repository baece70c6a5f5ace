"""The chmod that ``loftup eval davis --save-masks DIR``'s checks advise is the one for the class of
users this user is of for the folder (its owner, in its group, another), where both advised a
group's chmod whatever it was ("ask OWNER to run chmod -R g+rX DIR (this user in its group)",
"chmod -R g+w SEQ"): nothing for a user outside the group, "ask" the user itself for its own
folder. Where the mode lets this user already (an ACL refuses), no chmod: what else refuses.
The advised chmod, run by the owner (root), lets the same call through. Runs as another user
(root only): each call in a forked child that takes that user's ids (tests/as_nobody.py)."""

import grp
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from as_nobody import NOBODY, as_nobody, chmod_advised, deny_by_acl, setfacl_advised
from loftup.eval.mask_folder import check_masks_folder, complete_masks

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)

MARK = ".loftup-eval-davis-masks"
GROUP = grp.getgrgid(NOBODY).gr_name
READ = "or give another folder a loftup eval davis --save-masks run wrote"
#: Who else must run a reader's ``chmod -R``, which it cannot see (said of a ``setfacl -R``
#: with "ACL")
OWNERS_TOO = (
    ", and if it holds others' files, have each of their owners run the same, as only a file's "
    "owner may change its mode"
)


@pytest.fixture
def masks():
    yield from masks_folder()


def masks_folder():
    """An earlier run's masks, DIR/bear/00000.png and DIR's mark listing bear, all root's."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    os.chmod(base, 0o755)
    folder = base / "masks"
    (folder / "bear").mkdir(parents=True)
    (folder / "bear" / "00000.png").write_bytes(b"a mask")
    (folder / MARK).write_text(json.dumps({"sequences": ["bear"]}))
    yield folder
    shutil.rmtree(base)


def _own(path: Path, uid: int, gid: int, mode: int, tree: bool = False) -> None:
    for p in [path, *(path.rglob("*") if tree else ())]:
        os.chown(p, uid, gid)
    os.chmod(path, mode)


def by_class(other: tuple, group: tuple, owner: tuple):
    """A test for each class of users this user (:data:`NOBODY`) may be of for a path, which
    it is given as ``uid, gid`` with ``mode, told`` (the mode, the refusal's words): another
    user's (root's), a member of its group, its owner."""
    return pytest.mark.parametrize(
        "uid, gid, mode, told",
        [(0, 0, *other), (0, NOBODY, *group), (NOBODY, NOBODY, *owner)],
        ids=["other", "group", "owner"],
    )


def _mode(path: Path) -> str:
    """How a refusal says ``path``'s mode, and its owner and group where not this user's."""
    st = path.stat()
    whose = "" if st.st_uid == NOBODY else f", owner root, group {grp.getgrgid(st.st_gid).gr_name}"
    return f"mode {stat.filemode(st.st_mode)}{whose}"


def read(masks: Path) -> str:
    """What a reader of ``masks`` that is user :data:`NOBODY` is told: complete_masks, then
    the mask itself (a reader reads them all), "taken" where both pass."""
    return as_nobody(lambda: (complete_masks(masks), (masks / "bear" / "00000.png").read_bytes()))


@by_class(
    other=(0o700, "is not in its group, and others may not read and search it); "
        "have root make it and all it holds readable and searchable, since a reader reads "
        "each mask in it (chmod -R o+rX {masks})"),
    group=(0o700, "is in its group, which may not read and search it); have "
        "root make it and all it holds readable and searchable, since a reader reads each "
        "mask in it (chmod -R g+rX {masks})"),
    owner=(0o300, "owns it and may not read and search it); make it and "
        "all it holds readable and searchable, since a reader reads each mask in it: chmod "
        "-R u+rX {masks}"),
)  # fmt: skip
def test_a_reader_refused_the_masks_is_told_its_class_s_chmod_which_lets_it_read(
    masks, uid, gid, mode, told
):
    """The mask files inside are as private as DIR (0600): the chmod is -R, and once the owner
    has run it this user reads DIR and its masks."""
    os.chmod(masks / "bear", 0o700)
    os.chmod(masks / "bear" / "00000.png", 0o600)
    _own(masks, uid, gid, mode, tree=True)
    said = read(masks)
    too = OWNERS_TOO.replace(",", ";", 1) if uid == NOBODY else OWNERS_TOO  # (its own: ";")
    assert said == (
        f"{masks} cannot be read by this user: permission denied ({_mode(masks)}: this "
        f"user, nobody, {told.format(masks=masks)}{too}; {READ}"
    )
    chmod_advised(said, recursive=True)
    assert read(masks) == "taken"


def test_a_reader_refused_by_an_acl_is_told_its_setfacl_no_chmod(masks):
    """An ACL refuses this user a DIR of mode 755: "chmod -R g+rX" changed nothing; the
    setfacl naming this user, once its owner has run it, lets it read."""
    os.chmod(masks, 0o755)
    deny_by_acl(masks, NOBODY)
    said = read(masks)
    assert said == (
        f"{masks} cannot be read by this user: permission denied (mode drwxr-xr-x, owner root, "
        "group root, and an ACL, which decides for this user, nobody, whatever the mode says: "
        f"getfacl {masks}); have root let nobody read and search it, since a reader reads each "
        f"mask in it (setfacl -R -m u:nobody:rX,m::rX {masks})"
        f"{OWNERS_TOO.replace('mode', 'ACL')}; {READ}"
    )
    setfacl_advised(said)
    assert read(masks) == "taken"


def check(masks: Path) -> str:
    """What a run into ``masks`` as user :data:`NOBODY` is told before any work, or "taken".
    Checked as root first (root may): what the check imports, the child need not (this
    Python's own library may be in a folder that user may not read)."""
    check_masks_folder(str(masks), str(masks.parent / "davis"))
    return as_nobody(lambda: check_masks_folder(str(masks), str(masks.parent / "davis")))


@by_class(
    other=(0o755, "is not in its group, and others may not write to it); have "
        "root make it writable (chmod o+w {bear}); or have root remove them"),
    group=(0o2755, "is in its group, which may not write to it); have root "
        "make it writable (chmod g+w {bear}); or have root remove them"),
    owner=(0o555, "owns it and may not write to it); make it writable: "
        "chmod u+w {bear}"),
)  # fmt: skip
def test_a_run_that_may_not_move_the_earlier_masks_is_told_its_class_s_chmod(
    masks, uid, gid, mode, told
):
    """DIR open to the run (it may make files there), the earlier run's sequence folder one it
    may not move aside; once the owner has run the advised chmod, the run may."""
    os.chown(masks, 0, NOBODY)
    os.chmod(masks, 0o2777)
    bear = masks / "bear"
    _own(bear, uid, gid, mode)
    said = check(masks)
    assert said == (
        f"--save-masks {masks}: this user may not move the earlier run's masks {bear} out of the "
        "way of this run's (moving a folder needs write permission on it): permission denied "
        f"({_mode(bear)}: this user, nobody, {told.format(bear=bear)}; or give "
        "another folder"
    )
    chmod_advised(said)
    assert check(masks) == "taken"


def test_a_run_refused_the_move_by_an_acl_is_told_its_setfacl_no_chmod(masks):
    """A group-shared sequence folder (drwxrwsr-x) whose ACL gives this member r-x alone: the
    run was told "chmod -R g+w", which its mode has already; the setfacl lets it."""
    os.chown(masks, 0, NOBODY)
    os.chmod(masks, 0o2777)
    bear = masks / "bear"
    _own(bear, 0, NOBODY, 0o2775)
    deny_by_acl(bear, NOBODY, allowed=0o5)
    said = check(masks)
    assert said == (
        f"--save-masks {masks}: this user may not move the earlier run's masks {bear} out of the "
        f"way of this run's (moving a folder needs write permission on it): permission denied "
        f"(mode drwxrwsr-x, owner root, group {GROUP}, and an ACL, which decides for this user, "
        f"nobody, whatever the mode says: getfacl {bear}); have root let nobody write to it "
        f"(setfacl -m u:nobody:rwx,m::rwx {bear}); or have root remove them; or give another folder"
    )
    setfacl_advised(said)
    assert check(masks) == "taken"


@by_class(
    other=(0o600, "is not in its group, and others may not read it); have root make it "
        "readable (chmod o+r {mark})"),
    group=(0o600, "is in its group, which may not read it); have root make it "
        "readable (chmod g+r {mark})"),
    owner=(0o200, "owns it and may not read it); make it readable: chmod u+r "
        "{mark}"),
)  # fmt: skip
def test_a_mark_this_user_may_not_read_is_told_its_class_s_chmod(masks, uid, gid, mode, told):
    """The mark made private: "ask OWNER to run chmod g+r MARK" whatever the class was."""
    mark = masks / MARK
    _own(mark, uid, gid, mode)
    said = read(masks)
    assert said == (
        f"{mark}, the mark saying which run's masks {masks} holds and whether they are "
        f"complete, cannot be read: permission denied ({_mode(mark)}: this user, nobody, "
        f"{told.format(mark=mark)}"
    )
    chmod_advised(said)
    assert read(masks) == "taken"


def test_a_member_of_dir_s_group_outside_the_mark_s_is_told_its_chgrp_too(masks):
    """DIR shared by a group without setgid: the mark took its writer's own group. Besides
    others' o+r, the chgrp into DIR's group (the fix said before, now for this case alone)."""
    mark = masks / MARK
    _own(masks, 0, NOBODY, 0o750)
    _own(mark, 0, 0, 0o600)
    said = read(masks)
    assert said.endswith(
        f"(chmod o+r {mark}); or, to share it with {masks}'s group {GROUP}, which this user "
        f"is in, have root run chgrp {GROUP} {mark} && chmod g+r {mark}, and chmod g+s {masks} "
        "(new files there then take its group)"
    ), said
    subprocess.run(
        re.search(r"run (chgrp .*), and chmod g\+s", said).group(1), shell=True, check=True
    )
    assert read(masks) == "taken"
