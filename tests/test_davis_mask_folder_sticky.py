"""``loftup eval davis --save-masks DIR`` in a sticky DIR shared by a group (drwxrwsrwt): the run
moves the earlier run's sequence folders out of the way and replaces DIR's mark, twice (the
journal of its moves, then its own mark), neither of which the kernel lets it do to another's
there, whatever the mode: the check refuses both before any work, with the sticky advice alone
(have the owner remove them; last, DIR's owner's chmod -t DIR, said with what it lets every
user who may write in DIR do: remove others' files there), its path absolute wherever the run
was given it (relative, ``~``). Runs as another user (root only): tests/as_nobody.py."""

import os
import subprocess
from pathlib import Path

import pytest

from as_nobody import NOBODY, as_nobody
from loftup.eval.mask_folder import check_masks_folder
from test_davis_mask_folder_permissions import MARK, _own, check, masks_folder

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)


@pytest.fixture
def masks():
    yield from masks_folder()


def sticky(masks: Path, bear: int, mark: int) -> None:
    """DIR root's, sticky and open to its group (drwxrwsrwt); its sequence folder ``bear``
    (drwxrwsr-x) and its mark (-rw-rw-r--) of the users ``bear`` and ``mark``."""
    _own(masks, 0, NOBODY, 0o3777)
    _own(masks / "bear", bear, NOBODY, 0o2775)
    _own(masks / MARK, mark, NOBODY, 0o664)


def folder_refused(masks: Path, where: str) -> str:
    bear = masks / "bear"
    return (
        f"--save-masks {where}: this user may not move the earlier run's masks {bear} out of the "
        f"way of this run's: {where} is sticky (mode drwxrwsrwt), where only a folder's owner, "
        f"root here, or {where}'s, root, may move it; have root remove them; or give another "
        f"folder{unsticky(masks, where)}"
    )


def unsticky(masks: Path, where: str) -> str:
    """The sticky DIR's last fix, said with what it lets every user do."""
    return (
        f"; or have {where}'s owner run chmod -t {masks}, which lets every user who may write in "
        f"{where} remove others' files there"
    )


def test_another_s_masks_in_a_sticky_folder_are_refused_as_such(masks):
    """A member of the group may write the earlier run's sequence folder but not move it, as
    only its owner or DIR's may: the check let the run through, to fail at its very end. Once
    DIR's owner has run chmod -t, the run may."""
    sticky(masks, bear=0, mark=NOBODY)

    def move():
        os.rename(masks / "bear", masks / "moved")

    assert as_nobody(move).startswith("PermissionError: ")  # what the run's move would meet
    assert check(masks) == folder_refused(masks, str(masks))
    subprocess.run(["chmod", "-t", str(masks)], check=True)
    assert check(masks) == "taken"


def test_another_s_folder_that_is_not_writable_in_a_sticky_folder_is_told_the_sticky_fix_only(
    masks,
):
    """The folder of mode drwxr-xr-x too: the run was told the owner's chmod o+w, after which
    it met the sticky refusal; now the sticky fix alone, which one step mends."""
    sticky(masks, bear=0, mark=NOBODY)
    os.chmod(masks / "bear", 0o755)
    assert check(masks) == folder_refused(masks, str(masks))
    subprocess.run(["rm", "-rf", str(masks / "bear")], check=True)  # "have root remove them"
    assert check(masks) == "taken"


def test_another_s_mark_in_a_sticky_folder_is_refused_though_the_masks_are_this_user_s(masks):
    """The masks this user's own, the mark another member's: the check let the run through,
    whose replacing of the mark failed at its end, "Operation not permitted"."""
    sticky(masks, bear=NOBODY, mark=0)
    mark = masks / MARK

    def replace_mark():
        (masks / "new").write_text("{}")
        os.replace(masks / "new", mark)

    assert as_nobody(replace_mark).startswith("PermissionError: ")  # what the run would meet
    os.unlink(masks / "new")
    assert check(masks) == (
        f"--save-masks {masks}: this user may not replace the mark {mark}, which says which "
        f"run's masks {masks} holds: {masks} is sticky (mode drwxrwsrwt), where only a file's "
        f"owner, root here, or {masks}'s, root, may replace it; have root remove the masks and "
        f"the mark; or give another folder{unsticky(masks, str(masks))}"
    )
    os.chown(mark, NOBODY, NOBODY)
    assert check(masks) == "taken"


def test_another_s_masks_and_mark_are_taken_once_their_owner_removed_both(masks):
    """All another's: the mark is said first, whose advice (remove the masks and the mark)
    mends both; the folder's alone left the mark, refused at the run's end."""
    sticky(masks, bear=0, mark=0)
    assert "remove the masks and the mark" in check(masks)
    subprocess.run(["rm", "-rf", str(masks / "bear"), str(masks / MARK)], check=True)
    assert check(masks) == "taken"


@pytest.mark.parametrize("given", ["masks", "~/masks"])
def test_the_chmod_for_dir_s_owner_names_dir_absolute_as_given_otherwise(masks, given):
    """``--save-masks masks`` (in the run's folder) or ``'~/masks'`` (quoted: ~ never expands)
    named a folder of DIR's owner's, or none; now the absolute path."""
    sticky(masks, bear=0, mark=NOBODY)
    check(masks)  # (as root: what the check imports)

    def run_there():
        os.chdir(masks.parent)
        os.environ["HOME"] = str(masks.parent)
        check_masks_folder(given, str(masks.parent / "davis"))

    assert as_nobody(run_there) == folder_refused(masks, given)
