"""A file's POSIX access ACL as loftup reads it for a refusal's advice (:mod:`loftup.acl`): what
it gives a user other than the file's owner (the entry naming it, limited by the mask, which a
chmod of the group's bits sets: "chmod o+w" gave a user named with rwx and a mask of r-x
nothing), and the permissions a setfacl naming it must give."""

import pytest

from as_nobody import deny_by_acl
from loftup.acl import access_acl, acl_allows, perms_of, setfacl_change

USER, GROUP_OBJ, GROUP, MASK, OTHER, OWNER = 0x02, 0x04, 0x08, 0x10, 0x20, 0x01
ME, MY_GROUP, FILE_GROUP = 4242, 4343, 4444
ANY = 0xFFFFFFFF


def acl(named=None, group=5, mask=5, other=5, named_group=None):
    """The entries of an ACL: owner rwx, the file's group ``group``, others ``other``, the mask
    ``mask``, and where given an entry naming :data:`ME` (``named``) or its group."""
    entries = [(OWNER, 7, ANY), (GROUP_OBJ, group, ANY), (MASK, mask, ANY), (OTHER, other, ANY)]
    if named is not None:
        entries.append((USER, named, ME))
    if named_group is not None:
        entries.append((GROUP, named_group, MY_GROUP))
    return entries


@pytest.mark.parametrize(
    "entries, need, allowed",
    [
        (acl(named=7, mask=5), "wx", False),  # the mask limits the named entry
        (acl(named=7, mask=7), "wx", True),
        (acl(named=0, other=7, mask=7), "r", False),  # the named entry, not others', applies
        (acl(named_group=7, mask=7, other=0), "w", True),  # a group of this user's
        (acl(named_group=7, mask=5, other=7), "w", False),  # ... limited by the mask
        (acl(other=7, mask=0), "rwx", True),  # others': no mask
    ],
)
def test_what_an_acl_lets_a_user_other_than_the_owner_do(entries, need, allowed):
    assert acl_allows(entries, ME, FILE_GROUP, {MY_GROUP}, need) is allowed


def change(entries, need):
    """What the setfacl for :data:`ME` sets: its entry's perms, the mask's, the others'."""
    bits, mask, others = setfacl_change(entries, ME, FILE_GROUP, {MY_GROUP}, need)
    return perms_of(bits), perms_of(mask), others


def test_the_setfacl_keeps_what_the_user_may_do_and_adds_what_it_needs():
    """A named r-x needing wx: rwx, not -wx (which would take its read away)."""
    assert change(acl(named=5, mask=5), "wx") == ("rwx", "rwx", [])
    assert change(acl(other=4, mask=5), "x") == ("rx", "rx", [])
    assert change(acl(named=0, other=7, mask=5), "r") == ("r", "rx", [])


@pytest.mark.parametrize(
    "entries, need, told",
    [
        (acl(named=7, mask=4, group=4), "rw", ("rw", "rw", [])),  # a file to read and write
        (acl(named=7, mask=4, group=4), "x", ("rx", "rx", [])),  # a folder to search
        (acl(named_group=7, mask=0, group=0), "rx", ("rx", "rx", [(GROUP, 0, MY_GROUP)])),
    ],
)
def test_the_setfacl_adds_no_bit_the_mask_kept_from_the_user(entries, need, told):
    """A named rwx under a mask of r--, needing rw (or x): it was rwx, which let it write (or
    write in a folder) though it may read alone now; now what it may do now and ``need``."""
    assert change(entries, need) == told


def test_the_setfacl_sets_the_mask_and_keeps_each_other_entry_to_what_it_may_do_now():
    """A user rwx and the file's group rw- under a mask of r--: the mask this user's entry
    needs (rw-) keeps them to r--, which is what they may do now (without it setfacl made the
    mask rwx: the other user wrote)."""
    entries = [*acl(named=0, group=6, mask=4), (USER, 7, 1234)]
    assert change(entries, "r") == ("r", "r", [])  # the mask unwidened: no other set
    assert change(entries, "rw") == ("rw", "rw", [(GROUP_OBJ, 4, ANY), (USER, 4, 1234)])
    assert change(acl(other=4, group=6, mask=7), "r") == ("r", "rwx", [])  # (no mask to widen)


def test_a_file_s_acl_is_read_as_written(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    path.chmod(0o640)
    assert access_acl(path) is None  # its mode alone
    deny_by_acl(path, ME, allowed=5)
    assert sorted(access_acl(path)) == sorted(
        [(OWNER, 6, ANY), (USER, 5, ME), (GROUP_OBJ, 4, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)]
    )
