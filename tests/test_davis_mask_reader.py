"""What a reader of `loftup eval davis --save-masks DIR`'s masks (a scorer) checks first
(`complete_masks`): a path that is no masks folder, or one this user may not read, is said as
such, not passed and not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loftup.errors import LoftUpError, UsageError
from loftup.eval.mask_folder import complete_masks
from loftup.eval.mask_lock import reading_masks
from loftup.eval.mask_staging import MaskStaging

pytest.importorskip("fcntl")


def _published(masks: Path, names: list[str]) -> None:
    staging = MaskStaging(str(masks), str(masks.parent / "davis"), names)
    for name in names:
        (staging.path / name / "00000.png").write_bytes(b"a mask")
    staging.publish({})


def test_a_missing_folder_or_a_file_is_refused_naming_the_path(tmp_path):
    """A typo in DIR passed (None: masks made otherwise); a file gave NotADirectoryError."""
    (tmp_path / "afile").write_text("not masks")
    for path, what in [(tmp_path / "maks", "does not exist"), (tmp_path / "afile", "is no folder")]:
        with pytest.raises(LoftUpError) as info:
            complete_masks(path)
        assert f"{path} {what}" in str(info.value)
        assert "give the folder a loftup eval davis --save-masks run wrote" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
def test_a_folder_this_user_may_not_search_is_refused_naming_its_owner():
    """Another user's private DIR: a PermissionError traceback, raised again inside the
    handler of the first (naming the mark's owner needed the search refused too)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks = base / "masks"
        _published(masks, ["bear"])
        os.chmod(masks, 0o700)
        os.seteuid(65534)
        try:
            with pytest.raises(LoftUpError) as info:
                complete_masks(masks)
        finally:
            os.seteuid(0)
        assert f"{masks} cannot be read by this user: permission denied (mode drwx------, owner " \
            "root, group root: " in str(info.value)  # fmt: skip
        assert (
            f"have root make it and all it holds readable and searchable, since a reader "
            f"reads each mask in it (chmod -R g+rX {masks})" in str(info.value)
        )  # (group root kept)
        assert complete_masks(masks) == ["bear"]  # root may
    finally:
        shutil.rmtree(base)


def test_no_run_starts_while_the_masks_are_read(tmp_path):
    """complete_masks checked one instant: a run starting after it swapped the masks while
    they were scored, bear of one run and car of the next; and a run starting while a reader
    checked was refused as 'being written by another run'."""
    masks = tmp_path / "masks"
    _published(masks, ["bear", "car"])
    with reading_masks(masks) as listed:
        assert listed == ["bear", "car"]
        with pytest.raises(
            UsageError, match="being written by another loftup eval davis run, or its masks read"
        ):
            MaskStaging(str(masks), str(tmp_path / "davis"), ["bear", "car"])
        with reading_masks(masks):  # (another reader: both read)
            pass
    staging = MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"])  # once read
    with pytest.raises(LoftUpError, match="is being written by a loftup eval davis"):
        with reading_masks(masks):
            pass
    staging.discard()


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
def test_a_reader_that_may_not_open_the_lock_file_is_refused_while_a_run_holds_it():
    """A lock file made private (0600, an older run under umask 077) in a shared DIR: a
    member's reader could not open it and read the masks unlocked, as if the file system
    kept no locks, while a run swapped them; it now takes DIR's own lock, as runs do too."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks = base / "masks"
        _published(masks, ["bear"])
        os.chmod(masks / ".loftup-eval-davis-masks.lock", 0o600)
        staging = MaskStaging(str(masks), str(base / "davis"), ["bear"])  # a run holds DIR
        os.seteuid(65534)
        try:
            with pytest.raises(LoftUpError, match="is being written by a loftup eval davis"):
                with reading_masks(masks):
                    pass
        finally:
            os.seteuid(0)
        staging.discard()
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a worker")
def test_a_worker_forked_while_the_masks_are_read_does_not_keep_runs_out(tmp_path):
    """A worker forked inside reading_masks (a DataLoader's, a Pool's) kept its copy of the
    shared lock, and a run after the block was refused for as long as it lived."""
    masks = tmp_path / "masks"
    _published(masks, ["bear"])
    end_r, end_w = os.pipe()
    ready_r, ready_w = os.pipe()
    with reading_masks(masks):
        pid = os.fork()
        if pid == 0:  # the worker: started, then alive until told
            os.write(ready_w, b"x")
            os.read(end_r, 1)
            os._exit(0)
        os.read(ready_r, 1)
    try:
        staging = MaskStaging(str(masks), str(tmp_path / "davis"), ["bear"])
        (staging.path / "bear" / "00000.png").write_bytes(b"a mask")
        staging.publish({})
    finally:
        os.write(end_w, b"x")
        os.waitpid(pid, 0)
        for fd in (end_r, end_w, ready_r, ready_w):
            os.close(fd)
    assert complete_masks(masks) == ["bear"]
