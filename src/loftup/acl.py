"""A file's POSIX access ACL (Linux's ``system.posix_acl_access``), read without getfacl, for a
refusal's advice (:mod:`loftup.read_refusal`): where a file has one, its entries decide what a
user other than its owner may do, and a chmod of its group's bits changes its mask, not the
entry that names the user. Imports nothing of loftup."""

from __future__ import annotations

import os
import struct

_XATTR = "system.posix_acl_access"
_USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x02, 0x04, 0x08, 0x10, 0x20
_BITS = (("r", 4), ("w", 2), ("x", 1))


def access_acl(path: str | os.PathLike) -> list[tuple[int, int, int]] | None:
    """``path``'s access ACL as (tag, permission bits, id) entries; None where it has none (its
    mode alone decides), or the system keeps no extended attributes (macOS, Windows)."""
    try:
        blob = os.getxattr(path, _XATTR)
    except (OSError, AttributeError):
        return None
    if len(blob) < 4 or (len(blob) - 4) % 8:
        return None
    return [struct.unpack_from("<HHI", blob, at) for at in range(4, len(blob), 8)]


def _applying(entries, uid: int, gid: int, groups: set[int]) -> tuple[list[int], bool]:
    """The permission bits of the entries of ``entries`` that apply to the user ``uid`` (not
    the file's owner; ``groups``: its groups, ``gid``: the file's), as POSIX.1e picks them: the
    entry naming it, else its groups' (any of which may grant), else others'; and whether the
    ACL's mask limits them (all but others')."""
    named = [p for tag, p, who in entries if tag == _USER and who == uid]
    group_of = {_GROUP_OBJ: lambda who: gid, _GROUP: lambda who: who}  # (the file's; named)
    grouped = [p for tag, p, who in entries if tag in group_of and group_of[tag](who) in groups]
    if named or grouped:
        return named or grouped, True
    return [p for tag, p, _ in entries if tag == _OTHER], False


def acl_allows(entries, uid: int, gid: int, groups: set[int], need: str) -> bool:
    """Whether an ACL of ``entries`` lets the user ``uid`` (as for :func:`_applying`) do all of
    ``need`` ("wx"): then what refuses it is no ACL."""
    perms, masked = _applying(entries, uid, gid, groups)
    mask = next((p for tag, p, _ in entries if tag == _MASK), 7) if masked else 7
    wanted = sum(b for c, b in _BITS if c in need)
    return any(p & mask & wanted == wanted for p in perms)


def setfacl_perms(entries, uid: int, gid: int, groups: set[int], need: str) -> str:
    """The permissions ("rwx", "r-x" as setfacl takes them: "rx") that the user ``uid`` (as
    for :func:`_applying`) needs in an entry naming it, so as to do ``need`` ("wx") with a file
    of ACL ``entries`` and keep what it may do now (setfacl -m then widens the mask to it)."""
    bits = 0
    for p in _applying(entries, uid, gid, groups)[0]:
        bits |= p
    return "".join(c for c, b in _BITS if bits & b or c in need)
