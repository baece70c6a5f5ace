"""load_pipeline and loftup.upsample given a backbone other than the one the upsampler records:
warned once where it is of the upsampler's width, refused naming the one trained on where it
is not, silent where it is the one or none is known."""

from __future__ import annotations

import pytest
import torch

import loftup

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on shared cores


@pytest.fixture
def image():
    return torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def mismatch_unwarned(monkeypatch):
    """No pairing warned about yet in this process (the warning is once per pairing)."""
    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())


@pytest.fixture
def own_backbones(monkeypatch):
    """Backbones of a user's own, registered for the test (save_pretrained records only a
    name the load can build): tiny_of_my_own (32-d) and my_64d_backbone."""
    import dataclasses

    from loftup.featurizers import FEATURIZERS

    tiny = FEATURIZERS["dinov2_tiny"]
    for name, dim in (("tiny_of_my_own", 32), ("my_64d_backbone", 64)):
        monkeypatch.setitem(FEATURIZERS, name, dataclasses.replace(tiny, name=name, dim=dim))


def test_an_upsampler_run_on_another_backbone_of_its_width_is_warned_about_once(
    tmp_path, image, mismatch_unwarned, own_backbones
):
    """An upsampler that records the backbone it was trained on, given another of the same
    width (loftup_siglip on siglip2_vitb16): only the width was checked, and the wrong features
    came out without a word. One warning naming both, and how to silence it when intended."""
    import warnings

    from loftup.pipeline import BackboneMismatchWarning

    folder = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="tiny_of_my_own")
    with pytest.warns(BackboneMismatchWarning) as told:
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
    assert len(told) == 1
    message = str(told[0].message)
    assert message.startswith(f"backbone mismatch: the upsampler {folder} was trained on ")
    assert "tiny_of_my_own's features, not dinov2_tiny's" in message and "\n" not in message
    with warnings.catch_warnings():  # once: neither a second pipeline nor upsample says it again
        warnings.simplefilter("error")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
        loftup.upsample(image, model=folder, backbone="dinov2_tiny", backbone_size=28)
    # the advice silences it, as the command line's PYTHONWARNINGS does
    loftup.mismatch._WARNED_MISMATCH.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "backbone mismatch")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")


def test_the_command_line_prints_the_backbone_mismatch_on_one_line(
    tmp_path, capsys, mismatch_unwarned, own_backbones
):
    from PIL import Image

    from loftup.cli import main

    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="tiny_of_my_own")
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "up"), "-o"]
    assert main([*args, str(tmp_path / "out"), "--backbone", "dinov2_tiny"]) == 0
    lines = capsys.readouterr().err.splitlines()
    told = [line for line in lines if "backbone mismatch" in line]
    assert len(told) == 1 and told[0].startswith("warning: backbone mismatch: "), lines
    assert "tiny_of_my_own" in told[0] and "dinov2_tiny" in told[0]


def test_no_backbone_warning_where_it_is_the_one_trained_on_or_unknown(
    tmp_path, mismatch_unwarned, own_backbones
):
    """The backbone the upsampler records, and any backbone for one that records none (a bare
    weights file, a LoftUp built in code), or a Featurizer of an unregistered name: no word."""
    import warnings

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "up"
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    bare = tmp_path / "bare.safetensors"  # the weights alone, without save_pretrained's record
    save_file(load_file(folder / "model.safetensors"), bare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
        # (the bare file's heads are said read with the default 4: not a backbone's warning)
        warnings.filterwarnings("ignore", ".* without a record of its attention heads")
        pipeline = loftup.load_pipeline(bare, backbone="dinov2_tiny")
        assert pipeline.upsampler.backbone is None  # the case: nothing recorded
        loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny")
        own = pipeline.featurizer
        own.name = "my_module"
        trained = loftup.LoftUp(dim=32)
        trained.backbone = "dinov2_tiny"
        loftup.load_pipeline(trained, backbone=own)
    # a registered name of another backbone of its width, the same Featurizer: told
    own.name = "dinov2_tiny"
    trained.backbone = "tiny_of_my_own"
    with pytest.warns(UserWarning, match="^backbone mismatch: the upsampler was trained on "):
        loftup.load_pipeline(trained, backbone=own)


def test_a_backbone_of_another_width_names_the_one_trained_on(tmp_path, own_backbones):
    """The width error's fix, "pass the backbone it was trained with", names it when known."""
    folder = tmp_path / "up"
    loftup.LoftUp(dim=64).save_pretrained(folder, backbone="my_64d_backbone")
    with pytest.raises(loftup.LoftUpError) as told:
        loftup.load_pipeline(folder, backbone="dinov2_tiny")
    assert str(told.value).endswith("pass the backbone it was trained with, my_64d_backbone")
