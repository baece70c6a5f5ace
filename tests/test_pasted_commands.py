"""The commands that refusals advise (rm, chmod, printf), of a file whose name holds a newline or a
single quote, pasted into bash from the message as the command line prints it: each names that
file. They were quoted with shlex.quote, and the message escaped whole as it was said: the
newline became the two characters \\n inside single quotes, naming a file that does not exist
(a `$'...'` escaped again names another: the rest of the message is escaped where it is made).
Those of another user's refusal run as that user (root only)."""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest
import torch

from as_nobody import NOBODY, as_nobody
from loftup.escaping import printable
from pasted import ODD, bash, named, needs_bash, paste, pasted

pytestmark = needs_bash
as_root = pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_rm_and_chmod_of_a_train_lock_file_name_it(base, name):
    """Root's lock file in a folder open to all, refused to another user: its chmod and its rm
    (no run holds it) each name it, and the chmod lets the run in."""
    from loftup.train.distributed import DistInfo
    from loftup.train.run_lock import LOCK_NAME, lock_run_folder

    out = base / name
    out.mkdir()
    os.chmod(out, 0o777)
    lock = out / LOCK_NAME
    lock.write_text("")
    os.chmod(lock, 0o664)

    def attempt() -> str:
        def run():
            with ExitStack() as held:
                lock_run_folder(out, DistInfo(device=torch.device("cpu")), held)

        return printable(as_nobody(run))  # as the command line says it

    said = attempt()
    assert said.startswith(f"this user may not write {printable(str(lock))}, "), said
    remove, chmod = pasted(said, "rm "), pasted(said, "chmod o+w ")
    assert named(remove, "rm ") == named(chmod, "chmod o+w ") == os.fsencode(lock)
    bash(chmod)
    assert attempt() == "taken"
    os.chmod(lock, 0o664)
    bash(remove)
    assert not lock.exists() and attempt() == "taken"


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_chmod_of_a_davis_masks_folder_s_lock_names_it(base, name):
    """A member of the masks folder's group, refused its lock file (0600): the folder's
    `chmod -R g+rwX` names the folder and lets the run in."""
    from loftup.eval.mask_lock import lock
    from loftup.eval.mask_mark import LOCK

    masks = base / name
    masks.mkdir()
    (masks / LOCK).write_text("")
    for path in (masks, masks / LOCK):
        os.chown(path, 0, NOBODY)
    os.chmod(masks, 0o2775)
    os.chmod(masks / LOCK, 0o600)
    said = printable(as_nobody(lambda: lock(masks)))
    assert said.startswith(f"--save-masks {printable(str(masks))}: "), said
    recursive = pasted(said, "chmod -R g+rwX ")
    assert named(recursive, "chmod -R g+rwX ") == os.fsencode(masks)
    assert named(pasted(said, "chmod g+rw "), "chmod g+rw ") == os.fsencode(masks / LOCK)
    bash(recursive)
    assert as_nobody(lambda: lock(masks)) == "taken"


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_chmod_of_a_file_this_user_may_not_read_names_it(base, name):
    """Root's file of mode 600, read by another user: "cannot read PATH" with the chmod that
    names it, which lets that user read it."""
    from loftup.read_refusal import read_refused

    image = base / name
    image.write_bytes(b"x")
    os.chmod(image, 0o600)

    def read():
        raise read_refused(image, what="image")

    said = printable(as_nobody(read))
    assert said.startswith(f"cannot read image {printable(str(image))}: "), said
    paste(said, "chmod o+r ", image)
    assert as_nobody(lambda: open(image, "rb").close()) == "taken"


@pytest.mark.parametrize("name", ODD)
def test_the_printf_that_mends_a_damaged_ref_of_the_cache_writes_it(tmp_path, monkeypatch, name):
    """A Hugging Face cache under a folder of such a name, its refs/main damaged: the printf
    advised, pasted, writes that file back, and the upsampler loads."""
    from hub_builders import make_hf_cache
    from hub_helpers import _offline_cache, _own_upsampler
    from loftup import load_upsampler
    from loftup.errors import CheckpointError

    _, folder, _ = _own_upsampler(tmp_path)
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    cache = tmp_path / name / "hub"
    snap = make_hf_cache(cache, "someone/up", files)
    ref = snap.parents[1] / "refs" / "main"
    ref.write_bytes(b"\xff damaged")
    _offline_cache(monkeypatch, cache)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("someone/up")
    said = printable(str(e.value))
    assert said.startswith(f"{printable(str(ref))}, the Hugging Face cache's record"), said
    paste(said, f"printf %s {snap.name} > ", ref)
    assert ref.read_text() == snap.name and load_upsampler("someone/up") is not None


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_chmod_of_a_train_folder_s_tb_names_it(base, name):
    """Root's tb/ in a run folder open to all: the chmod offered names it, and lets the run."""
    from types import SimpleNamespace

    from loftup.train.run_folder import check_run_subfolders

    out = base / name
    (out / "tb").mkdir(parents=True)
    os.chmod(out, 0o777)
    cfg = SimpleNamespace(log=SimpleNamespace(tensorboard=True, viz_every=0))
    one = SimpleNamespace(is_main=True, enabled=False)

    def check() -> str:
        return printable(as_nobody(lambda: check_run_subfolders(cfg, out, one, "--out")))

    said = check()
    assert said.startswith(f"--out {printable(str(out))} cannot be written: "), said
    paste(said, "chmod o+w ", out / "tb")
    assert check() == "taken"


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_chmods_of_davis_masks_this_user_may_not_read_name_them(base, name):
    """Masks of root's, private: the chmod -R of the folder (a reader reads every mask), and
    that of its mark alone (made private again), each names it and lets a reader read them."""
    from loftup.eval.mask_folder import complete_masks
    from loftup.eval.mask_mark import MARK

    masks = base / name
    (masks / "bear").mkdir(parents=True)
    (masks / MARK).write_text('{"sequences": ["bear"]}')
    os.chmod(masks, 0o700)
    os.chmod(masks / MARK, 0o600)

    def read() -> str:
        return printable(as_nobody(lambda: complete_masks(masks)))

    said = read()
    assert said.startswith(f"{printable(str(masks))} cannot be read by this user: "), said
    paste(said, "chmod -R o+rX ", masks)
    assert read() == "taken"
    os.chmod(masks / MARK, 0o600)
    said = read()
    assert said.startswith(f"{printable(str(masks / MARK))}, the mark "), said
    paste(said, "chmod o+r ", masks / MARK)
    assert read() == "taken"


@as_root
@pytest.mark.parametrize("name", ODD)
def test_the_chmod_of_a_cache_s_blobs_this_user_may_not_search_names_them(base, name):
    """A shared Hugging Face cache whose blobs/ is root's only (0700): the chmod that lets
    this user search it names it, and the link then leads to its file."""
    from loftup.hub.damaged import check_blob_seen

    blobs, snapshot = base / name / "blobs", base / name / "snapshots" / "c0ffee"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (blobs / "abc").write_bytes(b"w")
    (snapshot / "model.safetensors").symlink_to(blobs / "abc")
    os.chmod(blobs, 0o700)

    def look() -> str:
        return printable(as_nobody(lambda: check_blob_seen(snapshot / "model.safetensors")))

    said = look()
    assert said.startswith(f"{printable(str(snapshot / 'model.safetensors'))}: a link"), said
    paste(said, "chmod o+x ", blobs)
    assert look() == "taken"


@pytest.mark.parametrize("name", ["a\u202eb", "a\x85b", "a\u2028b", "é\u2069\nb"])
@pytest.mark.parametrize("locale", [{}, {"LANG": "C"}, {"LANG": "C.UTF-8"}])
def test_a_quoted_name_of_a_non_ascii_control_names_it_in_every_locale(tmp_path, name, locale):
    """A bidirectional control, a C1 control or a line separator in a path: shell_quoted wrote
    it \\u202e in $'...', which bash reads so only in a UTF-8 locale; in the C locale (LANG
    unset, as in many containers) the pasted command named a file that does not exist."""
    import subprocess

    from loftup.escaping import shell_quoted

    path = tmp_path / name
    path.write_bytes(b"")
    command = f"ls -d -- {shell_quoted(path)} >/dev/null && printf %s {shell_quoted(path)}"
    env = {"PATH": os.environ["PATH"], **locale}  # (env -i: no LANG, no LC_ALL)
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True)
    assert (done.returncode, done.stdout) == (0, os.fsencode(path)), (command, done.stderr)


@pytest.mark.parametrize("name", ODD)
def test_the_touch_and_rm_of_a_davis_masks_folder_name_it(tmp_path, name):
    """--save-masks of masks without a mark: its touch marks them; of the scorer's CSVs: its rm
    removes them. Their paths were not quoted at all: a quote ended the command, a space
    split it in two (rm removed what the two words named)."""
    _touch_and_rm(tmp_path / name, str(tmp_path / name), tmp_path / "davis")


@pytest.mark.parametrize("typed", ["~/masks", "-masks"])
def test_the_touch_and_rm_of_a_davis_masks_folder_as_typed_name_it(tmp_path, monkeypatch, typed):
    """--save-masks=~/masks (bash leaves the ~ after "=") and a relative folder beginning with
    "-": the commands named the folder as typed, and quoted, so '~/masks' named no file, and
    touch read -masks/... as its options; they name it absolute, ~ expanded."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    masks = tmp_path / "home" / "masks" if typed.startswith("~") else tmp_path / typed
    _touch_and_rm(masks, typed, tmp_path / "davis")


def _touch_and_rm(masks, typed: str, root) -> None:
    """Masks without a mark in ``masks``, given to --save-masks as ``typed``: the touch the
    refusal advises, pasted into bash, marks them; then the scorer's CSVs there: its rm
    removes them."""
    from loftup.errors import UsageError
    from loftup.eval.mask_folder import check_masks_folder
    from loftup.eval.mask_mark import MARK

    (masks / "bear").mkdir(parents=True)
    (masks / "bear" / "00000.png").write_bytes(b"a mask")
    with pytest.raises(UsageError) as e:
        check_masks_folder(typed, root)
    bash(pasted(printable(str(e.value)), "touch "))
    assert (masks / MARK).is_file()
    check_masks_folder(typed, root)
    for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
        (masks / csv).write_text("J&F-Mean\n0.5\n")
    with pytest.raises(UsageError) as e:
        check_masks_folder(typed, root)
    said = printable(str(e.value))
    bash("rm " + said.split("(rm ", 1)[1].split("), or give another folder")[0])
    assert sorted(p.name for p in masks.iterdir()) == [MARK, "bear"]
    check_masks_folder(typed, root)
    assert not list(masks.glob(".loftup-staging-*"))
