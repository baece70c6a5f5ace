"""What a reader of ``loftup eval davis --save-masks DIR``'s masks (complete_masks, then a
scorer) and a run are told of what refuses them, where the advice was wrong for whoever must run
it: a ``chmod -R`` by DIR's owner of files other members' runs wrote, a ``chmod g+s DIR`` by the
mark's owner, a bare "Permission denied" of a mark beyond a closed folder, nothing of a private
sequence folder or mask in a readable DIR, a path that is another folder in another's shell.
Runs as another user (root only): tests/as_nobody.py."""

import grp
import os
from pathlib import Path

import pytest

from as_nobody import NOBODY, as_nobody, chmod_advised
from loftup.eval.mask_folder import complete_masks
from test_davis_mask_folder_permissions import (
    MARK,
    OWNERS_TOO,
    READ,
    _own,
    check,
    masks_folder,
    read,
)

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)

GROUP = grp.getgrgid(NOBODY).gr_name
OTHER = 4242  # a user with no name here, whose run wrote files: said "uid 4242"
EACH = "since a reader reads each mask in it"


@pytest.fixture
def masks():
    yield from masks_folder()


def test_a_private_sequence_folder_in_a_readable_dir_is_refused_with_its_chmod(masks):
    """DIR readable, its sequence folder (drwx------) and mask (-rw-------) root's: the reader
    was let through, to meet a bare PermissionError at the mask."""
    bear = masks / "bear"
    os.chmod(bear, 0o700)
    os.chmod(bear / "00000.png", 0o600)
    said = read(masks)
    assert said == (
        f"{masks}'s masks {bear} cannot be read by this user: permission denied (mode "
        "drwx------, owner root, group root: this user, nobody, is not in its group, and others "
        "may not read and search it); have root make it and all it holds readable and "
        f"searchable, {EACH} (chmod -R o+rX {bear}){OWNERS_TOO}; {READ}"
    )
    chmod_advised(said, recursive=True)
    assert read(masks) == "taken"


def test_a_mask_this_user_may_not_read_in_a_readable_sequence_folder_is_refused_with_its_chmod(
    masks,
):
    """DIR and its sequence folder readable, two masks in it uid 4242's of mode 0600: the
    reader was let through, to meet a bare PermissionError at the first. The chmod of the
    first, with how many more are alike; once each has been run, the reader reads them."""
    bear = masks / "bear"
    (bear / "00001.png").write_bytes(b"a mask")
    for png in ("00000.png", "00001.png"):
        _own(bear / png, OTHER, OTHER, 0o600)
    first = bear / "00000.png"
    said = as_nobody(lambda: complete_masks(masks))
    assert said == (
        f"{masks}'s mask {first} (and 1 more of {bear}'s) cannot be read by this user: "
        f"permission denied (mode -rw-------, owner uid {OTHER}, group gid {OTHER}: this user, "
        f"nobody, is not in its group, and others may not read it); have uid {OTHER} make it "
        f"readable (chmod o+r {first}), or run as uid {OTHER}; {READ}"
    )
    chmod_advised(said)
    said = as_nobody(lambda: complete_masks(masks))
    assert said.startswith(f"{masks}'s mask {bear / '00001.png'} cannot be read "), said
    chmod_advised(said)
    assert as_nobody(lambda: complete_masks(masks)) == "taken"


def test_a_chmod_r_of_a_group_s_folder_is_said_to_be_each_writer_s_too(masks):
    """A DIR its group may write in (drwxrws---), which this user may not list: what it holds
    may be other members' runs', on which DIR's owner's chmod -R fails ("Operation not
    permitted")."""
    _own(masks, 0, 0, 0o2770)
    assert read(masks) == (
        f"{masks} cannot be read by this user: permission denied (mode drwxrws---, owner root, "
        "group root: this user, nobody, is not in its group, and others may not read and "
        f"search it); have root make it and all it holds readable and searchable, {EACH} "
        f"(chmod -R o+rX {masks}), and have each user whose files it holds (others may make "
        f"files in it) run the same, as only a file's owner may change its mode; {READ}"
    )


def test_a_chmod_r_of_a_folder_this_user_may_not_search_says_others_files_need_their_owners(
    masks,
):
    """DIR uid 4242's (drwxr-xr--) holding a sequence folder and mask of uid 4243's (0700,
    0600): this user, who may not search DIR, cannot see whose files it holds, and was told
    DIR's owner's chmod -R alone, which fails on uid 4243's ("Operation not permitted")."""
    os.chown(masks / "bear" / "00000.png", OTHER + 1, OTHER + 1)
    _own(masks / "bear", OTHER + 1, OTHER + 1, 0o700)
    _own(masks, OTHER, OTHER, 0o754)
    assert as_nobody(lambda: complete_masks(masks)) == (
        f"{masks} cannot be read by this user: permission denied (mode drwxr-xr--, owner uid "
        f"{OTHER}, group gid {OTHER}: this user, nobody, is not in its group, and others may not "
        f"read and search it); have uid {OTHER} make it and all it holds readable and "
        f"searchable, {EACH} (chmod -R o+rX {masks}), and if it holds others' files, have each "
        f"of their owners run the same, as only a file's owner may change its mode, or run as "
        f"uid {OTHER}; {READ}"
    )


def test_the_chmod_g_s_of_dir_is_said_to_dir_s_owner_the_chgrp_to_the_mark_s(masks):
    """The mark another member's (its own group, -rw-------), DIR root's: "have MARK-OWNER run
    chgrp ... and chmod g+s DIR", which only DIR's owner may."""
    mark = masks / MARK
    _own(masks, 0, NOBODY, 0o750)
    _own(mark, OTHER, OTHER, 0o600)
    assert read(masks).endswith(
        f"or, to share it with {masks}'s group {GROUP}, which this user is in, have uid {OTHER} "
        f"run chgrp {GROUP} {mark} && chmod g+r {mark}, and have root run chmod g+s {masks} "
        "(new files there then take its group)"
    )


def test_a_mark_beyond_a_folder_this_user_may_not_search_is_said_so(masks):
    """The mark a link into a private folder: what refuses it was worked out, then lost to the
    stat that followed, which the same refusal raised: "cannot be read: Permission denied"."""
    private = masks.parent / "private"
    private.mkdir(mode=0o700)
    (masks / MARK).rename(private / "mark")
    os.chmod(private / "mark", 0o644)
    (masks / MARK).symlink_to(private / "mark")
    said = read(masks)
    assert said.startswith(
        f"{masks / MARK}, the mark saying which run's masks {masks} holds and whether they are "
        f"complete, cannot be read: a link to {private / 'mark'}, which this user may not look "
        f"at (permission denied: {private} cannot be searched)"
    ), said


def test_a_reader_given_a_relative_folder_is_told_its_absolute_path(masks):
    """``complete_masks("masks")``, run in DIR's parent: "chmod -R o+rX masks", which root
    runs in a folder of its own."""
    os.chmod(masks, 0o700)
    complete_masks(masks)  # (as root: what it imports)

    def there():
        os.chdir(masks.parent)
        complete_masks("masks")

    assert as_nobody(there).startswith("masks cannot be read by this user: ")
    assert f"(chmod -R o+rX {masks})" in as_nobody(there)


def test_a_chmod_of_a_path_with_a_space_is_quoted_as_a_shell_reads_it(masks):
    """DIR named "my masks": the advised chmod, run as said, lets the run."""
    spaced = masks.parent / "my masks"
    masks.rename(spaced)
    _own(spaced, 0, NOBODY, 0o2777)
    _own(spaced / "bear", 0, 0, 0o755)
    said = check(spaced)
    assert f"(chmod o+w '{spaced / 'bear'}')" in said, said
    chmod_advised(said)
    assert check(spaced) == "taken"


def test_as_nobody_says_what_else_was_raised():
    """An exception other than a refusal is said with its type, for the failing test to show,
    where it was "" (nothing said)."""
    assert as_nobody(lambda: Path("/nonexistent/x").read_bytes()) == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/x'"
    )
