"""A released upsampler and the backbone it runs on: told where either is missing, warned
where they are not a pair."""

from __future__ import annotations

import pytest
import torch

from hub_builders import make_hf_cache
from loftup import LoftUp
from loftup.hub import native_to_reference
from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release


def test_a_released_upsampler_missing_offline_is_said_as_its_backbone_is(
    monkeypatch, capsys, tmp_path
):
    """`loftup upsample -m loftup_dinov2s` offline without the weights names the file and how
    to provide them in one line, as for its backbone: in the cache from a machine with
    network, or a local path. It gave `loftup download`'s own advice (unset HF_HUB_OFFLINE to
    download), meant for the command that downloads."""
    import huggingface_hub
    from PIL import Image

    from loftup.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    assert main(["upsample", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "file 'pytorch_model.bin' of hub repo 'haiwen/loftup-dinov2s' is not in the " in err
    assert "HF_HUB_OFFLINE=1 is set" in err and "Unset it to download" not in err
    assert "`loftup download loftup_dinov2s` on a machine with network" in err
    # the file alone does not record its backbone: the advice names it, or it would fail again
    assert "`loftup upsample -m /path/to/pytorch_model.bin --backbone dinov2_vits14`" in err
    assert "load_pipeline('/path/to/pytorch_model.bin', backbone='dinov2_vits14')" in err
    # its backbone is missing too, and said so at once (not on the run after -m /path)
    assert "the backbone's weights are missing too" in err and "'facebook/dinov2-small'" in err
    assert "--backbone-weights /path/to/folder" in err


def test_an_upsampler_without_its_backbone_is_told_the_backbones_of_its_width():
    """The advice for an upsampler that does not record its backbone named dinov2_vits14
    (384-d) whatever its width: a 768-d one given that failed again, on its features' width.
    A LoftUp passed in was named by its module's repr, dozens of lines."""
    from loftup import LoftUpError, load_pipeline

    for dim, fits, not_fits in ((768, "dinov2_vitb14, ", "vits14"), (32, "dinov2_tiny", "vit")):
        with pytest.raises(LoftUpError, match="does not record its backbone") as e:
            load_pipeline(LoftUp(dim=dim, depth=1, num_heads=2, n_freqs=4))
        assert f"backbones of its {dim}-d features: " in str(e.value) and "\n" not in str(e.value)
        assert fits in str(e.value) and not_fits not in str(e.value)
        assert "siglip_vitb16" in str(e.value) or dim != 768


def test_an_upsampler_without_its_backbone_is_told_so_in_the_command_line_s_words(tmp_path, capsys):
    """`loftup upsample -m FILE` of an upsampler that records no backbone was told "name it
    with backbone=NAME (CLI: --backbone NAME)", Python's words first on the command line."""
    from PIL import Image

    from loftup.cli import main

    # in the paper's layout (its 4 heads): loftup's own would warn that its heads are not known
    torch.save(native_to_reference(LoftUp(dim=32).state_dict()), tmp_path / "m32.pt")
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    argv = ["upsample", str(tmp_path / "a.png"), "-m", str(tmp_path / "m32.pt")]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines(keepends=True)  # torch < 2.6's pickle warning out
    assert "".join(line for line in err if "CVE-2025-32434" not in line) == (
        f"error: the upsampler {tmp_path / 'm32.pt'} does not record its backbone; name it with "
        "--backbone NAME, one of the backbones of its 32-d features: dinov2_tiny\n"
    )


def test_a_missing_upsampler_names_its_backbone_only_where_that_is_missing(tmp_path, monkeypatch):
    """Offline, load_pipeline names every missing file in its one error: the released
    upsampler's, and its backbone's where that is not in the cache (or at the folder given)."""
    from huggingface_hub import constants

    from loftup import WeightsNotFoundError, get_featurizer, load_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    both = "haiwen/loftup-dinov2s", "the backbone's weights are missing too"
    with pytest.raises(WeightsNotFoundError) as e:
        load_pipeline("loftup_dinov2s")
    assert all(words in str(e.value) for words in both) and "\n" not in str(e.value)
    assert "'facebook/dinov2-small'" in str(e.value)
    with pytest.raises(WeightsNotFoundError, match="'facebook/dinov2-base'"):
        load_pipeline("loftup_clip", backbone="dinov2_vitb14")  # the backbone asked for
    folder = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(folder)
    make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", {p.name: p for p in folder.iterdir()})
    for kw in ({}, {"backbone_weights": folder}):  # in the cache, or a local folder
        with pytest.raises(WeightsNotFoundError, match="haiwen/loftup-dinov2s") as e:
            load_pipeline("loftup_dinov2s", **kw)
        assert "missing too" not in str(e.value) and "facebook/" not in str(e.value)


def test_a_missing_upsampler_does_not_download_its_backbone_to_say_so(
    tmp_path, local_hub, monkeypatch
):
    """A typo in the upsampler's path, with the hub in reach: load_pipeline downloaded the
    backbone's whole weights (4.5 GB for dinov2_vitg14) to find out whether they were missing
    too, and only then said that the upsampler's file was not there. Where the hub answers,
    the run fetches the backbone itself: it is not missing, and nothing is downloaded."""
    from hub_helpers import _use_mirror
    from loftup import WeightsNotFoundError, load_pipeline

    files = {("facebook/dinov2-small", n): b"{}" for n in ("config.json", "model.safetensors")}
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    with pytest.raises(WeightsNotFoundError, match="missing.bin") as e:
        load_pipeline(str(tmp_path / "missing.bin"), backbone="dinov2_vits14")
    assert "missing too" not in str(e.value)
    assert not [path for _, path in local_hub.requests if "dinov2" in path]


def test_a_released_upsampler_on_a_neighbouring_backbone_is_warned_about(tmp_path, monkeypatch):
    """loftup_siglip given siglip2_vitb16 (both 768-d): the width matched, so the features came
    out wrong without a word. The registry's backbone is compared with the one given."""
    import warnings

    from huggingface_hub import constants

    import loftup.pipeline
    from loftup import load_pipeline
    from loftup.featurizers import Featurizer
    from loftup.pipeline import BackboneMismatchWarning

    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = LoftUp(dim=768)  # a stand-in of its architecture (any other is refused)
    torch.save(native_to_reference(model.state_dict()), tmp_path / "pytorch_model.bin")
    weights = {"pytorch_model.bin": tmp_path / "pytorch_model.bin"}
    make_hf_cache(tmp_path / "hub", "haiwen/loftup-siglip", weights)
    backbone = Featurizer()  # the pipeline is only built: a stand-in of the backbone's width
    backbone.dim, backbone.patch_size = 768, 16
    backbone.name = "siglip2_vitb16"  # the neighbour's name, on a backbone of the same width
    pickle_warned = torch_release() < SAFE_PICKLE_TORCH  # the released .bin, CVE-2025-32434
    with pytest.warns(BackboneMismatchWarning) as told:
        load_pipeline("loftup_siglip", backbone=backbone)
    told = [w for w in told if not (pickle_warned and "CVE-2025-32434" in str(w.message))]
    assert str(told[0].message).startswith(
        "backbone mismatch: the upsampler loftup_siglip was trained on siglip_vitb16's "
        "features, not siglip2_vitb16's"
    )
    backbone.name = "siglip_vitb16"  # its own: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if pickle_warned:
            warnings.filterwarnings("ignore", "loading .*CVE-2025-32434")
        load_pipeline("loftup_siglip", backbone=backbone)


def test_two_upsamplers_without_a_source_are_each_warned_about(monkeypatch):
    """The mismatch warning is said once per upsampler and pairing; it was keyed by the
    upsampler's source, and every LoftUp built in the process has none ("None" for all): a
    second, different upsampler run on the same wrong backbone was not warned about."""
    import warnings

    import loftup.mismatch
    from loftup import load_pipeline
    from loftup.pipeline import BackboneMismatchWarning

    monkeypatch.setattr(loftup.mismatch, "_WARNED_MISMATCH", set())
    first, second = (LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4) for _ in range(2))
    for upsampler in (first, second):
        upsampler.backbone = "tiny_of_my_own"
        with pytest.warns(BackboneMismatchWarning, match="tiny_of_my_own's features, not dinov2"):
            load_pipeline(upsampler, backbone="dinov2_tiny")
    with warnings.catch_warnings():  # each once: the same one again is not said twice
        warnings.simplefilter("error")
        load_pipeline(first, backbone="dinov2_tiny")
        load_pipeline(second, backbone="dinov2_tiny")


def test_an_unknown_backbone_is_refused_before_the_upsampler_is_looked_for(tmp_path, monkeypatch):
    """A typo in --backbone is said first, with the close names: it was said only inside the
    released upsampler's missing-file error ("and the backbone's weights are missing too:
    unknown backbone"), as if a download would mend it."""
    from huggingface_hub import constants

    from loftup import load_pipeline
    from loftup.errors import UnknownNameError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UnknownNameError, match="unknown backbone 'dinov2_vits'") as e:
        load_pipeline("loftup_dinov2s", backbone="dinov2_vits")
    assert "did you mean dinov2_vits14" in str(e.value) and "haiwen/" not in str(e.value)


def _small_dinov2(folder, width: int):
    """A DINOv2 of dinov2_tiny's architecture at ``width``, saved in the Hugging Face layout."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=width, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=28
    )
    Dinov2Model(config).save_pretrained(folder)
    return folder


def test_a_backbone_of_another_width_is_refused_at_the_save_not_at_the_load(tmp_path):
    """LoftUp(dim=64) saved recording dinov2_tiny (32-d) was written; its load then refused the
    pairing and told to "pass the backbone it was trained with, dinov2_tiny", the one that had
    just failed. The save says it, weights of that width first, and writes nothing; those
    weights given (a small model of that architecture), the record says so, and its load
    asks for them first, not for an unrelated backbone of that width (scenes_vit_p8), which
    ran with a backbone mismatch."""
    import json

    import loftup
    from loftup.errors import UsageError

    model = LoftUp(dim=64, depth=1, num_heads=2, n_freqs=4)
    with pytest.raises(UsageError) as e:
        model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    said = str(e.value)
    assert "dinov2_tiny gives 32-d features but this upsampler takes 64-d ones" in said
    weights, other = said.index("backbone_weights=PATH"), said.index("scenes_vit_p8")
    assert weights < other and "a different backbone, of 64-d features: scenes_vit_p8" in said
    assert not (tmp_path / "up").exists()
    small = _small_dinov2(tmp_path / "small", 64)
    folder = model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny", backbone_weights=small)
    record = json.loads((folder / "config.json").read_text())
    assert record["backbone"] == "dinov2_tiny" and record["backbone_weights_dim"] == 64
    with pytest.raises(loftup.LoftUpError) as e:
        loftup.load_pipeline(folder)
    said = str(e.value)
    assert "was trained on weights of dinov2_tiny's architecture at another width" in said, said
    assert "backbone_weights=PATH (CLI --backbone-weights PATH)" in said
    assert "scenes_vit_p8" not in said and "inconsistent" not in said
    assert loftup.load_pipeline(folder, backbone_weights=small).featurizer.dim == 64
    # loaded and saved again with its backbone, the record is kept (it was refused)
    again = loftup.load_upsampler(folder).save_pretrained(tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["backbone_weights_dim"] == 64

    # the one passed is warned about, but not told to leave it out "to run dinov2_tiny",
    # which fails as above
    with pytest.warns(loftup.BackboneMismatchWarning) as told:
        assert loftup.load_pipeline(folder, backbone="scenes_vit_p8").featurizer.dim == 64
    said = str(told[0].message)
    assert "records dinov2_tiny, whose 32-d features it does not take (it takes 64-d" in said
    assert "again with backbone='scenes_vit_p8'; if weights of dinov2_tiny's " in said, said
    assert "to run dinov2_tiny" not in said


def test_a_record_of_another_width_without_its_flag_names_the_weights_first(tmp_path):
    """A record of a backbone of another width that does not say it was trained on weights of
    that width (a save before the record had the key, loftup train's on a small model): its
    load asks for those weights first, and names a different backbone of its width only as
    the other way, never the recorded one."""
    import json

    import loftup

    model = LoftUp(dim=64, depth=1, num_heads=2, n_freqs=4)
    folder = model.save_pretrained(tmp_path / "up", backbone="dinov2_tiny", backbone_weights="w")
    record = json.loads((folder / "config.json").read_text())
    del record["backbone_weights_dim"]
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(loftup.LoftUpError) as e:
        loftup.load_pipeline(folder)
    said = str(e.value)
    assert "records dinov2_tiny all the same: if it was trained on weights of " in said
    weights, other = said.index("backbone_weights=PATH"), said.index("scenes_vit_p8")
    assert weights < other and "recording that one (a different backbone, of 64-d " in said


def test_a_training_checkpoint_of_a_run_on_weights_of_another_width_saves_as_its_final(
    tmp_path,
):
    """loftup train's checkpoint.pt of a run on weights of dinov2_tiny's architecture at 64-d
    (backbone_weights in its config) records that as its final/ does (backbone_weights_dim):
    loaded and saved with save_pretrained it was refused (trained on weights of another width:
    pass them), and its load_pipeline said the record might be of the wrong backbone."""
    import json

    import loftup

    model = LoftUp(dim=64, depth=1, num_heads=2, n_freqs=4)
    small = _small_dinov2(tmp_path / "small", 64)
    ckpt = {
        "format": "loftup-train", "model": model.state_dict(),
        "model_config": model.config.to_dict(), "backbone": "dinov2_tiny",
        "backbone_norm": "imagenet", "config": {"backbone_weights": str(small)},
    }  # fmt: skip
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    loaded = loftup.load_upsampler(tmp_path / "checkpoint.pt")
    folder = loaded.save_pretrained(tmp_path / "up")
    assert json.loads((folder / "config.json").read_text())["backbone_weights_dim"] == 64
    (tmp_path / "run").mkdir()  # the checkpoint in a folder of its own, as model.pt
    torch.save(ckpt, tmp_path / "run" / "model.pt")
    assert loftup.load_upsampler(tmp_path / "run").backbone_weights_dim == 64
    for source in (tmp_path / "checkpoint.pt", folder):
        with pytest.raises(loftup.LoftUpError) as e:
            loftup.load_pipeline(source)
        assert "was trained on weights of dinov2_tiny's architecture at another" in str(e.value)
    assert loftup.load_pipeline(folder, backbone_weights=small).featurizer.dim == 64
    # a run on the backbone's own weights records nothing of the kind, and is refused as before
    ckpt["config"] = {"backbone_weights": None}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(loftup.errors.UsageError, match="backbone_weights=PATH"):
        loftup.load_upsampler(tmp_path / "checkpoint.pt").save_pretrained(tmp_path / "no")
