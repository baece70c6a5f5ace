"""The setfacl a refusal advises for another's file with an ACL, done as setfacl does it
(tests/as_nobody.py's setfacl_advised: the mask recalculated as the union of the entries it
limits unless the command sets it): this user may then do what it needs, and no more, and
every other user no more than before. Advised as "setfacl -m u:USER:PERMS", it let setfacl
widen the mask, and with it each user the ACL names and the file's group; PERMS held the bits
the mask had kept from this user ("rwx" for a reader). Runs as other users (root only)."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from as_nobody import NOBODY, as_nobody, deny_by_acl, setfacl_advised
from loftup.errors import LoftUpError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_mark import MARK
from loftup.read_refusal import mode_refuses, read_refused

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)

OTHER = 4242  # a user the ACL names rwx, which its mask keeps to r--
MEMBER = 4343  # a user in the file's group (root's), which the ACL gives rw-, masked to r--


@pytest.fixture
def folder():
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


def _reading(path: Path):
    def read():
        try:
            path.read_bytes()
        except PermissionError as e:
            raise read_refused(path, e) from None

    return read


def _writing(path: Path):
    def write():
        with open(path, "ab"):
            pass

    return write


def _refusal(path: Path, need: str):
    def refuse():
        raise LoftUpError(mode_refuses(path, path.stat(), need))

    return refuse


def test_the_setfacl_for_a_reader_lets_no_other_user_the_acl_names_write(folder):
    """user:4242:rwx, user:nobody:---, group::rw-, mask::r--: the advised "setfacl -m
    u:nobody:r" made the mask rwx, and 4242 and the file's group could write."""
    mask = folder / "mask.png"
    mask.write_bytes(b"a mask")
    mask.chmod(0o664)
    deny_by_acl(mask, NOBODY, allowed=0, mask=0o4, others={OTHER: 0o7})
    assert as_nobody(_writing(mask), OTHER).startswith("PermissionError: ")
    said = as_nobody(_reading(mask))
    assert f"(setfacl -m u:nobody:r,m::r {mask})" in said, said
    setfacl_advised(said)
    assert as_nobody(_reading(mask)) == "taken"
    assert as_nobody(_writing(mask), OTHER).startswith("PermissionError: ")
    assert as_nobody(_writing(mask), MEMBER, gid=0).startswith("PermissionError: ")


def test_the_setfacl_for_a_writer_keeps_each_other_entry_to_what_it_may_do_now(folder):
    """user:nobody:rwx under a mask of r--, needing rw: it was "u:nobody:rwx" (x the mask had
    kept from it); the mask it needs (rw-) would let 4242 and the file's group write too, so
    the setfacl sets them to r--, what they may do now."""
    lock = folder / "lock"
    lock.write_bytes(b"")
    lock.chmod(0o664)
    deny_by_acl(lock, NOBODY, allowed=0o7, mask=0o4, others={OTHER: 0o7})
    said = as_nobody(_refusal(lock, "rw"))
    assert f"(setfacl -m u:nobody:rw,m::rw,u:{OTHER}:r,g::r {lock}; the others it sets " in said
    setfacl_advised(said)
    assert as_nobody(_writing(lock)) == "taken"
    assert as_nobody(_writing(lock), OTHER).startswith("PermissionError: ")
    assert as_nobody(_writing(lock), MEMBER, gid=0).startswith("PermissionError: ")


def test_the_setfacl_to_search_a_folder_lets_this_user_make_no_files_there(folder):
    """user:nobody:rwx under a mask of r--, needing x: it was "u:nobody:rwx", which let this
    user make files in the folder besides searching it."""
    shared = folder / "shared"
    shared.mkdir(mode=0o740)
    (shared / "a.png").write_bytes(b"x")
    deny_by_acl(shared, NOBODY, allowed=0o7, mask=0o4)
    said = as_nobody(_refusal(shared, "x"))
    assert f"(setfacl -m u:nobody:rx,m::rx {shared})" in said, said
    setfacl_advised(said)
    assert as_nobody(lambda: (shared / "a.png").stat()) == "taken"
    assert as_nobody(_writing(shared / "new")).startswith("PermissionError: ")


def test_the_setfacl_r_for_a_reader_of_masks_lets_it_and_the_folder_s_group_write_nothing(
    folder,
):
    """A sequence folder (drwxr-x---) whose ACL names this user rwx under a mask of ---: it was
    "setfacl -R -m u:nobody:rwX", which let this user make masks there, and the mask setfacl
    made of it rwx, which let the folder's group (r-x under ---) read it and write in it."""
    masks, bear = folder / "masks", folder / "masks" / "bear"
    bear.mkdir(parents=True)
    (bear / "00000.png").write_bytes(b"a mask")
    (masks / MARK).write_text(json.dumps({"sequences": ["bear"]}))
    bear.chmod(0o750)
    deny_by_acl(bear, NOBODY, allowed=0o7, mask=0)
    said = as_nobody(lambda: complete_masks(masks))
    assert (
        f"(setfacl -m u:nobody:rx,m::rx,g::--- {bear} && setfacl -R -m u:nobody:rX,m::rX {bear}; "
        "the others it sets keep what they may do now)"
    ) in said, said
    setfacl_advised(said)
    assert as_nobody(lambda: (complete_masks(masks), (bear / "00000.png").read_bytes())) == "taken"
    assert as_nobody(_writing(bear / "00001.png")).startswith("PermissionError: ")
    assert as_nobody(lambda: os.listdir(bear), MEMBER, gid=0).startswith("PermissionError: ")
