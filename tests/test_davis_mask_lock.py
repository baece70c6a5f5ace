"""`loftup eval davis --save-masks DIR`'s lock is a regular file's, DIR/.loftup-eval-davis-masks
.lock: NFS passes a file's lock to its server, so that runs on two machines see each other; a
folder's lock (what a run held before) stays on the machine that took it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loftup.errors import UsageError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_staging import MaskStaging

fcntl = pytest.importorskip("fcntl")

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"


def _run(masks, names):
    staging = MaskStaging(str(masks), str(masks.parent / "davis"), names)
    for name in names:
        (staging.path / name / "00000.png").write_bytes(b"a mask")
    return staging


def test_a_run_holding_the_lock_file_elsewhere_refuses_a_second_one(tmp_path):
    """A run on another machine of an NFS DIR holds the lock file's lock (on the server; here,
    another open of the file): the second run went on, and its start removed the first one's
    staging folder (its masks). Its file is one of DIR's own, not a file no run wrote."""
    masks = tmp_path / "masks"
    _run(masks, ["bear"]).publish({})
    fd = os.open(masks / LOCK, os.O_RDWR | os.O_CREAT)  # the other machine's run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="is being written by another loftup eval davis"):
            MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"])
        with pytest.raises(Exception, match="is being written by a loftup eval davis"):
            complete_masks(masks)
    finally:
        os.close(fd)
    staging = _run(masks, ["bear"])  # that run ended
    fd = os.open(masks / LOCK, os.O_RDWR)  # and this one's lock is seen there
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    staging.publish({})
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear"]
    assert complete_masks(masks) == ["bear"]


def test_a_refused_run_leaves_no_lock_file_in_a_folder_of_other_files(tmp_path):
    """The lock file a run made is removed at its end where DIR holds no masks."""
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds files that no loftup eval davis run wrote"):
        MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"])
    assert sorted(p.name for p in masks.iterdir()) == ["notes.txt"]


def test_a_ctrl_c_as_a_run_takes_the_lock_leaves_the_folder_unlocked(tmp_path, monkeypatch):
    """Ctrl-C as a run locked DIR itself, after its lock file's lock was taken: that
    descriptor was never closed, and every later run in the process (Jupyter) was refused
    until it was restarted."""
    import loftup.eval.mask_lock as mask_lock

    masks = tmp_path / "masks"
    _run(masks, ["bear"]).publish({})
    flock = mask_lock._flock

    def pressed_on_the_folder(fd, exclusive):
        if os.path.samestat(os.fstat(fd), os.stat(masks)):
            raise KeyboardInterrupt
        flock(fd, exclusive)

    monkeypatch.setattr(mask_lock, "_flock", pressed_on_the_folder)
    with pytest.raises(KeyboardInterrupt):
        _run(masks, ["bear"])
    monkeypatch.undo()
    _run(masks, ["bear"]).publish({})  # the next run in the same process
    assert complete_masks(masks) == ["bear"]


def test_the_lock_file_is_readable_by_everyone_whatever_the_umask(tmp_path, monkeypatch):
    """Made under umask 077 it was 0600, and stayed so once DIR was shared: a member's reader
    could not open it and read the masks unlocked while a run swapped them."""
    import loftup.eval.mask_lock as mask_lock

    monkeypatch.setattr(mask_lock, "FILE_MODE", 0o600)  # (what umask 077 gives)
    masks = tmp_path / "masks"
    _run(masks, ["bear"]).publish({})
    assert (masks / LOCK).stat().st_mode & 0o644 == 0o644


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
def test_a_member_refused_the_lock_file_is_told_whose_it_is_and_what_they_run():
    """DIR shared after its owner's first run: a member's run was refused with "could not be
    written (Permission denied ...); choose another folder", though DIR was theirs to write.
    Its owner's next run gives the file the group's bits."""
    import shutil
    import tempfile

    from loftup.errors import LoftUpError

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks = base / "masks"
        _run(masks, ["bear"]).publish({})
        os.chmod(masks / LOCK, 0o600)
        os.chmod(masks, 0o777)  # shared with all, the lock file left as it was
        os.seteuid(65534)
        try:
            with pytest.raises(LoftUpError) as info:
                _run(masks, ["bear"])
        finally:
            os.seteuid(0)
        assert str(info.value) == (
            f"--save-masks {masks}: this user may not write its lock file {masks / LOCK}, which "
            "every run into it locks: permission denied (mode -rw-------, owner root, group "
            "root: this user, nobody, is in its group, which may not read and write it); have "
            f"root make it readable and writable (chmod g+rw {masks / LOCK}); or, for the whole "
            f"folder, chmod -R g+rwX {masks} (the owner's next run into it mends the lock file "
            "too); or choose another folder"
        )
        _run(masks, ["bear"]).publish({})  # the owner's next run
        assert (masks / LOCK).stat().st_mode & 0o064 == 0o064
    finally:
        shutil.rmtree(base)


def test_a_lock_file_that_is_a_link_or_a_folder_is_named_with_its_fix(tmp_path):
    """A link (or a folder) in the lock file's place: complete_masks and reading_masks raised
    OSError(ELOOP) tracebacks, and a run said "could not be written; choose another folder"."""
    from loftup.errors import LoftUpError
    from loftup.eval.mask_lock import reading_masks

    masks = tmp_path / "masks"
    _run(masks, ["bear"]).publish({})
    for kind in ("link", "folder"):
        (masks / LOCK).unlink()
        if kind == "link":
            (masks / LOCK).symlink_to(tmp_path / "elsewhere")
        else:
            (masks / LOCK).mkdir()
        for reads in (lambda: _run(masks, ["bear"]), lambda: complete_masks(masks),
                      lambda: reading_masks(masks).__enter__()):  # fmt: skip
            with pytest.raises(LoftUpError, match=f"{LOCK} is a {kind}, not the regular file"):
                reads()
        if kind == "folder":
            (masks / LOCK).rmdir()
            (masks / LOCK).touch()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="makes a FIFO")
def test_a_fifo_in_the_lock_files_place_is_named_with_its_fix_not_waited_on(tmp_path):
    """A FIFO in the lock file's place: a reader's open of it (complete_masks, reading_masks)
    waited for a writer, for ever. Each is refused at once, the FIFO named with its fix, as a
    link is (in a fresh process, which the timeout ends where it waits)."""
    from processes import run_python

    masks = tmp_path / "masks"
    _run(masks, ["bear"]).publish({})
    (masks / LOCK).unlink()
    os.mkfifo(masks / LOCK)
    code = (
        "import sys\n"
        "from loftup.errors import LoftUpError\n"
        "from loftup.eval.mask_folder import complete_masks\n"
        "from loftup.eval.mask_lock import reading_masks\n"
        "for reads in (lambda: complete_masks(sys.argv[1]),\n"
        "              lambda: reading_masks(sys.argv[1]).__enter__()):\n"
        "    try:\n"
        "        reads()\n"
        "    except LoftUpError as e:\n"
        "        print(e)\n"
    )
    said = run_python(code.replace("sys.argv[1]", repr(str(masks))), timeout=60)
    assert said.returncode == 0, said.stderr
    fix = (
        f"{masks / LOCK} is a special file, not the regular file that loftup eval davis "
        f"--save-masks runs lock: remove it (rm {masks / LOCK}) and run again"
    )
    assert said.stdout.splitlines() == [fix, fix]
