"""User and group names in a refusal are escaped where the message is made (a name holding a
newline broke the one-line message: "owner own", then "er, group ..." on a line of its own),
and those inside an advised command quoted as bash reads them (a setfacl's ``u:NAME:rw``, a
chgrp's group), so that the command pasted names the same user or group. The names come from
``pwd.getpwuid`` and ``grp.getgrgid``, made here to answer names no system would hand out: what
is tested is loftup's formatting of them."""

from __future__ import annotations

import grp
import os
import pwd
from types import SimpleNamespace

import pytest

from as_nobody import NOBODY, as_nobody, deny_by_acl
from loftup.eval.mask_mark import MARK
from loftup.read_refusal import advised_path, mode_refuses
from pasted import bash, needs_bash, pasted
from test_davis_mask_folder_permissions import masks_folder

ME = os.geteuid() + 1 if hasattr(os, "geteuid") else 1  # (this process, as the code sees it)
OTHER = 4242  # a user an ACL names


def _named(monkeypatch, users: dict[int, str], group: str) -> None:
    """``pwd.getpwuid`` answers ``users``' names (a KeyError for any other, as for a user with
    no name), ``grp.getgrgid`` ``group`` for every group."""

    def getpwuid(uid):
        return SimpleNamespace(pw_name=users[uid])

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(grp, "getgrgid", lambda gid: SimpleNamespace(gr_name=group))


def _as_another(monkeypatch) -> None:
    """This process is user :data:`ME`, in no group of the test's files, as the code sees it."""
    for name, value in (("geteuid", ME), ("getegid", 65533), ("getgroups", [])):
        monkeypatch.setattr(os, name, lambda value=value: value)


def test_a_mode_refusal_escapes_the_owner_group_and_user_names(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    path.write_text("{}")
    path.chmod(0o600)
    st = path.stat()
    _named(monkeypatch, {st.st_uid: "own\ner", ME: "me\x1b[2J"}, "gr\noup")
    _as_another(monkeypatch)
    said = mode_refuses(path, st, "r")
    run_as = ", or run as own\\ner" if st.st_uid != 0 else ""
    assert said == (
        "permission denied (mode -rw-------, owner own\\ner, group gr\\noup: this user, "
        "me\\x1b[2J, is not in its group, and others may not read it); have own\\ner make it "
        f"readable (chmod o+r {advised_path(path)}){run_as}"
    )


@needs_bash
def test_a_setfacl_quotes_the_names_of_its_entries_for_bash(tmp_path, monkeypatch):
    """user:ME:rwx and user:4242:rwx under a mask of r--, ME needing rw: the setfacl names ME
    and sets 4242 back to r--; pasted into bash, its entries name the very users."""
    path = tmp_path / "lock"
    path.write_bytes(b"")
    path.chmod(0o664)
    deny_by_acl(path, ME, allowed=0o7, mask=0o4, others={OTHER: 0o7})
    st = path.stat()
    _named(monkeypatch, {st.st_uid: "own\ner", ME: "me\nx", OTHER: "it's\nthem"}, "gr\noup")
    _as_another(monkeypatch)
    said = mode_refuses(path, st, "rw")
    assert "\n" not in said and "this user, me\\nx, whatever the mode says" in said, said
    command = pasted(said, "setfacl -m ")
    entries = command.removeprefix("setfacl -m ")
    assert bash(f"printf %s {entries}").stdout == b"u:me\nx:rw,m::rw,u:it's\nthem:r,g::r"


@pytest.fixture
def masks():
    yield from masks_folder()


@needs_bash
@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_the_chgrp_into_dir_s_group_quotes_the_group_for_bash(masks, monkeypatch):
    """A member of DIR's group outside the mark's is told the chgrp into DIR's group: the
    group's name escaped where said, quoted for bash in the chgrp."""
    from loftup.eval.mask_folder import complete_masks

    mark = masks / MARK
    os.chown(masks, 0, NOBODY)
    masks.chmod(0o750)
    os.chown(mark, 0, 0)
    mark.chmod(0o600)
    _named(monkeypatch, {0: "ro\not", NOBODY: "no\nbody"}, "it's\ngroup")
    said = as_nobody(lambda: complete_masks(masks))
    assert "\n" not in said and said.endswith(
        f"(chmod o+r {mark}); or, to share it with {masks}'s group it's\\ngroup, which this "
        f"user is in, have ro\\not run chgrp $'it\\'s\\ngroup' {mark} && chmod g+r {mark}, and "
        f"chmod g+s {masks} (new files there then take its group)"
    ), said
    group = pasted(said, "chgrp ").removeprefix("chgrp ")
    assert bash(f"printf %s {group}").stdout == b"it's\ngroup"
