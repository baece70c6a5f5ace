"""`loftup eval davis --save-masks DIR`: DIR's lock held from the check before the work to its
end, killed runs' staging folders swept, group-shared folders, a full disk."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from eval_data import TEST_BACKBONE, tmpfs, write_davis
from loftup.cli import main
from loftup.eval import EvalConfig, evaluate
from pasted import ODD, paste

fcntl = pytest.importorskip("fcntl")

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"  # the file whose lock a run holds


def _davis(root: Path, masks, *extra: str) -> list[str]:
    return ["eval", "davis", "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            "bilinear", "--size", "28", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(root.parent / "r.json"), *extra]  # fmt: skip


def _config(root: Path, masks: Path, **kw) -> EvalConfig:
    return EvalConfig(task="davis", dataset="davis2017", root=str(root), backbone=TEST_BACKBONE,
                      upsampler="bilinear", size=28, cache_dir=None, progress=False,
                      json=str(root.parent / "s.json"), save_masks=str(masks), **kw)  # fmt: skip


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_into_the_folder_is_refused_up_front(tmp_path, capsys):
    """Two runs into one folder at the same time both succeeded, the last one's masks kept,
    and nothing said so."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    fd = os.open(masks, os.O_RDONLY)  # as a running run holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(_davis(root, masks)) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert f"--save-masks {masks} is being written by another loftup eval davis run" in err
    assert list(masks.iterdir()) == [] and not (tmp_path / "r.json").exists()
    assert main(_davis(root, masks)) == 0  # once that run ended


def test_a_killed_runs_staging_folder_gives_back_the_earlier_masks_it_holds(tmp_path):
    """kill -9 while the masks were swapped left two of the earlier run's three sequence folders
    in the staging folder; the next run removed it, and them, without a word."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car", "dog"), frames=3)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    before = _files(masks)
    earlier = masks / ".loftup-staging-k1ll3d00" / ".earlier-abcd1234"
    earlier.mkdir(parents=True)
    for name in ("bear", "car"):  # moved aside when the kill came (an older loftup's run)
        os.replace(masks / name, earlier / name)
    for name in ("bear", "car", "dog"):  # that run's own, yet to move in
        (earlier.parent / name).mkdir()
        (earlier.parent / name / "00000.png").write_bytes(b"the killed run's")
    half = masks / ".loftup-staging-h4lf0000" / "bear"  # another killed run's, half written
    half.mkdir(parents=True)
    (half / "00000.png").write_bytes(b"half a run")

    def interrupted(results):  # a run ended before its masks went in: DIR as it found it
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(_config(root, masks, limit=1), report=interrupted)
    assert _files(masks) == before
    assert json.loads((masks / MARK).read_text())["sequences"] == ["bear", "car", "dog"]
    assert main(_davis(root, masks, "--limit", "1")) == 0  # and then replaces them
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear"]


def test_without_locks_the_run_says_so_and_leaves_staging_folders(tmp_path, capsys,
                                                                  monkeypatch):  # fmt: skip
    """Where the file system keeps no locks (NFS without a lock service), the run skipped
    locking without a word, and the staging folders killed runs left stayed for good."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    stale = masks / ".loftup-staging-k1ll3d00" / "bear"
    stale.mkdir(parents=True)

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="keeps no locks") as said:
        evaluate(_config(root, masks))
    assert len(said) == 1 and "what killed runs left is not put right" in str(said[0].message)
    assert stale.is_dir() and (masks / "bear" / "00001.png").is_file()  # (a live run's, maybe)


def test_in_a_group_shared_folder_the_masks_take_the_groups_write_bits(tmp_path):
    """The staging folder was mkdtemp's 0700 and the sequence folders the umask's 0755: in a
    group's 2770 folder, another member's run could neither move the masks aside nor remove a
    killed run's staging folder."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    os.chmod(masks, 0o2770)
    seen = []

    def look(results):
        (staging,) = masks.glob(".loftup-staging-*")
        seen.extend(p.stat().st_mode for p in (staging, staging / "bear"))

    old = os.umask(0o022)
    try:
        evaluate(_config(root, masks), report=look)
        evaluate(_config(root, masks), report=look)  # and over the earlier masks
    finally:
        os.umask(old)
    assert len(seen) == 4 and all(mode & 0o070 == 0o070 for mode in seen)
    assert (masks / "bear").stat().st_mode & 0o070 == 0o070


def test_a_full_disk_names_the_masks_folder_and_keeps_the_scores(tmp_path, capsys):
    """Running out of disk while the masks were written said 'No space left on device' naming
    no path, and the scores were lost."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with tmpfs(disk, size="256k"):
        root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
        masks = disk / "masks"
        masks.mkdir()
        with open(disk / "filler", "wb", buffering=0) as f:  # the disk made full
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)
        assert main(_davis(root, masks)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
        assert f"--save-masks {masks} could not be written (No space left on device" in err
        assert "free space there" in err and "J&F" in err
        assert json.loads((tmp_path / "r.json").read_text())["num_sequences"] == 1
        assert list(masks.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
@pytest.mark.parametrize("name", ["masks", *ODD])
def test_another_users_private_staging_folder_is_left_with_one_warning(name):
    """An older loftup made its staging folders 0700: one a killed run of another member of a
    group-shared folder left could not be swept, and every later run tried again, without a
    word (the earlier masks it may hold lost from sight). The warning asked the owner for a
    run of theirs, which would have replaced the folder's masks, or moved back nothing. Its
    rm -rf, pasted into bash as the command line prints the warning, removes that folder
    (of a name with a newline: it named none)."""
    import shutil
    import tempfile

    from loftup.escaping import printable, shell_quoted
    from loftup.eval.mask_staging import MaskStaging

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks = base / name
        stale = masks / ".loftup-staging-0ld0700x"
        (stale / ".earlier-abcd1234" / "bear").mkdir(parents=True)
        (stale / ".earlier-abcd1234" / "bear" / "00000.png").write_bytes(b"nobody's mask")
        for path in (stale, *stale.rglob("*")):
            os.chown(path, 65534, 65534)
        os.chmod(stale, 0o700)  # nobody's only
        os.chown(masks, 0, 100)
        os.chmod(masks, 0o2770)  # root:users, shared by the group
        os.setegid(100)
        os.seteuid(65533)  # another member of the group
        try:
            with pytest.warns(UserWarning) as said:
                MaskStaging(str(masks), str(base / "davis"), ["bear"]).discard()
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert len(said) == 1
        message = printable(str(said[0].message))  # as the command line says it
        shown, folder = printable(str(stale)), printable(str(masks))
        assert f"--save-masks {folder}: {shown}, a staging folder a killed run left" in message
        assert "is nobody's and this user may not remove it" in message
        assert "Once this run has put its masks in place, ask nobody to run rm -rf " \
               f"{shell_quoted(stale)}; should it not, ask them to move the earlier masks it " \
               f"may hold ({shown}/.earlier-*/*) that {folder} lacks back into it first" \
               in message  # fmt: skip
        assert [p.name for p in masks.iterdir()] == [stale.name]  # left as it was
        assert (stale / ".earlier-abcd1234" / "bear" / "00000.png").read_bytes() == b"nobody's mask"
        paste(message, "rm -rf ", stale)  # (by its owner: root here)
        assert list(masks.iterdir()) == []
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
@pytest.mark.parametrize("mode", [0o2770, 0o0770])  # setgid: new files take DIR's group
def test_the_mark_is_readable_by_the_folder_s_group_and_an_unreadable_one_refused(monkeypatch,
                                                                                  mode):  # fmt: skip
    """Under umask 077 the mark was 0600 in a group's 2770 folder: to another member it read
    as empty, so their scorer passed a folder marked incomplete, and their run took the
    killed run's staging folder (the earlier masks in it) for a stale one and removed it.
    And every PNG was 0600: their scorer could read none; in a 0770 DIR (no setgid) the mark
    took the writer's own group, and they were told to chmod g+r, which was done."""
    import grp
    import shutil
    import tempfile

    import loftup.atomic
    import loftup.eval.mask_staging
    from loftup.errors import UsageError
    from loftup.eval.mask_folder import complete_masks
    from loftup.eval.mask_staging import MaskStaging

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks = base / "masks"
        masks.mkdir()
        os.chown(masks, 0, 100)
        os.chmod(masks, mode)  # root:users, shared by the group
        monkeypatch.setattr(loftup.atomic, "FILE_MODE", 0o600)  # as umask 077 makes them
        monkeypatch.setattr(loftup.eval.mask_staging, "FOLDER_MODE", 0o700)
        staging = MaskStaging(str(masks), str(base / "davis"), ["bear"])
        staging.save(torch.zeros(4, 6, dtype=torch.uint8), "bear", "00000", None)
        staging.publish({})
        assert (masks / MARK).stat().st_mode & 0o777 == 0o640
        os.setegid(100)
        os.seteuid(65533)  # another member of the group
        try:
            assert complete_masks(masks) == ["bear"]
            assert (masks / "bear" / "00000.png").read_bytes().startswith(b"\x89PNG")
            os.seteuid(0)
            os.chmod(masks / MARK, 0o600)  # made private by hand
            fix = f"have root make it readable (chmod g+r {masks / MARK})"
            if mode == 0o0770:  # and in root's own group, as a loftup before this made it
                os.chown(masks / MARK, 0, 0)
                group = grp.getgrgid(100).gr_name
                fix = f"run chgrp {group} {masks / MARK} && chmod g+r {masks / MARK}, and " \
                    f"chmod g+s {masks}"  # fmt: skip
            os.seteuid(65533)
            for read in (lambda: complete_masks(masks),
                         lambda: MaskStaging(str(masks), str(base / "davis"), ["bear"])):  # fmt: skip
                with pytest.raises(UsageError) as info:
                    read()
                assert f"{masks / MARK}, the mark saying which run's masks" in str(info.value)
                assert "cannot be read: permission denied (mode -rw-------, owner root" in \
                    str(info.value) and fix in str(info.value)  # fmt: skip
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear"]  # nothing removed
    finally:
        shutil.rmtree(base)
