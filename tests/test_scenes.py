"""The synthetic world: determinism, label/instance consistency, SA-1B files, texture not colour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loftup.data.scene_files import read_world, write_scenes
from loftup.data.scenes import SceneConfig, generate_scene
from loftup.data.textures import FAMILIES
from loftup.errors import UsageError

SMALL = SceneConfig(height=64, width=80, num_classes=6)


def test_same_seed_same_bytes_and_scenes_independent_of_count(tmp_path):
    a = write_scenes(tmp_path / "a", SMALL, 3, seed=7, progress=False)
    b = write_scenes(tmp_path / "b", SMALL, 3, seed=7, progress=False)
    c = write_scenes(tmp_path / "c", SMALL, 1, seed=7, start=2, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 3
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    for suffix in ("sa1b/sa_3.jpg", "sa1b/sa_3.json", "labels/sa_3.png"):
        assert (a / suffix).read_bytes() == (c / suffix).read_bytes()
    other = generate_scene(SMALL, 8, 0)
    assert not np.array_equal(other.image, generate_scene(SMALL, 7, 0).image)


def test_labels_are_the_class_of_the_visible_region():
    for i in range(5):
        s = generate_scene(SMALL, 0, i)
        assert s.image.shape == (64, 80, 3) and s.labels.shape == (64, 80)
        np.testing.assert_array_equal(s.labels, s.classes[s.instances])
        assert s.labels.max() < SMALL.num_classes
        # every kept mask is one class, masks are disjoint, and they cover almost everything
        cover = np.zeros(s.labels.shape, dtype=int)
        for k in s.masks:
            m = s.mask(k)
            assert m.sum() >= SMALL.min_area
            assert len(np.unique(s.labels[m])) == 1
            cover += m
        assert cover.max() == 1 and cover.mean() > 0.97
        assert len(s.masks) >= 4 and len(np.unique(s.labels)) >= 2


def test_sa1b_json_decodes_back_to_the_generated_masks(tmp_path):
    from pycocotools import mask as mask_utils

    world = read_world(write_scenes(tmp_path, SMALL, 2, seed=3, progress=False))
    assert world.names == ["sa_1", "sa_2"] and world.config == SMALL
    for i, name in enumerate(world.names):
        scene = generate_scene(SMALL, 3, i)
        meta = json.loads((tmp_path / "sa1b" / f"{name}.json").read_text())
        assert meta["image"] == {
            "image_id": i + 1,
            "width": 80,
            "height": 64,
            "file_name": f"{name}.jpg",
        }
        assert len(meta["annotations"]) == len(scene.masks)
        for ann, k in zip(meta["annotations"], scene.masks):
            mask = scene.mask(k)
            np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), mask)
            ys, xs = np.nonzero(mask)
            assert ann["area"] == mask.sum()
            assert ann["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            x, y = ann["point_coords"][0]
            assert mask[int(y), int(x)]
            assert ann["crop_box"] == [0, 0, 80, 64]
            assert {"id", "predicted_iou", "stability_score"} <= set(ann)
        image, labels, masks = world.load(name)
        np.testing.assert_array_equal(labels, scene.labels)
        np.testing.assert_array_equal(masks, np.stack([scene.mask(k) for k in scene.masks]))
        # JPEG at quality 95 without chroma subsampling stays below the scenes' own noise
        assert np.abs(image.astype(float) - scene.image).mean() < 5


def _histogram_classifier_accuracy(code, train, test, classes: int) -> float:
    """Fit argmax P(class | code) on ``train`` scenes, return pixel accuracy on ``test``."""
    counts = np.zeros((int(max(code(s).max() for s in train + test)) + 1, classes))
    for s in train:
        np.add.at(counts, (code(s), s.labels.ravel()), 1)
    guess = counts.argmax(1)
    return float(np.mean(np.concatenate([guess[code(s)] == s.labels.ravel() for s in test])))


def _colour_code(s):
    return (s.image.reshape(-1, 3) // 32).astype(int) @ np.array([64, 8, 1])


def _texture_code(s):
    """Which of 8 neighbours (distance 1 and 2, four directions) has about the same colour."""
    img = np.pad(s.image.astype(int), ((2, 2), (2, 2), (0, 0)), mode="edge")
    h, w = s.labels.shape
    code = np.zeros((h, w), dtype=int)
    offsets = [(0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (2, 2), (2, -2)]
    for bit, (dy, dx) in enumerate(offsets):
        other = img[2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]
        same = np.abs(other - img[2 : 2 + h, 2 : 2 + w]).sum(-1) < 40
        code |= same.astype(int) << bit
    return code.ravel()


def test_a_pixels_colour_does_not_tell_its_class_but_its_texture_does():
    """The same histogram classifier: colour of a pixel is no better than guessing the most
    frequent class; the arrangement of colours around it is far better."""
    cfg = SceneConfig(height=64, width=64, num_classes=8)
    scenes = [generate_scene(cfg, 1, i) for i in range(60)]
    train, test = scenes[:40], scenes[40:]
    labels = np.concatenate([s.labels.ravel() for s in test])
    majority = np.bincount(labels, minlength=8).max() / labels.size
    colour = _histogram_classifier_accuracy(_colour_code, train, test, 8)
    texture = _histogram_classifier_accuracy(_texture_code, train, test, 8)
    assert colour < majority + 0.03, (colour, majority)
    assert texture > majority + 0.15, (texture, majority)


def test_config_errors_name_the_problem():
    with pytest.raises(
        ValueError, match=r"num_classes \(texture families\) must be between 2 and 12"
    ):
        SceneConfig(num_classes=13)
    with pytest.raises(ValueError, match="unknown texture families"):
        SceneConfig(families=("stripes_vertical", "tartan"), num_classes=2)
    with pytest.raises(ValueError, match="radius must be"):
        SceneConfig(radius=(0.5, 0.1))
    # a period of 0 px was 'math domain error' from the first scene drawn (its log-uniform draw)
    with pytest.raises(UsageError, match=r"period must be a \(min, max\) pair with 0 < min <= max"):
        SceneConfig(period=(0.0, 7.0))
    assert len(FAMILIES) == 12
    # what NumPy would paint as NaN (scale 0) or refuse deep inside (a NaN texture scale)
    with pytest.raises(UsageError, match="scale .* finite number > 0, got 0"):
        SceneConfig(scale=0)
    with pytest.raises(UsageError, match="texture_scale .*finite"):
        SceneConfig(texture_scale=(1.0, float("nan")))
    # a texture period past float32 (an OverflowError traceback from NumPy) or below it (noise)
    with pytest.raises(
        UsageError, match=r"scale .* > 0, got 1e\+308; it goes from 1e-06 to 1e\+06"
    ):
        SceneConfig(scale=1e308)
    with pytest.raises(UsageError, match=r"texture_scale .* 1e-06 to 1e\+06\), got 1e-40 1"):
        SceneConfig(texture_scale=(1e-40, 1.0))
    with pytest.raises(UsageError, match=r"texture_scale .* got 1 1e\+07"):
        SceneConfig(texture_scale=(1.0, 1e7))
    extreme = SceneConfig(height=16, width=16, scale=1e6, texture_scale=(1e-6, 1e6))
    assert generate_scene(extreme, 0).image.shape == (16, 16, 3)  # the bounds themselves draw
    with pytest.raises(UsageError, match="noise must be a finite number >= 0"):
        SceneConfig(noise=-0.1)
    with pytest.raises(UsageError, match="at least 8x8"):
        SceneConfig(height=8.5)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"count": 0}, "count .* at least 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"start": True}, "start .* >= 0, got True"),
        ({"quality": 0}, "quality .* between 1 and 100"),
    ],
)
def test_write_scenes_refuses_its_range_before_making_the_folder(kwargs, words, tmp_path):
    args = {"count": 2, **kwargs}
    with pytest.raises(UsageError, match=words):
        write_scenes(tmp_path / "w", SceneConfig(height=16, width=16), args.pop("count"), **args)
    assert not (tmp_path / "w").exists()


def test_write_scenes_into_a_file_says_so_and_leaves_it_alone(tmp_path):
    """It said '...afile/world.json cannot be read ([Errno 20] Not a directory...); choose
    another --out or delete it', which read as if a world were damaged, and told the user to
    delete their file."""
    taken = tmp_path / "afile"
    taken.write_bytes(b"x")
    cfg = SceneConfig(height=16, width=16)
    with pytest.raises(UsageError, match=rf"^--out {taken} is a file; give a folder$"):
        write_scenes(taken, cfg, 1)
    with pytest.raises(UsageError, match=rf"^--out {taken / 'w'} cannot be written: {taken} is a"):
        write_scenes(taken / "w", cfg, 1)
    assert sorted(tmp_path.iterdir()) == [taken] and taken.read_bytes() == b"x"


def test_config_round_trips_through_json():
    cfg = SceneConfig(height=48, texture_scale=(1.0, 2.0), families=tuple(FAMILIES)[::-1])
    again = SceneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.class_names == cfg.class_names


def test_scale_makes_the_same_world_bigger():
    """Twice the size at scale 2: same layout, so labels downsampled match the small scene's."""
    small = generate_scene(SceneConfig(height=64, width=64), 5, 0)
    big = generate_scene(SceneConfig(height=128, width=128, scale=2.0), 5, 0)
    assert big.classes.tolist() == small.classes.tolist()
    agree = (big.labels[1::2, 1::2] == small.labels).mean()
    assert agree > 0.9


def test_region_boundaries_are_stronger_than_the_edges_inside_textures():
    """Texture colours lie texture_contrast apart around a random mean, so neighbouring pixels
    of two regions differ far more, on average, than neighbouring pixels of one region."""
    cfg = SceneConfig(height=64, width=64, noise=0.0)
    inside, across = [], []
    for i in range(20):
        s = generate_scene(cfg, 3, i)
        img = s.image.astype(float) / 255
        for a, b, ia, ib in (
            (img[1:], img[:-1], s.instances[1:], s.instances[:-1]),
            (img[:, 1:], img[:, :-1], s.instances[:, 1:], s.instances[:, :-1]),
        ):
            d = np.linalg.norm(a - b, axis=-1)
            inside.append(d[ia == ib])
            across.append(d[ia != ib])
    inside, across = np.concatenate(inside), np.concatenate(across)
    assert inside.max() <= 0.25 + 2 / 255, inside.max()  # at most the largest contrast
    assert across.mean() > 2.5 * inside.mean(), (across.mean(), inside.mean())
    with pytest.raises(ValueError, match="texture_contrast must be"):
        SceneConfig(texture_contrast=(0.3, 0.1))


def test_training_on_a_world_folder_reads_its_images_not_its_label_maps(tmp_path):
    """The world's labels/*.png are PNG images too; superpixel masks once trained on them as
    well (200 "images" for 100 scenes)."""
    pytest.importorskip("skimage")
    from loftup.data.dataset import MaskedImages

    out = write_scenes(tmp_path / "w", SceneConfig(height=16, width=16), 3, progress=False)
    for masks in ("superpixels", "sa1b"):
        data = MaskedImages(out, size=16, masks=masks, cache_dir=tmp_path / "c")
        assert len(data) == 3 and all(p.parent.name == "sa1b" for p in data.images), masks


def test_a_world_is_not_written_over_a_world_of_other_options(tmp_path):
    """Into a folder that holds 4 scenes of seed 0, 2 scenes of seed 3 would have left the old
    ones beside a world.json saying 2 of seed 3; the same world again is rewritten."""
    cfg = SceneConfig(height=16, width=16)
    out = write_scenes(tmp_path / "w", cfg, 4, progress=False)
    before = (out / "sa1b" / "sa_1.jpg").read_bytes()
    with pytest.raises(UsageError, match=r"holds another world \(seed 0 -> 3; count 4 -> 2\)"):
        write_scenes(out, cfg, 2, seed=3, progress=False)
    # the values that differ, by name (the class names follow from num_classes: not said)
    with pytest.raises(UsageError) as e:
        other = SceneConfig(height=16, width=24, num_classes=4, noise=0.05)
        write_scenes(out, other, 4, quality=90, progress=False)
    assert f"{out} holds another world (quality 95 -> 90; size 16x16 -> 16x24; noise 0.02 -> " in (
        str(e.value)
    )
    assert "0.05; num_classes 8 -> 4); choose another --out or delete it" in str(e.value)
    write_scenes(out, cfg, 4, progress=False)
    assert (out / "sa1b" / "sa_1.jpg").read_bytes() == before
    assert read_world(out).seed == 0 and len(read_world(out).names) == 4
    (out / "world.json").write_text("[]")  # not what write_scenes writes: refused, named
    with pytest.raises(UsageError, match=r"world.json cannot be read \(a JSON object was expe"):
        write_scenes(out, cfg, 4, progress=False)


def test_a_world_is_read_back_from_the_path_it_was_written_to_with_a_tilde(tmp_path, monkeypatch):
    """write_scenes("~/w") wrote into the home folder, and read_world("~/w") then said that
    ~/w is no scene folder (it looked for ./~/w)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_scenes("~/w", SceneConfig(height=16, width=16), 2, progress=False)
    world = read_world("~/w")
    assert world.root == tmp_path / "w" and world.names == ["sa_1", "sa_2"]


def test_world_scenes_errors_name_the_options_typed(tmp_path, capsys):
    """`loftup world scenes` said `texture_contrast must be None or (MIN, MAX)` and `holds another
    world (scene config differs)`: the config's names, not the options typed, nor which one."""
    from loftup.cli import main

    out = tmp_path / "w"
    args = ["world", "scenes", "--out", str(out), "--count", "2", "--size", "16"]
    assert main([*args, "--texture-contrast", "0.3", "0.1"]) == 2
    assert capsys.readouterr().err == (
        "error: --texture-contrast must be MIN MAX with 0 <= MIN <= MAX <= 1 (RGB distance), "
        "got 0.3 0.1\n"
    )
    assert main([*args, "--texture-scale", "2", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --texture-scale must be MIN MAX with 0 <")
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--classes", "4", "--quality", "90", "--size", "16x24"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds another world (--quality 95 -> 90; --size 16x16 -> 16x24; --classes "
        "8 -> 4); choose another --out or delete it: its scenes would be left mixed in with the "
        "new ones\n"
    )
    # from Python, by the config's names, and texture_contrast may be None
    with pytest.raises(UsageError, match=r"^texture_contrast must be None or \(MIN, MAX\) with"):
        SceneConfig(texture_contrast=(0.3, 0.1))


def test_a_world_cut_short_is_gone_on_with_only_with_its_own_options(tmp_path, monkeypatch):
    """A run stopped before world.json (Ctrl-C, a full disk) then run again with another seed
    or a smaller count mixed the first run's scenes in with the new world's."""
    import loftup.data.scene_files as scene_files

    cfg, out = SceneConfig(height=16, width=16), tmp_path / "w"
    real = scene_files.generate_scene

    def stop_at_the_third(config, seed, i):
        if i == 2:
            raise KeyboardInterrupt
        return real(config, seed, i)

    monkeypatch.setattr(scene_files, "generate_scene", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        write_scenes(out, cfg, 4, progress=False)
    monkeypatch.setattr(scene_files, "generate_scene", real)
    assert not (out / "world.json").exists() and (out / "sa1b" / "sa_2.jpg").exists()
    with pytest.raises(UsageError, match=r"holds another world \(seed 0 -> 3; count 4 -> 2\)"):
        write_scenes(out, cfg, 2, seed=3, progress=False)
    write_scenes(out, cfg, 4, progress=False)  # the same options: finished
    assert len(read_world(out).names) == 4 and not (out / scene_files.PARTIAL).exists()
    (out / "world.json").unlink()  # scenes that no record describes
    with pytest.raises(UsageError, match="holds scenes but no world.json"):
        write_scenes(out, cfg, 4, progress=False)


def _cut_first_mask(path):
    """Its first mask's runs cut short: pycocotools would fill the rest from its memory."""
    meta = json.loads(path.read_text())
    meta["annotations"][0]["segmentation"]["counts"] = "0"
    path.write_text(json.dumps(meta))


def _resize_first_mask(path):
    from pycocotools import mask as mask_utils

    meta = json.loads(path.read_text())
    rle = mask_utils.encode(np.asfortranarray(np.ones((8, 8), dtype=np.uint8)))
    meta["annotations"][0]["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda w: (w / "world.json").write_text('{"format": "loftup-sce'), "cannot be read"),
        (lambda w: (w / "world.json").write_text("[1]"), "cannot be read"),
        (
            lambda w: (w / "world.json").write_text('{"format": "loftup-scenes"}'),
            "lacks 'config'",
        ),
        (
            lambda w: (w / "world.json").write_text(
                json.dumps({**json.loads((w / "world.json").read_text()), "images": "sa_1"})
            ),
            "'images' is not a list",
        ),
        (lambda w: (w / "sa1b" / "sa_2.jpg").unlink(), "sa_2.jpg"),
        (lambda w: (w / "sa1b" / "sa_2.jpg").write_bytes(b"not a jpeg"), "sa_2.jpg"),
        (lambda w: (w / "labels" / "sa_2.png").write_bytes(b""), "sa_2.png"),
        (lambda w: (w / "sa1b" / "sa_2.json").write_text("{"), "sa_2.json"),
        (lambda w: _cut_first_mask(w / "sa1b" / "sa_2.json"), "sa_2.json"),
        # a file of another size (a scene of another world copied in): np.stack's ValueError
        (lambda w: _resize_first_mask(w / "sa1b" / "sa_2.json"), "scene sa_2 of the world"),
    ],
)
def test_a_damaged_world_is_named_with_the_fix(tmp_path, damage, words):
    """A world given as ``--eval-root`` with a damaged world.json or scene file ended in a
    traceback (JSONDecodeError, KeyError, PIL's UnidentifiedImageError from deep in the
    evaluation); now one LoftUpError line names the file and how to write the world again."""
    from loftup.errors import LoftUpError

    out = write_scenes(tmp_path / "w", SceneConfig(height=16, width=16), 2, progress=False)
    damage(out)
    with pytest.raises(LoftUpError, match="loftup world scenes") as info:
        world = read_world(out)
        for name in world.names:
            world.load(name)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_write_scenes_and_the_demo_expand_a_tilde_as_their_folder_checks_do(tmp_path, monkeypatch):
    # "--out=~/w" reaches the program unexpanded; the checks read it as $HOME/w, so the
    # files must go there too, not to a folder named "~" in the working directory
    from loftup.world.config import DemoConfig

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    folder = write_scenes("~/w", SMALL, 1, seed=0, progress=False)
    assert folder == tmp_path / "home" / "w"
    assert (tmp_path / "home" / "w" / "world.json").is_file()
    assert not (tmp_path / "~").exists()
    assert DemoConfig(out="~/d").out == str(tmp_path / "home" / "d")
