"""A file's POSIX access ACL (Linux's ``system.posix_acl_access``), read without getfacl, for a
refusal's advice (:mod:`loftup.read_refusal`): where a file has one, its entries decide what a
user other than its owner may do, and a chmod of its group's bits changes its mask, not the
entry that names the user; and what a setfacl naming the user must set so that no one else may
do more (:func:`setfacl_change`). Imports nothing of loftup but :mod:`loftup.escaping`."""

from __future__ import annotations

import os
import struct

from .escaping import shell_quoted

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
    ``need`` ("wx"): then what refuses it is no ACL. (One entry must let it all: of two groups
    of its, one giving r and one w, neither lets it read and write.)"""
    perms, masked = _applying(entries, uid, gid, groups)
    mask = _mask(entries) if masked else 7
    wanted = _bits_of(need)
    return any(p & mask & wanted == wanted for p in perms)


def setfacl_change(entries, uid: int, gid: int, groups: set[int], need: str):
    """What a ``setfacl -m`` of a file of ACL ``entries`` must set so that the user ``uid`` (as
    for :func:`_applying`) may do ``need`` ("wx") and no one else may do more: (the bits of the
    entry naming it, the mask's, [(tag, bits, id) of each other entry to set]). Its entry's
    bits are what it may do now (its entries' as the mask limits them: an rwx under a mask of
    r-- is r--) and ``need``. The mask is set too, the old one widened by those bits: a setfacl
    -m given none recalculates it as the union of all entries it limits (the named users and
    groups, the file's group), which lets each do what the mask had kept from it. An entry the
    wider mask would let do more is set to what it may do now."""
    perms, masked = _applying(entries, uid, gid, groups)
    old = _mask(entries)
    bits = _bits_of(need)
    for p in perms:
        bits |= p & (old if masked else 7)
    mask = old | bits
    wider = mask & ~old
    limited = (_USER, _GROUP_OBJ, _GROUP)
    others = [
        (tag, p & old, who)
        for tag, p, who in entries
        if tag in limited and p & wider and not (tag == _USER and who == uid)
    ]
    return bits, mask, others


def perms_of(bits: int) -> str:
    """Permission ``bits`` as setfacl takes them: 5 "rx", 0 "---"."""
    return "".join(c for c, b in _BITS if bits & b) or "---"


def _bits_of(perms: str) -> int:
    return sum(b for c, b in _BITS if c in perms)


def _mask(entries) -> int:
    """The bits of the mask of ``entries``; where it has none (no named entries: the file's
    group's entry alone, which no mask then limits), all."""
    return next((p for tag, p, _ in entries if tag == _MASK), 7)


def entry_of(tag: int, who: int) -> str:
    """The entry of ``tag`` naming ``who`` as setfacl takes it, pasted into a shell: "u:bob",
    "g:staff", "g:" (the file's group); a name a shell would split or a message escape quoted
    (:func:`~loftup.escaping.shell_quoted`: "u:$'a\\nb'")."""
    if tag == _GROUP_OBJ:
        return "g:"
    user = tag == _USER
    return f"{'u' if user else 'g'}:{shell_quoted(name_of(who, user) or who)}"


def name_of(who: int, user: bool = True) -> str | None:
    """The name of user (or group) ``who``; None where it has none here (or the system keeps
    no such names: Windows)."""
    try:
        import grp
        import pwd

        return pwd.getpwuid(who).pw_name if user else grp.getgrgid(who).gr_name
    except (ImportError, KeyError):
        return None
