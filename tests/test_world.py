"""The scene world's backbone: shipped weights, registry, class information where it should be."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from loftup.cli import main
from loftup.data.scene_files import read_world
from loftup.data.scenes import SceneConfig
from loftup.errors import WeightsNotFoundError
from loftup.featurizers import get_featurizer, resolve
from loftup.featurizers.scenes_vit import SceneViT, SceneViTConfig, load_backbone, save_backbone
from loftup.world.backbone import (
    BackboneRecipe,
    patch_colours,
    patch_targets,
    soft_cross_entropy,
    train_backbone,
)
from loftup.world.probe import measure_backbone, near_other_class
from model_helpers import also_in_bfloat16


def test_shipped_backbone_is_registered_and_gives_patch_features():
    spec = resolve("scenes_vit_p8")
    assert (spec.patch_size, spec.dim) == (8, 64)
    model = get_featurizer("scenes_vit_p8")
    assert isinstance(model, SceneViT) and not model.training
    assert sum(p.numel() for p in model.parameters()) < 5e6 / 4
    with torch.no_grad():
        assert model(torch.randn(2, 3, 128, 128)).shape == (2, 64, 16, 16)
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 64, 8, 12)
        # other sizes are resized to the nearest multiple of the patch, halves up
        assert model(torch.randn(1, 3, 100, 60)).shape == (1, 64, 13, 8)
        x = torch.randn(1, 3, 64, 96)
        also_in_bfloat16(model, x, model(x))


def test_shipped_backbone_knows_the_class_per_patch_but_not_per_pixel():
    """On fresh scenes: the class is linearly readable from patch features, and bilinear
    upsampling of those features leaves pixels near boundaries far worse off than inside."""
    model = get_featurizer("scenes_vit_p8")
    report = measure_backbone(model, SceneConfig(), seed=12345, count=24)
    # low-contrast textures: 0.81 and 0.74 here with the shipped weights (chance: 0.125)
    assert report["patch_accuracy_pure"] > 0.75, report
    assert report["patch_accuracy"] > 0.65, report
    gap = report["pixel_accuracy_bilinear_interior"] - report["pixel_accuracy_bilinear_boundary"]
    assert gap > 0.25, report


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SceneViT(config=SceneViTConfig(dim=32, depth=1, num_heads=2, stem=(8, 16))).eval()
    save_backbone(model, tmp_path, {"note": "tiny"})
    again = get_featurizer("scenes_vit_p8", weights=str(tmp_path))
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert json.loads((tmp_path / "config.json").read_text())["note"] == "tiny"
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="loftup world backbone --out DIR"):
        load_backbone(tmp_path)


def test_blank_weights_are_refused_not_read_from_the_current_folder(tmp_path, monkeypatch):
    """get_featurizer("scenes_vit_p8", weights="") (an unset variable: `--weights "$W"`) read
    Path(""), the current folder: a backbone saved there was loaded without a word, and
    elsewhere the error said "model.safetensors not found". Refused as blank, as the other
    backbones' weights are."""
    from loftup import get_featurizer
    from loftup.errors import UsageError

    save_backbone(SceneViT(config=SceneViTConfig(dim=16, depth=1, num_heads=2)), tmp_path)
    monkeypatch.chdir(tmp_path)
    for blank in ("", " "):
        with pytest.raises(UsageError, match="weights are empty or blank"):
            get_featurizer("scenes_vit_p8", weights=blank)


@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_a_config_this_user_may_not_read_is_said_with_its_chmod():
    """Another user's backbone folder whose config.json is of mode 600: a bare PermissionError
    traceback, where its unreadable model.safetensors was said with its owner and chmod."""
    import shutil
    import tempfile

    from as_nobody import as_nobody

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        save_backbone(SceneViT(config=SceneViTConfig(dim=16, depth=1, num_heads=2)), base)
        load_backbone(base)  # (what the child imports)
        (base / "model.safetensors").chmod(0o644)
        (base / "config.json").chmod(0o600)
        said = as_nobody(lambda: load_backbone(base))
        assert said.startswith(f"cannot read scenes_vit_p8 config {base / 'config.json'}: "), said
        assert f"(chmod o+r {base / 'config.json'})" in said
    finally:
        shutil.rmtree(base)


def test_patch_targets_are_class_fractions_and_the_loss_is_minimal_at_them():
    labels = torch.zeros(1, 8, 16, dtype=torch.long)
    labels[:, :, 10:] = 2  # the first patch is all class 0, the second 2/8 class 0 and 6/8 class 2
    t = patch_targets(labels, 8, 3)
    assert t.shape == (1, 3, 1, 2)
    assert torch.allclose(t[0, :, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(t[0, :, 0, 1], torch.tensor([0.25, 0, 0.75]))
    at_target = soft_cross_entropy(t.clamp_min(1e-9).log(), t)
    assert at_target < soft_cross_entropy(torch.zeros_like(t), t)


def test_patch_colours_are_the_mean_colour_of_each_cell_of_each_patch():
    image = torch.zeros(1, 3, 8, 16)
    image[:, 0, :4, :4] = 1.0  # red top-left cell of the first patch
    image[:, 2, :, 8:] = 0.5  # the second patch is blue all over
    c = patch_colours(image, 8, 2)
    assert c.shape == (1, 12, 1, 2)
    cells = c[0, :, 0, 0].view(3, 4)  # channel-major, then the 2 x 2 cells in raster order
    assert torch.equal(cells[0], torch.tensor([1.0, 0, 0, 0])) and not cells[1:].any()
    assert torch.equal(c[0, :, 0, 1].view(3, 4)[2], torch.full((4,), 0.5))


def test_boundary_band():
    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[:, :, 5:] = 1
    band = near_other_class(labels, 2)[0]
    assert band[:, 3:7].all() and not band[:, :3].any() and not band[:, 7:].any()


def test_a_short_training_run_learns_and_writes_a_loadable_backbone(tmp_path):
    torch.manual_seed(0)
    recipe = BackboneRecipe(
        steps=20, batch_size=4, scenes=16, size=32, warmup=5, eval_scenes=0, lr=3e-3
    )
    arch = SceneViTConfig(dim=32, depth=1, num_heads=2, stem=(8, 16))
    metrics = train_backbone(recipe, tmp_path, architecture=arch, progress=False)
    assert metrics["final_loss"] < metrics["first_loss"] - 0.2, metrics
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["recipe"]["steps"] == 20 and saved["metrics"] == metrics
    assert saved["classes"][0] == "stripes_vertical"
    assert load_backbone(tmp_path).dim == 32


def test_cli_world_scenes_and_probe(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "scenes", "--out", str(out), "--count", "2", "--size", "32x48"]) == 0
    assert sorted(p.name for p in (tmp_path / "w" / "sa1b").iterdir()) == [
        "sa_1.jpg",
        "sa_1.json",
        "sa_2.jpg",
        "sa_2.json",
    ]
    assert (
        main(["world", "probe", "--count", "4", "--size", "64", "--json", str(tmp_path / "p.json")])
        == 0
    )
    assert json.loads((tmp_path / "p.json").read_text())["scenes"] == 4
    assert main(["world", "probe", "--weights", str(tmp_path / "nothing")]) == 2
    assert "loftup world backbone --out DIR" in capsys.readouterr().err


def test_world_scenes_failed_before_its_first_scene_starts_afresh_with_other_options(
    tmp_path, monkeypatch, capsys
):
    """A run that failed before any scene file (out of memory at the first scene, a mistaken
    option) left world.partial.json, and every other run into that --out was refused, "delete
    it"; after a scene, going on with the same options is offered, with how far it got."""
    import loftup.data.scene_files as scene_files

    real = scene_files.encode_jpeg

    def out_of_memory_at(n):  # the scene's JPEG: the first of its files
        left = [n]

        def encode(image, quality):
            left[0] -= 1
            if left[0] < 0:
                raise MemoryError
            return real(image, quality)

        return encode

    out = tmp_path / "w"
    args = ["world", "scenes", "--out", str(out), "--size", "16"]
    monkeypatch.setattr(scene_files, "encode_jpeg", out_of_memory_at(0))
    assert main([*args, "--count", "1000", "--size", "512"]) == 2
    assert "out of memory" in capsys.readouterr().err
    assert (out / scene_files.PARTIAL).is_file() and not list(out.rglob("sa_*"))
    monkeypatch.setattr(scene_files, "encode_jpeg", real)
    assert main([*args, "--count", "2"]) == 0
    assert len(read_world(out).names) == 2 and not (out / scene_files.PARTIAL).exists()

    other = tmp_path / "other"
    monkeypatch.setattr(scene_files, "encode_jpeg", out_of_memory_at(2))
    assert main([*args, "--out", str(other), "--count", "4"]) == 2
    monkeypatch.setattr(scene_files, "encode_jpeg", real)
    capsys.readouterr()
    assert main([*args, "--out", str(other), "--count", "3"]) == 2
    assert capsys.readouterr().err == (
        f"error: {other} holds another world (--count 4 -> 3), cut short after 2 scene(s): run "
        "again with its options to finish it, or choose another --out or delete it: its scenes "
        "would be left mixed in with the new ones\n"
    )
    assert main([*args, "--out", str(other), "--count", "4"]) == 0
    assert len(read_world(other).names) == 4


@pytest.mark.parametrize(
    "options, said",
    [
        (["--count", "1"], "error: --count must be at least 2 (half the scenes fit, half score)"),
        (["--seed", "-1"], "error: --seed must be an integer >= 0"),
        (["--size", "100x96"], "error: --size 100x96 is not a multiple of 8"),
    ],
)
def test_world_probe_names_its_options_as_the_command_line_does(options, said, capsys):
    """``world probe --count 1`` said "count must be at least 2": no option is called so."""
    assert main(["world", "probe", *options]) == 2
    assert capsys.readouterr().err.startswith(said)


def test_a_backbone_written_again_and_cut_short_is_refused_not_read_with_the_old_config(
    tmp_path, monkeypatch
):
    """A second ``world backbone`` into the same folder, stopped after its weights but before
    its config.json (or its metrics.json): the folder then held the new weights beside the
    first run's config and metrics, and loaded as if they belonged together."""
    import loftup.atomic
    from loftup.errors import LoftUpError

    tiny = {"steps": 1, "batch_size": 1, "scenes": 2, "size": 16, "warmup": 0, "eval_scenes": 0}
    arch = SceneViTConfig(dim=16, depth=1, num_heads=2, stem=(8, 16))
    train_backbone(BackboneRecipe(**tiny), tmp_path, architecture=arch, progress=False)
    write_json = loftup.atomic.write_json
    for stop_at in ("config.json", "metrics.json"):

        def cut_short(path, obj, stop_at=stop_at, **kw):
            if Path(path).name == stop_at:
                raise KeyboardInterrupt
            return write_json(path, obj, **kw)

        monkeypatch.setattr(loftup.atomic, "write_json", cut_short)
        with pytest.raises(KeyboardInterrupt):
            train_backbone(
                BackboneRecipe(**tiny, seed=1), tmp_path, architecture=arch, progress=False
            )
        monkeypatch.setattr(loftup.atomic, "write_json", write_json)
        if stop_at == "config.json":
            with pytest.raises(LoftUpError, match="config.json not found"):
                load_backbone(tmp_path)
        else:  # the config is the new run's; no metrics.json of the first run beside it
            assert json.loads((tmp_path / "config.json").read_text())["recipe"]["seed"] == 1
            assert not (tmp_path / "metrics.json").exists()
            load_backbone(tmp_path)


def test_a_backbone_out_that_is_a_file_is_refused_before_training(tmp_path):
    """Said before a scene is drawn or a step trained (the command checked it, the library
    trained first and then failed on the file with 'Not a directory')."""
    from loftup.errors import UsageError

    taken = tmp_path / "taken"
    taken.write_bytes(b"x")
    recipe = BackboneRecipe(steps=1, batch_size=1, scenes=2, size=16, eval_scenes=0)
    for out in (taken, taken / "sub"):
        with pytest.raises(UsageError, match=f"^--out {out} (is a file; give a folder|cannot be)"):
            train_backbone(recipe, out, progress=False)
    assert taken.read_bytes() == b"x"


def test_a_probe_size_that_is_no_whole_number_of_patches_is_refused_before_the_scenes():
    """``world probe --size 100``: the backbone sees 104 px (13 patches of 8), the labels were
    cut into 100 // 13 = 7 px patches, and the probe ended in PyTorch's 'Expected input
    batch_size (338) to match target batch_size (392)' traceback."""
    from loftup.errors import UsageError

    model = get_featurizer("scenes_vit_p8")
    for size in ((100, 96), (96, 60)):
        config = SceneConfig(height=size[0], width=size[1])
        with pytest.raises(UsageError, match=rf"{size[0]}x{size[1]} .* multiple of 8 .*, e.g. "):
            measure_backbone(model, config, count=2)


@pytest.mark.parametrize(
    "command",
    [["world", "scenes", "--count", "1"], ["world", "backbone", "--steps", "1"], ["demo"]],
)
def test_world_out_under_a_home_of_no_user_is_one_line(command, capsys):
    """`--out '~nobody/w'` (no such user) was Path.expanduser's bare RuntimeError traceback."""
    assert main([*command, "--out", "~no_such_user_loftup/w"]) == 2
    assert capsys.readouterr().err == (
        "error: --out ~no_such_user_loftup/w: ~no_such_user_loftup is no home folder (no user "
        "no_such_user_loftup on this machine); give the path without it, e.g. its "
        "absolute path\n"
    )


def test_backbone_training_shows_progress_while_it_makes_its_scene_pool(tmp_path, capsys):
    """The shipped recipe first generates 3,000 scenes (tens of ms each: minutes) with no bar
    before the training's own; the pool now has one (none with ``progress=False``)."""
    recipe = BackboneRecipe(steps=1, batch_size=2, scenes=3, size=16, warmup=0, eval_scenes=0)
    arch = SceneViTConfig(dim=32, depth=1, num_heads=2, stem=(8, 16))
    train_backbone(recipe, tmp_path / "a", architecture=arch)
    err = capsys.readouterr().err
    assert re.search(r"scenes: 100%.*3/3", err) and "backbone" in err
    train_backbone(recipe, tmp_path / "b", architecture=arch, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("one_thread")  # tiny L-BFGS fits: two threads only fight
def test_world_probe_s_json_says_which_backbone_it_measured(tmp_path, capsys, monkeypatch):
    """`loftup world probe --weights DIR --json OUT` wrote the same fields as a probe of the
    shipped backbone: the numbers did not say whose they were. (`--weights=~/DIR`, which the
    shell leaves alone, was "not found": ~ is the home folder, as in loftup's other paths.)
    Its scenes are made under a progress bar."""
    torch.manual_seed(0)
    model = SceneViT(config=SceneViTConfig(dim=32, depth=1, num_heads=2, stem=(8, 16))).eval()
    save_backbone(model, tmp_path / "bb")
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["world", "probe", "--count", "2", "--size", "16", "--json", "-"]
    assert main([*argv, "--weights=~/bb"]) == 0
    said = capsys.readouterr()
    assert json.loads(said.out)["weights"] == "~/bb"
    # read where the folder is read, so every way in takes ~ (--backbone-weights=~/bb too)
    from loftup.featurizers import get_featurizer

    assert get_featurizer("scenes_vit_p8", weights="~/bb").config == model.config
    # the scenes are made under a bar (a --count of thousands took minutes without a word)
    assert re.search(r"scenes: 100%.*2/2", said.err)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "scenes_vit_p8 (shipped)"
