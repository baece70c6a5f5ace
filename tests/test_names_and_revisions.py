"""Names a user may mistype or over-specify: a bare word as backbone weights, a revision where
none is read, a backbone name with @REV as the upsampler, SAM's repo with @REV, a non-string
backbone_norm. Each was looked up on the hub (with advice that could not work) or a traceback."""

from __future__ import annotations

import pytest
import torch

import loftup
from loftup.downloads import download_names
from loftup.errors import UsageError, WeightsNotFoundError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_bare_word_as_backbone_weights_is_no_hub_id(tmp_path, monkeypatch):
    """'mydino' (a mistyped folder) was looked up as hub repo 'mydino', and the advice,
    `loftup download mydino`, fails as an unknown name."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError) as e:
        loftup.get_featurizer("dinov2_vits14", weights="mydino")
    assert "'mydino' is neither a folder here nor a hub id ORG/NAME" in str(e.value)
    assert "loftup download" not in str(e.value)


@pytest.mark.parametrize("weights", ["someone/bb@v1", "someone/bb@refs/pr/1"])
def test_a_revision_of_backbone_weights_is_refused_as_one(weights):
    """refs/pr/1's slashes read the id as a missing path ('does not exist')."""
    with pytest.raises(UsageError, match="names a revision, but a backbone's weights are read"):
        loftup.get_featurizer("dinov2_vits14", weights=weights)


def test_a_backbone_with_a_revision_given_as_the_upsampler_is_said_to_be_a_backbone():
    with pytest.raises(UsageError, match="dinov2_vits14@main is a backbone, not an upsampler"):
        loftup.load_upsampler("dinov2_vits14@main")


def test_sams_hub_repo_with_a_revision_is_refused_before_any_request():
    """Offline it advised `env -u HF_HUB_OFFLINE loftup download facebook/sam-vit-base@main`,
    which online fetched config.json and then refused the revision."""
    with pytest.raises(UsageError, match="facebook/sam-vit-base is the hub repo of sam_vit_base"):
        list(download_names(["facebook/sam-vit-base@main"]))


def test_a_backbone_norm_that_is_no_string_is_refused_in_one_line(tmp_path):
    """A list raised TypeError: unhashable type: 'list'."""
    with pytest.raises(UsageError, match=r"backbone_norm must be one of .*got \['own'\]"):
        loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone_norm=["own"])
    assert not (tmp_path / "up").exists()


#: How a blank backbone is refused: from Python, and on the command line.
BLANK = "the backbone is empty or blank (an unset variable or an empty string?): pass a backbone's"
BLANK_CLI = 'the backbone is empty or blank (an unset variable, as in --backbone "$BB"?): pass'


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_backbone_is_said_to_be_an_unset_variable(tmp_path, capsys, blank):
    """--backbone "$BB" with BB unset was refused as "unknown backbone ''", listing every
    name, where the mistake is the empty string; said so, by the command line and
    load_pipeline alike, before any weights load. A Python caller was told of --backbone
    "$BB", a shell's words: told of its argument, backbone=, instead."""
    from loftup.cli import main

    for call in (
        lambda: loftup.load_pipeline(str(tmp_path / "none"), backbone=blank),
        lambda: loftup.upsample(torch.rand(3, 8, 8), model=str(tmp_path / "none"), backbone=blank),
    ):
        with pytest.raises(UsageError) as e:
            call()
        assert str(e.value) == (
            f"{BLANK} name (e.g. backbone='dinov2_vits14'), or leave it out for the one the "
            "upsampler records"
        )
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    argv = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "none"), "-o"]
    assert main([*argv, str(tmp_path / "out"), "--backbone", blank]) == 2
    assert capsys.readouterr().err == (  # the command line's words, its option
        f"error: {BLANK_CLI} a backbone's name (e.g. --backbone dinov2_vits14), or leave it out "
        "for the one -m records\n"  # (not a dead end where it records none: see test_hub_pairing)
    )


def test_an_empty_backbone_s_example_is_of_the_width_of_the_loftup_passed_in(tmp_path):
    """dinov2_vits14 (384-d) was the example for any upsampler: for a 32-d one it fails again,
    on the features' width. Where the LoftUp is passed in, its width is known."""
    from PIL import Image

    from loftup.extract import upsample_folder

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    for call in (
        lambda m: loftup.load_pipeline(m, backbone=""),
        lambda m: upsample_folder([str(tmp_path / "a.png")], tmp_path / "o", model=m, backbone=""),
    ):
        with pytest.raises(UsageError) as e:
            call(loftup.LoftUp(dim=32))
        assert str(e.value).startswith(f"{BLANK} name (e.g. backbone='dinov2_tiny'), or leave")


def test_an_empty_backbone_name_is_said_so_wherever_a_backbone_is_named(tmp_path, capsys):
    """get_featurizer('') and `loftup eval --backbone ""` said "unknown backbone ''" and
    listed every name, the empty string unremarked. From Python, the fix is the argument of
    the call (get_featurizer's name=), not the command line's option."""
    from loftup.cli import main
    from loftup.errors import UnknownNameError

    with pytest.raises(UnknownNameError) as e:
        loftup.get_featurizer("")
    assert str(e.value) == f"{BLANK} name (e.g. name='dinov2_vits14')"  # get_featurizer's name
    from loftup.featurizers import resolve

    with pytest.raises(UnknownNameError) as e:
        resolve(" ")  # (a config's backbone, EvalConfig(backbone=...))
    assert str(e.value) == f"{BLANK} name (e.g. backbone='dinov2_vits14')"
    argv = ["eval", "davis", "--root", str(tmp_path), "--upsampler", "bilinear"]
    assert main([*argv, "--backbone", ""]) == 2
    err = capsys.readouterr().err  # left out: eval's default, not one the upsampler records
    assert err.startswith(f"error: {BLANK_CLI} ") and err.endswith(
        ", or leave it out for its default\n"
    )


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_name_to_download_is_said_to_be_an_unset_variable(capsys, blank):
    """`loftup download ""` said "unknown name ''" and listed every name."""
    from loftup.cli import main

    assert main(["download", blank]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a name to download is empty or blank (an unset variable")
    assert "unknown name" not in err and "loftup_siglip2" not in err
