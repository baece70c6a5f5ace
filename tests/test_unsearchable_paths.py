"""A path the user gives that lies in a folder they may not search (another user's, of mode
700): on Python 3.11 pathlib's exists, is_file and is_dir raise PermissionError for it, and
os.path's say it is not there. Each entry point says so, naming that folder and the fix: the
Python API with a PathPermissionError (a PermissionError too), the command line in one line.
The ``unsearchable`` fixture (conftest) refuses such a folder's contents as root too."""

from __future__ import annotations

import pytest
from PIL import Image

import loftup
from loftup.cli import main


@pytest.fixture
def tree(tmp_path, unsearchable):
    """``(secret, fine)``: the same image, upsampler, config and data folder in a folder this
    user may not search and in one they may, and links from the latter into the former."""
    secret, fine = tmp_path / "secret", tmp_path / "fine"
    for folder in (secret, fine):
        (folder / "data").mkdir(parents=True)
        Image.new("RGB", (32, 24), (10, 200, 30)).save(folder / "a.png")
        loftup.LoftUp(dim=32).save_pretrained(folder / "model")
        (folder / "cfg.yaml").write_text("stage: 1\n")
    (fine / "link.png").symlink_to(secret / "a.png")
    (fine / "link_model").symlink_to(secret / "model")
    unsearchable(secret)
    return secret, fine


def _says_why(text: str, secret) -> None:
    assert "permission denied" in text, text
    assert f"{secret} cannot be searched" in text, text  # the folder, not the file
    assert f"have {secret} made searchable for this user (chmod a+x, by its owner)" in text, text


def test_the_python_api_says_which_folder_cannot_be_searched(tree):
    """load_image and load_upsampler raised pathlib's bare PermissionError (EACCES) naming
    the file, whatever folder above it was the one to fix."""
    secret, fine = tree
    tiny = loftup.get_featurizer("dinov2_tiny")
    pipeline = loftup.load_pipeline(loftup.LoftUp(dim=tiny.dim), backbone=tiny, device="cpu")
    calls = {
        "load_image": lambda: loftup.load_image(secret / "a.png"),
        "load_image, a link": lambda: loftup.load_image(fine / "link.png"),
        "upsample": lambda: loftup.upsample(str(secret / "a.png"), model=pipeline),
        "load_upsampler": lambda: loftup.load_upsampler(secret / "model"),
        "load_upsampler, a link": lambda: loftup.load_upsampler(fine / "link_model"),
    }
    for what, call in calls.items():
        with pytest.raises(PermissionError) as caught:  # as before, for code catching it
            call()
        assert isinstance(caught.value, loftup.errors.LoftUpError), what
        _says_why(str(caught.value), secret)
    assert "remove the link" in str(caught.value)  # a link's other fix
    assert loftup.load_image(fine / "a.png").size == (32, 24)  # a path that is fine: as it was
    assert loftup.load_upsampler(fine / "model").dim == 32


COMMANDS = {
    "upsample -m": "upsample {fine}/a.png -m {secret}/model -o {out} --backbone dinov2_tiny",
    # os.path.exists: "no such file, folder or matching glob"
    "upsample IMAGE": "upsample {secret}/a.png -m {fine}/model -o {out} --backbone dinov2_tiny",
    "train --config": "train --config {secret}/cfg.yaml --out {out}",
    "train --data": "train --config stage1_cpu --data {secret}/data --out {out}",
    "eval --root": "eval seg --root {secret}/data --upsampler bilinear --backbone dinov2_tiny",
    # os.path.exists: "no such file or folder"
    "eval --upsampler": "eval seg --root {fine}/data --upsampler {secret}/model "
    "--backbone dinov2_tiny",
    "download (its cache)": "download loftup_dinov2s --no-backbone",
}


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_says_which_folder_cannot_be_searched(tree, tmp_path, command, capsys,
                                                           monkeypatch):  # fmt: skip
    """Said "PATH: Permission denied" (no word of which folder or what to do), or that the
    path did not exist; the Hugging Face cache in such a folder was "not in the cache"."""
    secret, fine = tree
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(secret / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # eval's default figure, checked before its inputs, goes here
    argv = COMMANDS[command].format(secret=secret, fine=fine, out=tmp_path / "out").split()
    assert main([*argv, *(["--device", "cpu"] if argv[0] in ("upsample", "eval") else [])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(said) == 1, err
    _says_why(said[0], secret)


def test_names_are_no_paths_in_a_current_folder_this_user_may_not_search(tmp_path, unsearchable,
                                                                          monkeypatch):  # fmt: skip
    """As another user in /root (mode 700: sudo -u, cron, a Docker WORKDIR they may not
    search), a baseline, a packaged config, a released name and hub ids were each refused as a
    file there: "--upsampler bilinear: permission denied (/root cannot be searched ...)". A
    path there is refused still: it cannot be opened."""
    from hub_helpers import _offline_cache
    from loftup.eval.config import check_upsampler
    from loftup.featurizers.hf_weights import resolve_weights
    from loftup.hub import load_with_record
    from loftup.train.config.yaml_text import read_yaml
    from loftup.train.preflight import check_backbone_weights, check_init

    here = tmp_path / "here"
    here.mkdir()
    Image.new("RGB", (32, 24)).save(here / "a.png")
    _offline_cache(monkeypatch, tmp_path / "hub")  # an empty cache: nothing downloaded
    monkeypatch.chdir(here)
    unsearchable(here)
    for upsampler in ("bilinear", "highres", "loftup_dinov2s", "someorg/mine"):
        check_upsampler(upsampler)
    for init in ("loftup_dinov2s", "someorg/mine"):
        check_init(init)
    check_backbone_weights("dinov2_s", "facebook/dinov2-small")
    assert read_yaml("stage1_cpu")["stage"] == 1
    with pytest.raises(loftup.WeightsNotFoundError) as caught:  # not in the cache, said so
        load_with_record("loftup_dinov2s")
    assert "cannot be searched" not in str(caught.value)
    with pytest.raises(loftup.WeightsNotFoundError) as caught:  # a folder here may be meant
        load_with_record("someorg/mine")
    assert f"current folder {here} that this user may look at ({here} cannot be" in str(
        caught.value
    )
    with pytest.raises(loftup.WeightsNotFoundError):  # a backbone's own hub id, not cached
        resolve_weights(None, "facebook/dinov2-small", "dinov2_s")
    with pytest.raises(PermissionError) as caught:
        loftup.load_image("a.png")
    _says_why(str(caught.value), here)


def test_a_path_through_a_folder_and_back_names_that_folder(tmp_path, unsearchable, monkeypatch):
    """``locked/../ok.png`` needs ``locked`` searched; it named ``perm``, the folder above,
    which may be searched (os.path.realpath resolved the ``..`` away)."""
    perm = tmp_path / "perm"
    (perm / "locked").mkdir(parents=True)
    (perm / "dir").mkdir()
    Image.new("RGB", (32, 24)).save(perm / "ok.png")
    (perm / "dir" / "lk").symlink_to("../locked")
    monkeypatch.chdir(perm)
    unsearchable(perm / "locked")
    for path in ("locked/../ok.png", "dir/lk/../ok.png", f"{perm}/locked/../ok.png"):
        with pytest.raises(PermissionError) as caught:
            loftup.load_image(path)
        _says_why(str(caught.value), perm / "locked")
    assert loftup.load_image("dir/../ok.png").size == (32, 24)


def test_a_nul_byte_in_a_path_is_no_such_file():
    """``load_image("a\\0b.png")`` raised os.stat's bare ValueError ("embedded null byte")."""
    with pytest.raises(loftup.io.ImageReadError, match="no such image file"):
        loftup.load_image("a\0b.png")


def test_an_image_that_is_there_is_looked_at_once_before_it_is_opened(tmp_path, monkeypatch):
    """Every image load (upsample, training's every sample of every epoch, eval) stat'ed the
    file twice: once to see whether a folder hides it, which it cannot where it is a file,
    then once to see it is one. The check stays for one that is not seen (the tests above)."""
    import os

    from loftup.io import load_image

    path = tmp_path / "a.png"
    Image.new("RGB", (16, 10)).save(path)
    stat, looks = os.stat, []

    def counting(p, *args, **kwargs):
        if os.fspath(p) == str(path):
            looks.append(p)
        return stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    assert load_image(path).size == (16, 10)
    assert len(looks) == 1


def test_a_hidden_path_s_blocking_folder_is_found_once(tmp_path, unsearchable, monkeypatch):
    """The folder hiding a file was looked for three times (permission_denied, its fix, then
    absent), four for a link (where it leads too): a walk of the path each, on every refusal
    and every name a glob's fixed parts check."""
    from loftup import listing
    from loftup.errors import PathPermissionError
    from loftup.paths import check_visible

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "a.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(secret / "a.png")
    unsearchable(secret)
    walk, walks = listing._blocked, []
    monkeypatch.setattr(listing, "_blocked", lambda p: walks.append(p) or walk(p))
    for path, fix in ((secret / "a.png", "or use a copy"), (tmp_path / "link.png", "or remove")):
        walks.clear()
        with pytest.raises(PathPermissionError, match=f"have {secret} made searchable .* {fix}"):
            check_visible(path, "image")
        assert len(walks) == 1, path


def test_there_looks_at_a_path_once_and_says_a_hidden_one(tmp_path, unsearchable, monkeypatch):
    """``there`` (each DAVIS annotation frame, each dataset pair checked) stat'ed a path twice
    (whether a folder hides it, then whether it is there), three times where a caller then
    asked isfile; once now, with the kind asked (exists, isdir, isfile); a path a folder hides
    is still said with the folder to fix."""
    import os

    from loftup.errors import PathPermissionError
    from loftup.paths import there

    (tmp_path / "a.png").write_bytes(b"x")
    stat, looks = os.stat, []
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: looks.append(p) or stat(p, *a, **k))
    asked = [(name, test) for name in ("a.png", "gone") for test in (os.path.exists,
             os.path.isdir, os.path.isfile)]  # fmt: skip
    said = [there(tmp_path / name, "image", test=test) for name, test in asked]
    assert said == [True, False, True, False, False, False]
    assert len(looks) == len(asked)
    assert there(tmp_path, test=os.path.isdir) and not there(tmp_path, test=os.path.isfile)
    secret = tmp_path / "secret"
    (secret / "data").mkdir(parents=True)
    unsearchable(secret)
    with pytest.raises(PathPermissionError, match=f"have {secret} made searchable"):
        there(secret / "data", "--data", test=os.path.isdir)
