"""Names given in the wrong place (an upsampler for a backbone, a hub id for a released name,
a released name that is also a folder here, a revision of a released repo): said which goes
where."""

from __future__ import annotations

import pytest

from hub_builders import make_hf_cache
from hub_helpers import _offline_cache
from loftup import CheckpointError, LoftUp, WeightsNotFoundError, load_upsampler
from reference_files import REFERENCE_STATE


def test_an_upsampler_and_a_backbone_swapped_say_which_goes_where(tmp_path):
    """A backbone's folder given as the upsampler was "not a loftup config" or "not a LoftUp
    checkpoint" with advice for upsampler files; an upsampler's folder given as the backbone's
    weights was "a 'unknown' model"."""
    from loftup import get_featurizer

    LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4).save_pretrained(tmp_path / "up")
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "bb")
    for source in (tmp_path / "bb", tmp_path / "bb" / "model.safetensors"):
        with pytest.raises(CheckpointError) as e:
            load_upsampler(source)
        msg = str(e.value)
        assert f"{tmp_path / 'bb'} holds a transformers 'dinov2' model, a backbone's weights" in msg
        assert "--backbone-weights" in msg and "save_pretrained folder" not in msg
    # a backbone in shards (no single weights file) was "holds no weights"
    get_featurizer("dinov2_tiny").model.save_pretrained(tmp_path / "sh", max_shard_size="50KB")
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(tmp_path / "sh")
    assert f"{tmp_path / 'sh'} holds a transformers 'dinov2' model, a backbone's" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        get_featurizer("dinov2_vits14", weights=tmp_path / "up")
    msg = str(e.value)
    assert f"{tmp_path / 'up'} holds a LoftUp upsampler (written by save_pretrained)" in msg
    assert "as the upsampler (the model, CLI -m)" in msg and "unknown" not in msg


@pytest.mark.parametrize("upsampler", ["loftup_dinov2s", "haiwen/loftup-dinov2s"])
def test_names_and_hub_ids_swapped_say_which_goes_where(upsampler, monkeypatch):
    """A backbone's name or hub id given as the upsampler was "unknown upsampler" or "no such
    file or folder: facebook/dinov2-small"; an upsampler's given as the backbone's weights was
    looked up as a backbone's repo ("not in the cache", with a snapshot_download command)."""
    from loftup import get_featurizer
    from loftup.errors import UsageError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for backbone in ("dinov2_vits14", "facebook/dinov2-small"):
        with pytest.raises(UsageError) as e:
            load_upsampler(backbone)
        msg = str(e.value)
        assert (
            msg.startswith(f"{backbone} is ") and "not an upsampler: pass it as the backbone" in msg
        )
        assert "(backbone='dinov2_vits14', CLI --backbone dinov2_vits14)" in msg
        assert "as the upsampler the released loftup_dinov2s or its weights" in msg
    with pytest.raises(UsageError) as e:
        get_featurizer("dinov2_vits14", weights=upsampler)
    msg = str(e.value)
    assert msg.startswith(f"backbone weights for dinov2_vits14: {upsampler} is ")
    assert "pass it as the upsampler (model=, CLI -m)" in msg and "facebook/dinov2-small" in msg
    assert "snapshot_download" not in msg


def test_a_released_name_is_not_taken_for_a_folder_of_the_current_one(tmp_path, monkeypatch):
    """A damaged cached release loaded by name from inside a backbone's folder (a config.json of
    model_type dinov2 in the current folder) was told that "." holds a backbone's weights, not an
    upsampler's, in place of the blob to delete: the name was read as a file of that folder."""
    from huggingface_hub import constants

    from loftup import get_featurizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tiny = tmp_path / "tiny"
    get_featurizer("dinov2_tiny").model.save_pretrained(tiny)
    snap = make_hf_cache(tmp_path / "hub", "haiwen/loftup-dinov2s", {})
    blob = snap.parents[1] / "blobs" / "0123abcd"
    blob.parent.mkdir()
    blob.write_bytes(REFERENCE_STATE.read_bytes()[:500])
    (snap / "pytorch_model.bin").symlink_to(blob)
    monkeypatch.chdir(tiny)
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    assert f"damaged download in the Hugging Face cache: delete {blob} and run " in str(e.value)
    assert "holds a transformers" not in str(e.value)


def test_a_released_upsamplers_hub_repo_or_a_missing_path_says_what_to_pass(tmp_path):
    """``haiwen/loftup-dinov2s`` (what ``loftup download`` also takes) given as the upsampler,
    and a mistyped path, were both "no such file or folder: ...", which named no fix."""
    from loftup.errors import UsageError

    with pytest.raises(UsageError) as e:
        load_upsampler("haiwen/loftup-dinov2s")
    assert str(e.value) == (
        "haiwen/loftup-dinov2s is the hub repo of the released upsampler loftup_dinov2s: pass "
        "its name, loftup_dinov2s, which loads it from there (the Hugging Face cache, or a "
        "download)"
    )
    missing = tmp_path / "nowhere" / "up.safetensors"
    with pytest.raises(WeightsNotFoundError) as e:
        load_upsampler(missing)
    assert str(e.value).startswith(f"no such file or folder: {missing}; check the path, or ")
    assert "pass a released name (loftup_dinov2s, " in str(e.value)


def test_a_revision_of_a_released_or_backbone_repo_is_still_that_repo(tmp_path, monkeypatch):
    """ORG/NAME@REV of a released upsampler's or a backbone's repo is refused as the bare repo
    is (its name to pass; the backbone option), not looked up as an upsampler of one's own
    whose download advice `loftup download` then refused."""
    from loftup.cli import main
    from loftup.errors import UsageError

    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(UsageError, match="hub repo of the released upsampler loftup_dinov2s: "):
        load_upsampler("haiwen/loftup-dinov2s@main")
    with pytest.raises(UsageError, match="backbone dinov2_vits14's hub repo, not an upsampler"):
        load_upsampler("facebook/dinov2-small@v2")
    assert main(["download", "haiwen/loftup-dinov2s@main"]) == 2
    assert main(["download", "facebook/dinov2-small@main"]) == 2


def test_a_released_name_records_the_hub_commit_it_was_read_from(
    tmp_path, monkeypatch, reference_dir
):
    """Stage 2's run.json records init's hub commit from ``model.source_commit``, which a hub
    id's load set and a released name's did not: init=loftup_dinov2s recorded no commit, though
    its repo's main may name other weights later. It is the cache snapshot's commit now."""
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": REFERENCE_STATE}
    )
    _offline_cache(monkeypatch, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    assert load_upsampler("loftup_dinov2s").source_commit == snap.name
    assert not hasattr(load_upsampler(snap / "pytorch_model.bin"), "source_commit")  # a file


def test_a_mistyped_name_is_told_the_close_ones(tmp_path, capsys):
    """`loftup download loftup_dinov2` (and `upsample -m loftup_dinov2`, a backbone's name, an
    eval baseline's) listed every name and none it was close to; a name close to none is said
    as it was."""
    from PIL import Image

    from loftup import get_featurizer
    from loftup.baselines import get_upsampler
    from loftup.cli import main
    from loftup.errors import UnknownNameError
    from loftup.eval.config import check_upsampler

    close = "(did you mean loftup_dinov2s, loftup_dinov2s_reg or loftup_dinov2b?)"
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    upsample = ["upsample", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "-m"]
    for argv, start in (
        (["download", "loftup_dinov2"], "error: unknown name 'loftup_dinov2' "),
        ([*upsample, "loftup_dinov2"], "error: unknown upsampler 'loftup_dinov2' "),
        ([*upsample, "LoftUp-DINOv2"], "error: unknown upsampler 'LoftUp-DINOv2' "),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(start + close) and len(err.splitlines()) == 1, err
    assert main(["download", "sam_vit_bse"]) == 2
    assert "(did you mean sam_vit_base, " in capsys.readouterr().err
    with pytest.raises(UnknownNameError, match=r"'dinov2_vits' \(did you mean dinov2_vits14 or "):
        get_featurizer("dinov2_vits")
    with pytest.raises(UnknownNameError, match=r"bicubic, jbu \(did you mean bilinear\?\)$"):
        get_upsampler("bilinar")
    with pytest.raises(UnknownNameError, match=r"or highres \(did you mean highres\?\)$"):
        check_upsampler("highrez")  # eval's --upsampler
    assert main(["download", "nothing_like_it"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_a_name_of_another_case_or_a_shorthand_is_told_the_names_it_may_mean(capsys):
    """A name that is a known one but for case or '-' was offered two more beside it
    (LoftUp-DINOv2s: loftup_dinov2s, loftup_dinov2b or loftup_dinov2s_reg); a shorthand
    (clip, dinov2, sam) was offered nothing, too short for difflib to call it close."""
    from loftup import get_featurizer
    from loftup.cli import main
    from loftup.errors import UnknownNameError

    assert main(["download", "LoftUp-DINOv2s"]) == 2
    assert "(did you mean loftup_dinov2s?)" in capsys.readouterr().err
    assert main(["download", "sam"]) == 2
    err = capsys.readouterr().err
    assert "(did you mean sam_vit_base, sam_vit_large or sam_vit_huge?)" in err
    with pytest.raises(UnknownNameError, match=r"'clip' \(did you mean clip_vitb16\?\)"):
        get_featurizer("clip")
    with pytest.raises(UnknownNameError, match=r"'DINOv2' \(did you mean dinov2_vits14, d"):
        get_featurizer("DINOv2")


def test_a_suggestion_is_what_the_name_begins_alone_and_never_from_one_letter(capsys):
    """'d' was offered three dinov2 names; 'dinov2_t' was offered dinov2_tiny padded with two
    typo matches (dinov2_vits14, dinov2_vitl14); `download scenes` was offered scenes_vit_p8,
    which download then answered "needs no download"."""
    from loftup.cli import main
    from loftup.errors import did_you_mean
    from loftup.featurizers import FEATURIZERS

    assert did_you_mean("d", FEATURIZERS) == ""
    assert did_you_mean("dinov2_t", FEATURIZERS) == " (did you mean dinov2_tiny?)"
    assert did_you_mean("dinov2_vits", FEATURIZERS).endswith("dinov2_vits14_reg?)")
    assert main(["download", "scenes"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "scenes_vit_p8" not in err
