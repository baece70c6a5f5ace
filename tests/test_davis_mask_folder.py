"""`loftup eval davis --save-masks DIR`: the masks are staged inside DIR and moved into it at
the end, after the scores are written; DIR itself (its inode, mode, group, mount) is kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval_data import TEST_BACKBONE, tmpfs, write_davis
from loftup.cli import main
from loftup.errors import LoftUpError
from loftup.eval import EvalConfig, evaluate

MARK = ".loftup-eval-davis-masks"
LOCK = MARK + ".lock"  # the file whose lock a run holds


def _davis(root: Path, masks, *extra: str, json_path=None) -> list[str]:
    return ["eval", "davis", "--root", str(root), "--backbone", TEST_BACKBONE, "--upsampler",
            "bilinear", "--size", "28", "--no-progress", "--no-cache", "--save-masks", str(masks),
            "--json", str(json_path or root.parent / "r.json"), *extra]  # fmt: skip


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_folder_itself_is_kept_with_its_inode_mode_and_group(tmp_path):
    """The masks' folder was replaced by a new one: a group-shared 2770 folder became a 0755
    one of root's group, and another inode (a shell inside it was left in a deleted folder)."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    if os.geteuid() == 0:
        os.chown(masks, -1, 100)  # a group not the process's
    os.chmod(masks, 0o2770)
    before = os.stat(masks)
    for extra in ((), ("--limit", "1")):  # new masks in an empty folder, then over a run's
        assert main(_davis(root, masks, *extra)) == 0
        after = os.stat(masks)
        assert (after.st_ino, after.st_mode, after.st_gid) == (
            before.st_ino, before.st_mode, before.st_gid
        )  # fmt: skip
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear"]
    assert json.loads((masks / MARK).read_text())["sequences"] == ["bear"]


def test_a_process_inside_the_masks_folder_stays_there(tmp_path, monkeypatch):
    """--save-masks . renamed and deleted the process's own folder: the JSON given relative
    to it was then 'No such file or directory', and os.getcwd() raised."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = ["--figure", str(tmp_path / "f.png")]
    for _ in range(2):
        assert main(_davis(root, ".", *out, json_path=tmp_path / "r.json")) == 0
        assert os.getcwd() == str(work) and Path("bear/00001.png").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["J&F_mean"] >= 0


def test_a_mount_point_takes_the_masks(tmp_path):
    """A mount point (a Docker volume, a mounted disk) cannot be renamed: the run failed at its
    very end (Device or resource busy), leaving its masks beside it and no JSON."""
    masks = tmp_path / "masks"
    masks.mkdir()
    with tmpfs(masks):
        root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
        assert main(_davis(root, masks)) == 0
        assert main(_davis(root, masks)) == 0  # and over an earlier run's
        assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear"]
        assert os.path.ismount(masks) and (tmp_path / "r.json").is_file()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("option", ["--json", "--figure", "--cache-dir", "the figure"])
def test_an_output_inside_the_masks_folder_is_refused_before_any_work(tmp_path, capsys,
                                                                      monkeypatch, option):  # fmt: skip
    """--cache-dir DIR/cache made the run fail at its end ('holds files no run wrote'), and
    --json DIR/scores.json made the third run fail, for a file the run had written itself."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    monkeypatch.chdir(masks)  # the default figure (no --json, no --figure) goes here
    args = _davis(root, masks)
    if option == "the figure":
        args = args[: args.index("--json")]
    else:
        args = [a for a in args if a != "--no-cache"] + [option, str(masks / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{option} " in err and f"is inside --save-masks {masks}" in err
    fix = "--figure" if option == "the figure" else option
    assert f"give {fix} a path outside it" in err
    assert list(masks.iterdir()) == [] and not (tmp_path / "r.json").exists()


def test_masks_that_cannot_be_put_in_place_keep_their_scores_and_the_earlier_masks(tmp_path):
    """The masks were put in place before the JSON was written: a failure there (here: a
    file of someone else's put in the folder during the run) lost the scores."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=3)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    before = _files(masks)
    cfg = EvalConfig(task="davis", dataset="davis2017", root=str(root), backbone=TEST_BACKBONE,
                     upsampler="bilinear", size=28, cache_dir=None, progress=False, limit=1,
                     json=str(tmp_path / "s.json"), save_masks=str(masks))  # fmt: skip

    def meanwhile(results):
        (masks / "notes.txt").write_text("someone's")

    with pytest.raises(LoftUpError) as info:
        evaluate(cfg, report=meanwhile)
    message = str(info.value)
    assert "now holds files no loftup eval davis run wrote" in message and "J&F" in message
    assert json.loads((tmp_path / "s.json").read_text())["num_sequences"] == 1
    (staging,) = masks.glob(".loftup-staging-*")
    assert str(staging) in message and (staging / "bear" / "00001.png").is_file()
    assert {k: v for k, v in _files(masks).items() if k.startswith(("bear", "car", MARK))} == before
    (masks / "notes.txt").unlink()
    assert main(_davis(root, masks)) == 0  # the next run removes what the message named
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear", "car"]


def test_an_interruption_while_the_masks_move_in_leaves_the_earlier_ones(tmp_path, monkeypatch):
    """Ctrl-C just after the earlier masks were moved aside left no --save-masks folder at
    all, the earlier masks in a hidden folder beside it, and both hidden folders for good."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=3)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    before = _files(masks)
    replace, pressed = os.replace, []

    def interrupted(src, dst):
        into = Path(dst) == masks or (Path(dst).parent == masks and Path(dst).name != MARK)
        if into and not pressed:  # Ctrl-C (once) as the new masks move in
            pressed.append(dst)
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    assert main(_davis(root, masks, "--limit", "1")) == 130
    monkeypatch.setattr(os, "replace", replace)
    assert pressed and _files(masks) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not list(masks.glob(".loftup-staging-*"))


def test_masks_without_the_mark_are_refused_for_what_they_are(tmp_path, capsys):
    """Masks an earlier loftup wrote (before the mark) were refused as 'files that no loftup
    eval davis run wrote', which they were not; the message now says why, and its fix works."""
    root = write_davis(tmp_path / "davis", sequences=("bear", "car"), frames=3)
    masks = tmp_path / "masks"
    for seq in ("bear", "elephant"):
        (masks / seq).mkdir(parents=True)
        (masks / seq / "00000.png").write_bytes(b"an older run's")
    assert main(_davis(root, masks)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no loftup eval davis run wrote" not in err
    assert f"holds masks ({masks / 'bear'}) but no {MARK} file" in err
    assert f"touch {masks / MARK}" in err
    (masks / MARK).touch()
    assert main(_davis(root, masks)) == 0  # the marked folders are replaced
    assert sorted(p.name for p in masks.iterdir()) == [MARK, LOCK, "bear", "car"]


def test_the_scorers_csv_files_are_named_as_stale_scores_and_desktop_files_ignored(tmp_path,
                                                                                   capsys):  # fmt: skip
    """The official scorer writes its CSVs into the masks' folder: the next run refused them as
    'files that no loftup eval davis run wrote'; a .DS_Store (macOS's Finder) was refused too."""
    root = write_davis(tmp_path / "davis", sequences=("bear",), frames=3)
    masks = tmp_path / "masks"
    assert main(_davis(root, masks)) == 0
    capsys.readouterr()
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        (masks / name).write_text("J&F-Mean,J-Mean\n0.5,0.5\n")
    assert main(_davis(root, masks)) == 2
    err = capsys.readouterr().err
    assert "davis2017-evaluation scorer's scores" in err and "stale scores" in err
    assert f"rm {masks}/*_results-*.csv" in err and "no loftup eval davis run wrote" not in err
    for csv in masks.glob("*_results-*.csv"):
        csv.unlink()
    for junk in (masks / ".DS_Store", masks / "bear" / ".DS_Store", masks / "Thumbs.db"):
        junk.write_bytes(b"Finder's")
    assert main(_davis(root, masks)) == 0
    assert (masks / "bear" / "00001.png").is_file()


@pytest.mark.skipif(not hasattr(os, "seteuid") or os.geteuid() != 0,
                    reason="takes another user's identity (seteuid), which only root may")  # fmt: skip
def test_an_earlier_run_s_masks_this_user_may_not_move_are_refused_before_any_work():
    """In a group-shared folder, another user's masks (drwxr-sr-x) cannot be moved aside: the
    run failed at its very end, leaving its masks in a staging folder nobody else could
    remove. Now refused up front, naming the owner."""
    import pwd
    import shutil
    import tempfile

    from loftup.errors import UsageError
    from loftup.eval.mask_folder import check_masks_folder

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        masks, owner = base / "masks", pwd.getpwuid(65534).pw_name
        (masks / "bear").mkdir(parents=True)
        (masks / "bear" / "00000.png").write_bytes(b"nobody's mask")
        (masks / MARK).write_text(json.dumps({"sequences": ["bear"]}))
        os.chown(masks, 0, 100)
        os.chmod(masks, 0o2770)  # root:users, shared by the group
        os.chown(masks / "bear", 65534, 100)
        os.chmod(masks / "bear", 0o2755)  # as umask 022 made it
        check_masks_folder(str(masks), str(base / "davis"))  # root may
        os.setegid(100)
        os.seteuid(65533)  # another member of the group
        try:
            with pytest.raises(UsageError) as info:
                check_masks_folder(str(masks), str(base / "davis"))
        finally:
            os.seteuid(0)
            os.setegid(0)
        message = str(info.value)
        assert f"may not move the earlier run's masks {masks / 'bear'} out of the way" in message
        assert f"have {owner} make it writable (chmod g+w {masks / 'bear'})" in message
    finally:
        shutil.rmtree(base)
