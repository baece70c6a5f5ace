"""The fix :func:`loftup.read_refusal.read_refused` gives for a file this user may not read is
for the class of users this one is of for the file (its owner, in its group, another), where it
came from the file's owner alone: "chmod a+r" of a file that a group's g+r would open, "chmod a+r"
again of one whose mode lets this user read it already (an ACL refuses it, or a network file
system, a security module), "chmod u+r" of one this user owns and may read by its mode, and
"run as root". Run where modes apply (tests/file_modes.py); another user's files as root only."""

from __future__ import annotations

import errno
import os
import re
import stat

import pytest

from as_nobody import deny_by_acl
from file_modes import others, where_modes_apply

_READ = """
from file_modes import told
from loftup.read_refusal import read_refused
path = {path!r}
result = [told(lambda: open(path).read()), str(read_refused(path))]
"""


@pytest.mark.parametrize("my_group, bit", [(True, "g"), (False, "o")], ids=["group", "other"])
def test_another_users_file_is_told_the_chmod_that_lets_this_user_read_it(tmp_path, my_group, bit):
    """A file of mode 600 of another user's whose group is this user's was told "chmod a+r"
    (readable by the world where g+r would do); the fix names the bit of this user's class,
    and that chmod, done by the owner (here root, in this process), lets this user read it."""
    path = tmp_path / "record.json"
    path.write_text("{}")
    owner = others(path, my_group=my_group)
    read, said = where_modes_apply(_READ.format(path=str(path)))
    assert read.startswith("PermissionError: ")
    whose = "is in its group, which" if my_group else "is not in its group, and others"
    assert f"{whose} may not read it); have {owner} make it readable (chmod {bit}+r {path}), " \
        f"or run as {owner}" in said, said  # fmt: skip
    path.chmod(path.stat().st_mode | {"g": stat.S_IRGRP, "o": stat.S_IROTH}[bit])
    assert where_modes_apply(_READ.format(path=str(path))) == ["none", "None"]


def test_a_file_refused_by_an_acl_is_told_its_setfacl_no_chmod(tmp_path):
    """Another user's file of mode 644 with an ACL that refuses this user was "have OWNER make
    it readable for this user (chmod a+r PATH)", which changes nothing: the ACL decides, so
    the line says so (getfacl) and the setfacl that names this user, no chmod."""
    path = tmp_path / "image.png"
    path.write_bytes(b"x")
    owner = others(path, 0o644)
    deny_by_acl(path, os.geteuid())
    read, said = where_modes_apply(_READ.format(path=str(path)))
    assert read.startswith("PermissionError: ")
    assert f"{path}: permission denied (mode -rw-r--r--, owner {owner}, group " in said, said
    me = re.search(
        r", and an ACL, which decides for this user, (\S+), whatever the mode says: ", said
    )
    assert me, said
    assert (
        f"getfacl {path}); have {owner} let {me[1]} read it (setfacl -m u:{me[1]}:r,m::r {path})"
        in said
    )
    assert "chmod" not in said


def _refused_by_the_system(monkeypatch, path, code: int) -> None:
    """``os.open`` of ``path`` raises the PermissionError of ``code`` (as a system that
    refuses it for a reason other than its mode would); of any other file, opens it."""
    real_open = os.open

    def refusing_open(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(code, os.strerror(code), str(path))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM], ids=["EACCES", "EPERM"])
def test_an_own_file_its_mode_lets_this_user_read_is_not_told_to_chmod_it(
    tmp_path, monkeypatch, code
):
    """A file of this user's own, mode 644, that the system refuses all the same (NFS's
    root_squash, SELinux, macOS's privacy settings: EPERM) was "(mode -rw-r--r--: this user
    ... owns it and may not read it); make it readable: chmod u+r", which contradicts its
    mode and changes nothing. The refusal is the system's: os.open made to refuse this file."""
    from loftup.read_refusal import read_refused

    path = tmp_path / "own.png"
    path.write_bytes(b"x")
    path.chmod(0o644)
    _refused_by_the_system(monkeypatch, path, code)
    said = str(read_refused(path, PermissionError(code, os.strerror(code), str(path)), "image"))
    assert said.startswith(f"cannot read image {path}: permission denied (mode -rw-r--r--")
    assert "though its mode lets this user" in said and f"(getfacl {path})" in said, said
    assert "chmod" not in said and "owns it and may not read it" not in said


def test_a_file_of_roots_is_never_told_to_run_as_root(tmp_path, monkeypatch):
    """A file of root's, mode 600, that another user may not read was "have root make it
    readable ..., or run as root". This process is made another user (uid 65534, no group of
    the file's) as the system sees it: its ids, and os.open refusing the file."""
    if os.geteuid() != 0:
        pytest.skip("only root makes a file of root's")
    from loftup.read_refusal import read_refused

    path = tmp_path / "root.png"
    path.write_bytes(b"x")
    path.chmod(0o600)
    for name, value in (("geteuid", 65534), ("getegid", 65534), ("getgroups", [])):
        monkeypatch.setattr(os, name, lambda value=value: value)
    _refused_by_the_system(monkeypatch, path, errno.EACCES)
    said = str(read_refused(path))
    assert said.endswith(f"have root make it readable (chmod o+r {path})"), said
    assert "run as" not in said
