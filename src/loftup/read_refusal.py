"""A file loftup must read that this user may not read, said in one line with what refuses it
and the fix (:func:`read_refused`): a folder on the way that may not be searched, or the
file's own mode, with its owner and the smallest chmod. Each reader said something else (PIL
a file to re-download, h5py "not a MATLAB v7.3 (HDF5) file", a JSON record "delete it").

Imports nothing of loftup but its errors, :mod:`loftup.escaping` and :mod:`loftup.listing`,
so that every reader (data, eval, the records of runs) can say it without knowing the others.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import PathPermissionError
from .escaping import printable, shell_quoted
from .listing import permission_denied


def read_refused(
    path: str | os.PathLike,
    error: BaseException | None = None,
    what: str = "",
    kind: type[PathPermissionError] = PathPermissionError,
    another: str = "",
) -> PathPermissionError | None:
    """The error (a ``kind``, :class:`PathPermissionError` or a subclass) for ``path``, a file
    of the user's (``what`` it is: "image"), that this user may not read: "cannot read PATH:"
    what refuses it and the fix, one line. What refuses it is a folder on the way that may not
    be searched (:func:`loftup.listing.permission_denied`), or the file's own mode (another
    user's of mode 600, one of 000): its mode and owner, and the smallest chmod (or the user to
    run as), or, where the mode lets this user read it, what else may refuse it (an ACL).
    None where nothing refuses it for permission, for the caller to say what else is wrong.
    ``error``: what reading it raised (None where it is no permission error, EACCES or EPERM:
    not looked at further); without it, the file is opened to see (scipy's loadmat said
    "Reader needs file name or open file-like object" of a file it may not open). Each reader
    said something else: h5py "not a MATLAB v7.3 (HDF5) file", PIL a file to re-download, a
    world's scene "the world is damaged; delete the folder". ``another``: where ``path`` is loftup's
    own output in a folder the user chose, the option that chose it ("--out"), offered as the
    other fix ("; or choose another --out"); left out for an input, which only its fix mends.
    Its paths are escaped here (:func:`~loftup.escaping.printable`), those of its commands in
    bash's quotes (:func:`advised_path`): nothing in it is escaped again as it is said, and a
    command pasted from it names the file."""
    if error is not None and not (
        isinstance(error, PermissionError)
        or getattr(error, "errno", None) in (errno.EACCES, errno.EPERM)
    ):
        return None
    path = os.path.expanduser(os.fspath(path))
    blocked = folder_refusal(path)
    why = blocked or _mode_refuses(path)
    if why is None:
        return None
    other = f"; or choose another {another}" if another else ""
    # a link's mode is its target's, which the chmod names (a Hugging Face cache snapshot's
    # file links to its blob): said, since `ls -l` of the link shows lrwxrwxrwx
    link = not blocked and os.path.islink(path)
    link = f" (a link to {printable(os.path.realpath(path))})" if link else ""
    return kind(f"cannot read {f'{what} ' if what else ''}{printable(path)}{link}: {why}{other}")


def folder_refusal(path: str | os.PathLike) -> str:
    """Why ``path``, a user's, cannot be looked at where a folder on the way may not be
    searched (:func:`loftup.listing.permission_denied`: the folder and the fix), escaped for the
    line it is said in (:func:`~loftup.escaping.printable`); "" where none refuses it: the first
    reason each refusal of a path gives, before the path's own mode."""
    return printable(permission_denied(path) or "")


def _mode_refuses(path: str) -> str | None:
    """Why ``path``, a file this user may not open for reading, cannot be read, with the fix;
    None where it opens (a pipe is not waited on) or fails for another reason. The fix is for
    the class of users that this one is of for it (its owner, in its group, another): the smallest
    chmod that lets that class read it (``chmod u+r``, ``g+r``, ``o+r``; of a link, of the file it
    links to, whose mode it is: a cache snapshot's blob), or, where its mode
    lets that class read it already, what else refuses (an ACL, a security module, a network
    file system's mapping): no chmod would change a thing there."""
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
        return None
    except PermissionError:
        pass
    except OSError:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return mode_refuses(os.path.realpath(path) if os.path.islink(path) else path, st, "r")


#: What a file's mode must let a user do, for :func:`mode_refuses`: its bits, what the user
#: may not do, and what the file is made
_NEEDS = {
    "r": ("read", "readable"),
    "rw": ("read and write", "readable and writable"),
    "wx": ("make files in", "writable"),
    "rx": ("read and search", "readable and searchable"),
    "w": ("write to", "writable"),
    "x": ("search", "searchable"),
}
_BIT = {"r": stat.S_IRUSR, "w": stat.S_IWUSR, "x": stat.S_IXUSR}


def mode_refuses(path: str | os.PathLike, st: os.stat_result, need: str, tree: str = "") -> str:
    """Why this user may not do ``need`` ("r": read, "rw": read and write; of a folder, "wx":
    make files in, "rx": read and search, "w": write to, "x": search) with ``path`` (``st``: its stat), with
    the fix: "permission denied (its mode, and its owner and group where another's: which class
    of users this one is of for it)", then the smallest chmod that lets that class (its owner,
    its group, others) do it (``chmod g+rw``), or, where its mode lets that class do it already,
    what else refuses (an ACL, a security module, a network file system's mapping, the kernel's
    protection of another's file in a sticky folder): no chmod would change a thing there.
    Where another's file has an ACL, which decides for this user whatever its mode says, the
    setfacl that names this user instead (a chmod of an ACL's file sets its mask). The path in
    a command is absolute (:func:`advised_path`): its owner runs it elsewhere.
    ``tree``: why all that the folder ``path`` holds needs it too ("since a scorer reads each
    mask in it"), said with the fix, which is then ``chmod -R`` of all of ``need`` (what it
    holds may lack any bit; ``X`` for ``x``: search on folders, no files made executable), and
    who else must run it: the owners of what it holds, where others' (only a file's owner may
    change its mode), said whatever it holds (:func:`_others_too`)."""
    verb, made = _NEEDS[need]
    me, quoted, who = _user(euid()), advised_path(path), _class_of(st)
    owner = _user(st.st_uid)
    said = f"mode {stat.filemode(st.st_mode)}"
    if who != "u":
        said += f", owner {owner}, group {_group(st.st_gid)}"
    run_as = f", or run as {owner}" if st.st_uid != 0 else ""  # never "run as root"
    acl = _setfacl(path, st, need, tree)
    if acl:
        because, others = (f", {tree}", _others_too(st, "ACL")) if tree else ("", "")
        return (
            f"permission denied ({said}, and an ACL, which decides for this user, {me}, whatever "
            f"the mode says: getfacl {quoted}); have {owner} let {me} {verb} it{because} "
            f"({acl}){others}{run_as}"
        )
    missing = "" if acl == "" else _missing(st, need, who)  # (an ACL lets: something else)
    if not missing:
        sticky = ", the kernel's fs.protected_regular (another's file in a sticky folder)"
        lets, acl_too = ("ACL", "") if acl == "" else ("mode", f"an ACL (getfacl {quoted}), ")
        return (
            f"permission denied ({said}), though its {lets} lets this user, {me}, {verb} it; "
            f"something else refuses: {acl_too}a security module (SELinux, AppArmor, macOS's "
            "privacy settings), or a network file system that maps this user to another (NFS's "
            f"root_squash){sticky if need == 'rw' else ''}"
        )
    it, chmod, others = "it", f"chmod {who}+{missing} {quoted}", ""
    if tree:
        it, made = "it and all it holds", f"{made}, {tree}"
        chmod = f"chmod -R {who}+{need.replace('x', 'X')} {quoted}"
        others = _others_too(st)
    if who == "u":  # (others after a ";": a "," would stick to the path of a pasted chmod)
        return (f"permission denied ({said}: this user, {me}, owns it and may not {verb} it); "
                f"make {it} {made}: {chmod}{others.replace(',', ';', 1)}")  # fmt: skip
    whose = "is in its group, which" if who == "g" else "is not in its group, and others"
    return (
        f"permission denied ({said}: this user, {me}, {whose} may not {verb} it); have {owner} "
        f"make {it} {made} ({chmod}){others}{run_as}"
    )


def chmod_advice(path: str | os.PathLike, st: os.stat_result, need: str) -> str:
    """The chmod that lets this user do ``need`` (as for :func:`mode_refuses`) with ``path``
    (``st``: its stat), for the class of users this one is of for it: "chmod u+w PATH" where
    its own, "have OWNER run chmod g+w PATH" where another's (of another's with an ACL, "have
    OWNER run setfacl -m u:USER:rwx,m::rwx PATH"); "" where its mode lets that class do it already
    (a security module, a read-only disk refuses: no chmod would change a thing)."""
    acl = _setfacl(path, st, need)
    if acl is not None:
        return acl and f"have {_user(st.st_uid)} run {acl}"
    who = _class_of(st)
    missing = _missing(st, need, who)
    if not missing:
        return ""
    chmod = f"chmod {who}+{missing} {advised_path(path)}"
    return chmod if who == "u" else f"have {_user(st.st_uid)} run {chmod}"


def advised_path(path: str | os.PathLike) -> str:
    """``path`` as a command advised to a user names it: absolute, ``~`` expanded (this user's
    home) and quoted for a shell, so that it names the same file wherever, and by whomever, it
    is run (``'~/masks'`` quoted never expands; ``masks`` is another folder in another's); a
    name with a newline or another character a message escapes in bash's ``$'...'``
    (:func:`~loftup.escaping.shell_quoted`), which names it as printed (single quotes around
    the escapes named a file that does not exist). A message that holds it escapes its other
    paths itself (:func:`~loftup.escaping.printable`): escaped whole, its backslashes are
    doubled."""
    return shell_quoted(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _setfacl(path: str | os.PathLike, st: os.stat_result, need: str, tree: str = "") -> str | None:
    """The setfacl that lets this user do ``need`` with ``path``, another's file with an ACL
    (:mod:`loftup.acl`): its entries, not its mode's bits, decide; "" where they let this user
    already (something else refuses); None where it has none, or it is this user's own (an
    owner's permissions are its mode's). It sets the mask too, and each other entry that the
    wider mask would let do more (:func:`loftup.acl.setfacl_change`): a setfacl of this user's
    entry alone recalculates the mask, and lets every user and group the ACL names do all
    that the mask had kept from them. ``tree``: ``-R`` of its entry and mask (``X``: search on
    folders), after a setfacl of ``path`` alone that sets the others, where any: what it holds
    has entries of its own."""
    from .acl import access_acl, acl_allows, entry_of, name_of, perms_of, setfacl_change

    entries = access_acl(path) if st.st_uid != euid() else None
    if not entries:
        return None
    me, groups = euid(), my_groups()
    if acl_allows(entries, me, st.st_gid, groups, need):
        return ""
    bits, mask, others = setfacl_change(entries, me, st.st_gid, groups, need)
    quoted = advised_path(path)

    def mine(x: str = "x") -> str:  # (X: search on folders alone, of a tree)
        entry, limit = (perms_of(b).replace("x", x) for b in (bits, mask))
        return f"u:{shell_quoted(name_of(me) or me)}:{entry},m::{limit}"

    kept = "".join(f",{entry_of(tag, who)}:{perms_of(p)}" for tag, p, who in others)
    command = f"setfacl -m {mine()}{kept} {quoted}" if kept or not tree else ""
    if tree:  # (the others set of ``path`` alone, first: what it holds has ACLs of its own)
        command += f"{' && ' if command else ''}setfacl -R -m {mine('X')} {quoted}"
    return command + ("; the others it sets keep what they may do now" if kept else "")


def _others_too(st: os.stat_result, what: str = "mode") -> str:
    """Who else must run a ``chmod -R`` (``what``: "mode"; a ``setfacl -R``: "ACL") of a folder
    (``st``: its stat) besides its owner, said after it: the owners of what it holds that are
    others (only a file's owner may change its mode or ACL: its owner's ``chmod -R`` fails on
    them, "Operation not permitted"). Said whatever the folder holds: the fix of a tree is
    advised to a user that may not read and search it, who cannot see whose files are there
    (a listing needs r, the stat of each entry x), and is said the more surely where others
    may make files in it (its group's or others' w)."""
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "have each user whose files it holds (others may make files in it)"
    else:
        who = "if it holds others' files, have each of their owners"
    return f", and {who} run the same, as only a file's owner may change its {what}"


def _missing(st: os.stat_result, need: str, who: str) -> str:
    """The bits of ``need`` ("rw") that ``st``'s mode gives not to class ``who`` ("u", "g",
    "o")."""
    shift = {"u": 0, "g": 3, "o": 6}[who]
    return "".join(c for c in need if not st.st_mode & (_BIT[c] >> shift))


def _class_of(st: os.stat_result) -> str:
    """Which of a file's modes applies to this user: "u" (its owner), "g" (in its group: the
    effective group or a supplementary one) or "o" (another)."""
    if st.st_uid == euid():
        return "u"
    return "g" if st.st_gid in my_groups() else "o"


def my_groups() -> set[int]:
    """The groups this process is in: its effective group and its supplementary ones (none
    where the system has no such ids: Windows)."""
    return {os.getegid(), *os.getgroups()} if hasattr(os, "getegid") else set()


def euid() -> int:
    """This process's effective user id (-1 where the system has none: Windows)."""
    return os.geteuid() if hasattr(os, "geteuid") else -1


def may(path: str | os.PathLike, mode: int) -> bool:
    """Whether this process may do ``mode`` (``os.R_OK | os.X_OK``, say) with ``path``, by its
    effective ids where the system checks those (what open() and mkdir() go by: a setuid run's
    own real ids would be the wrong user's)."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def owner_name(path: str | os.PathLike) -> str:
    """The name of the user ``path`` (not followed where a link) belongs to, as a message says
    it (escaped: :func:`_user`; ``uid NUMBER`` where that user has no name here; "its owner"
    where it cannot be looked at)."""
    try:
        uid = os.lstat(path).st_uid
    except OSError:  # (a folder this user may not search)
        return "its owner"
    return _user(uid)


def _user(uid: int) -> str:
    """The name of user ``uid`` as a message says it (:func:`~loftup.escaping.printable`: a
    name holding a newline broke the line), or ``uid NUMBER`` where it has none here."""
    from .acl import name_of

    return printable(name_of(uid) or f"uid {uid}")


def _group(gid: int) -> str:
    """The name of group ``gid`` as a message says it (as :func:`_user`), or ``gid NUMBER``
    where it has none here."""
    from .acl import name_of

    return printable(name_of(gid, user=False) or f"gid {gid}")
