"""``loftup upsample`` end to end on real photos, with the tiny backbone and a random upsampler."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import loftup
from conftest import (
    GLOO_THREADS,
    REPO,
    ROWS_ROUND_BY_COUNT,
    cli_script,
    gloo_left,
    run_scripts,
    src_env,
)
from loftup.cli import main
from loftup.extract import OPTIONS_NAME, Job, collect_inputs, shard


def outputs(folder) -> list[str]:
    """The names of the files in an output folder but its upsample.json."""
    return sorted(p.name for p in folder.iterdir() if p.name != OPTIONS_NAME)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """astronaut (512x512) and coffee (400x600) from scikit-image, as files."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.jpg", quality=95)
    return folder


@pytest.fixture
def tiles_of_64(monkeypatch):
    """Outputs tiled in 64-pixel tiles instead of the CPU's 256: the same tiling, streaming and
    writing, on outputs of a 16th of the pixels."""
    import loftup.tiling

    assert loftup.tiling.default_tile_size("cpu") == 256
    monkeypatch.setattr(loftup.tiling, "default_tile_size", lambda device: 64)


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory):
    """A random-weight upsampler for the tiny backbone, as a save_pretrained folder."""
    folder = tmp_path_factory.mktemp("up")
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    return folder


def test_photos_to_features_and_pictures(photos, upsampler, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            ["upsample", str(photos), "-m", str(upsampler), "-o", str(out), "--viz", "--size", "64"]
        )
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "astronaut.pt",
        "astronaut_viz.png",
        "coffee.pt",
        "coffee_viz.png",
        OPTIONS_NAME,
    ]
    astronaut = torch.load(out / "astronaut.pt", weights_only=True)
    coffee = torch.load(out / "coffee.pt", weights_only=True)
    assert astronaut.shape == (32, 64, 64) and coffee.shape == (32, 64, 96)  # shorter side 64
    assert torch.isfinite(coffee).all() and coffee.std() > 0.1
    # the Python API computes the same thing
    same = loftup.upsample(photos / "coffee.jpg", model=upsampler, size=64)
    assert torch.equal(same, coffee)
    for name in ("astronaut_viz.png", "coffee_viz.png"):
        png = Image.open(out / name)
        assert png.format == "PNG" and png.width == 1200 and png.height > 200
        px = np.asarray(png.convert("RGB")).astype(float)
        thirds = np.array_split(px, 3, axis=1)
        assert all(t.std() > 10 for t in thirds)  # input, low-res and upsampled panels all drawn
    assert "wrote float32 features of 2 image(s)" in capsys.readouterr().out


def test_formats_and_explicit_size(photos, upsampler, tmp_path):
    img = str(photos / "coffee.jpg")
    for fmt in ("npy", "safetensors"):
        args = ["upsample", img, "-m", str(upsampler), "-o", str(tmp_path), "--size", "24x40"]
        assert main([*args, "--format", fmt]) == 0
    arr = np.load(tmp_path / "coffee.npy")
    from safetensors.torch import load_file

    st = load_file(tmp_path / "coffee.safetensors")["features"]
    assert arr.shape == (32, 24, 40) and arr.dtype == np.float32
    assert torch.equal(torch.from_numpy(arr), st)
    # the folder holds both formats, made with the same options: either may be resumed (the
    # first one was refused as "format 'safetensors' there, 'npy' now"), and nothing is redone
    done = (tmp_path / "coffee.npy").stat().st_mtime_ns
    for fmt in ("npy", "safetensors"):
        assert main([*args, "--format", fmt, "--resume"]) == 0
    assert (tmp_path / "coffee.npy").stat().st_mtime_ns == done


def test_half_precision_features_and_their_stored_dtype(photos, upsampler, tmp_path, capsys):
    img = str(photos / "coffee.jpg")
    args = ["upsample", img, "-m", str(upsampler), "--size", "48"]
    assert main([*args, "-o", str(tmp_path / "f32")]) == 0
    full = torch.load(tmp_path / "f32" / "coffee.pt", weights_only=True)
    assert main([*args, "-o", str(tmp_path / "bf16"), "--dtype", "bf16"]) == 0  # or bfloat16
    assert "wrote bfloat16 features of 1 image(s)" in capsys.readouterr().out
    half = torch.load(tmp_path / "bf16" / "coffee.pt", weights_only=True)
    assert half.dtype == torch.bfloat16 and half.shape == full.shape == (32, 48, 72)
    err = (half.float() - full).abs().max().item()
    assert 0 < err < 0.1, err  # really computed in bfloat16, and close (features ~ 1)
    # the Python API computes the same; .npy has no bfloat16: float32 of the same values
    assert torch.equal(loftup.upsample(img, model=upsampler, size=48, dtype="bf16"), half)
    assert main([*args, "-o", str(tmp_path / "npy"), "--dtype", "bfloat16", "--format", "npy"]) == 0
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "npy" / "coffee.npy")), half.float())
    # computed in float32, stored in float16
    assert main([*args, "-o", str(tmp_path / "st"), "--save-dtype", "float16"]) == 0
    assert torch.equal(torch.load(tmp_path / "st" / "coffee.pt", weights_only=True), full.half())
    # asked for explicitly, bfloat16 in .npy is a one-line error before any work
    capsys.readouterr()
    code = main([*args, "-o", str(tmp_path / "bad"), "--format", "npy", "--save-dtype", "bfloat16"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot store bfloat16" in err and "--save-dtype float16" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_precision_names():
    from loftup.api import as_dtype

    assert as_dtype(None) is torch.float32
    for names, dtype in [
        (("float32", "fp32", "torch.float32", torch.float32), torch.float32),
        (("bfloat16", "BF16", torch.bfloat16), torch.bfloat16),
        (("float16", "fp16", "half", torch.float16), torch.float16),
    ]:
        assert all(as_dtype(n) is dtype for n in names)
    for bad in ("fp8", torch.float64, 16):
        with pytest.raises(loftup.LoftUpError, match="choose one of float32, bfloat16, float16"):
            as_dtype(bad)
    from loftup.outputs import feature_bytes

    with pytest.raises(ValueError, match="no bfloat16"):
        feature_bytes(torch.zeros(1, 2, 2), "npy", torch.bfloat16)


@pytest.mark.parametrize(
    "fmt,dtype",
    [
        ("pt", torch.float32),
        ("pt", torch.bfloat16),
        ("npy", torch.float16),
        ("safetensors", torch.float32),
        ("safetensors", torch.bfloat16),
    ],
)
def test_a_feature_file_filled_in_place_is_what_save_features_writes(tmp_path, fmt, dtype):
    from loftup.outputs import FeatureFile, feature_bytes, save_features

    torch.manual_seed(0)
    x = torch.randn(5, 7, 9)
    path = tmp_path / f"a.{fmt}"
    f = FeatureFile(path, fmt, dtype, x.shape)
    assert not path.exists() and len(list(tmp_path.iterdir())) == (2 if fmt == "pt" else 1)
    f.features[:, :4] = x[:, :4].to(dtype)  # in two pieces, as tiles arrive
    f.features[:, 4:] = x[:, 4:].to(dtype)
    f.commit()
    assert path.read_bytes() == feature_bytes(x, fmt, dtype)
    # straight into the file, alike: from a view of a larger storage, and channels-last
    for view in (torch.cat([x, x])[:5], x.permute(1, 2, 0).contiguous().permute(2, 0, 1)):
        save_features(tmp_path / "b", view, fmt, dtype)
        assert (tmp_path / "b").read_bytes() == path.read_bytes()
        (tmp_path / "b").unlink()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    g = FeatureFile(path, fmt, dtype, x.shape)  # a second one, given up: the first stays
    g.features.fill_(1)
    g.discard()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == feature_bytes(x, fmt, dtype)


def _limited(limit: str, value: int, body: str) -> str:
    """A script for run_scripts: ``body`` with the soft limit ``resource.<limit>`` at ``value``
    (put back after it), a file-size limit's signal ignored (EFBIG instead of a killed
    process)."""
    return (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"soft, hard = resource.getrlimit(resource.{limit})\n"
        f"resource.setrlimit(resource.{limit}, ({value}, hard))\n"
        "try:\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "finally:\n"
        f"    resource.setrlimit(resource.{limit}, (soft, hard))\n"
    )


@pytest.fixture(scope="module")
def limited_runs(photos, upsampler, tmp_path_factory) -> dict:
    """``loftup upsample`` under limits on file sizes and address space, one script each,
    sharing one process (each start costs seconds of imports): {name: (result, output folder)}.
    The tests below read them."""
    two = [str(photos / "coffee.jpg"), str(photos / "astronaut.png"), "-m", str(upsampler)]
    out = {name: tmp_path_factory.mktemp(name) for name in ("streamed", "whole", "memory")}
    streamed = ["upsample", *two, "-o", str(out["streamed"] / "out"), "--size", "100"]
    memory = ["upsample", *two, "-o", str(out["memory"] / "out"), "--size", "40000"]
    scripts = {
        # 1.5 MB: a 100 x 100 x 32 output fits, 100 x 150 not
        "streamed": _limited(
            "RLIMIT_FSIZE", 1_500_000, cli_script([*streamed, "--stream-above", "0"])
        ),
        # a 100 x 100 x 32 output's data (1.28 MB) and its safetensors file fit, not its .pt
        # archive nor a 100 x 150 one; three runs, one a format
        "whole": _limited(
            "RLIMIT_FSIZE",
            1_280_200,
            "from loftup.cli import main\n"
            f"args, out = {[*two, '--size', '100']!r}, {str(out['whole'])!r}\n"
            "for i, extra in enumerate([[], ['--format', 'safetensors'], ['--stream-above', '0']]):\n"
            "    print(main(['upsample', *args, '-o', f'{out}/{i}', *extra]))\n",
        ),
        # held whole, in 16 GB of address space: a 40000 x 60000 output cannot be allocated
        "memory": _limited("RLIMIT_AS", 16 << 30, cli_script([*memory, "--stream-above", "1e6"])),
    }
    if not hasattr(os, "posix_fallocate"):  # streamed files reserve their space with it
        del scripts["streamed"]
    done = run_scripts(scripts, timeout=300)
    return {name: (done[name], out[name]) for name in done}


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="reserves space with fallocate")
def test_no_room_for_a_streamed_output_fails_that_image_at_once(limited_runs):
    """The space of a streamed file is reserved before anything is computed into it: where
    there is no room (here a 1.5 MB limit on file sizes), that image fails by name, nothing is
    left behind, and the run goes on (1.5 MB: a 100 x 100 x 32 output fits, 100 x 150 not)."""
    res, folder = limited_runs["streamed"]
    out = folder / "out"
    assert res.returncode == 1, res.stderr
    assert "coffee.jpg: could not write its outputs" in res.stderr
    assert "File too large" in res.stderr and "Traceback" not in res.stderr
    assert outputs(out) == ["astronaut.pt"]


def test_no_room_for_a_whole_output_fails_that_image_in_every_format(limited_runs):
    """A write that fails for the disk (here a limit on file sizes: EFBIG, as a full disk
    gives ENOSPC) fails its image by name in every format, as .npy's does: torch.save and
    safetensors report it as their own errors (a RuntimeError, a SafetensorError), which
    stopped the run with a traceback. The limit lets a 100 x 100 x 32 output's data (1.28 MB)
    and its safetensors file through, not its .pt archive nor a 100 x 150 one."""
    res, tmp_path = limited_runs["whole"]
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    codes = [line for line in res.stdout.splitlines() if not line.startswith("wrote")]
    assert codes == ["1", "1", "1"]  # three runs, each with an image that failed
    failed = [line for line in res.stderr.splitlines() if "could not write its outputs" in line]
    assert all("File too large" in line for line in failed) and len(failed) == 5, res.stderr
    assert outputs(tmp_path / "0") == outputs(tmp_path / "2") == []  # .pt: neither fits
    assert outputs(tmp_path / "1") == ["astronaut.safetensors"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # nothing half-made


def test_a_feature_file_names_what_it_cannot_store(tmp_path):
    from loftup.outputs import FeatureFile

    with pytest.raises(ValueError, match="no bfloat16"):
        FeatureFile(tmp_path / "a.npy", "npy", torch.bfloat16, (2, 3, 4))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        FeatureFile(tmp_path / "a.pt", "pt", torch.float64, (2, 3, 4))
    with pytest.raises(ValueError, match="unknown format"):
        FeatureFile(tmp_path / "a.h5", "h5", torch.float32, (2, 3, 4))
    with pytest.raises(ValueError, match="positive sizes"):
        FeatureFile(tmp_path / "a.pt", "pt", torch.float32, (2, 0, 4))
    assert not list(tmp_path.iterdir())


def test_a_pipeline_keeps_its_precision(upsampler):
    pipe = loftup.load_pipeline(upsampler, dtype="float16", device="cpu")
    assert pipe.dtype == torch.float16
    assert next(pipe.featurizer.parameters()).dtype == torch.float16
    image = torch.rand(1, 3, 40, 56)
    assert loftup.upsample(image, model=pipe, size=32).dtype == torch.float16
    with pytest.raises(loftup.LoftUpError, match="dtype='bfloat16'"):
        loftup.upsample(image, model=pipe, dtype="bf16")


def test_arguments_that_contradict_a_ready_pipeline_are_refused_by_name(upsampler):
    """upsample(image, model=pipeline, backbone_size=448) ran at the pipeline's 112 without a
    word (so did another backbone, device, weights or norm): only dtype was checked. Each is
    refused by name now; those that agree with the pipeline, or are left out, are taken."""
    pipe = loftup.load_pipeline(upsampler, device="cpu", backbone_size=112)
    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    want = loftup.upsample(image, model=pipe, size=32)
    contradicting = [
        ({"backbone_size": 448}, "backbone_size=448"),
        ({"backbone_size": 224}, "backbone_size=224"),  # the default's value, said aloud
        ({"backbone_size": None}, "backbone_size=None"),
        ({"backbone": "dinov2_vits14"}, "backbone='dinov2_vits14'"),
        ({"backbone": loftup.get_featurizer("dinov2_tiny")}, "backbone="),
        ({"backbone_weights": "/some/folder"}, "backbone_weights="),
        ({"backbone_norm": "own"}, "backbone_norm='own'"),
        ({"device": "cuda"}, "cuda"),  # here: no GPU; on a GPU machine: not the pipeline's
    ]
    for kw, named in contradicting:
        with pytest.raises(loftup.LoftUpError, match=re.escape(named)) as e:
            loftup.upsample(image, model=pipe, size=32, **kw)
        assert "\n" not in str(e.value)
    agreeing = {"backbone_size": 112, "backbone": "dinov2_tiny", "backbone_norm": "imagenet"}
    for kw in ({}, agreeing, {"backbone": pipe.featurizer, "device": "cpu", "dtype": "fp32"}):
        assert torch.equal(loftup.upsample(image, model=pipe, size=32, **kw), want)


def test_a_uint8_batch_reads_as_its_images_do(upsampler):
    """A uint8 (3, H, W) image was scaled to [0, 1], a uint8 (B, 3, H, W) batch was taken as
    pixel values 0..255: the features of a saturated, different image, without a word."""
    pipe = loftup.load_pipeline(upsampler, device="cpu")
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(2, 3, 40, 56, generator=g) * 255).to(torch.uint8)
    batch = loftup.upsample(pixels, model=pipe, size=32)
    one = loftup.upsample(pixels[1], model=pipe, size=32)
    torch.testing.assert_close(batch[1], one, atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="uint8, uint16 or floating"):
        loftup.upsample(pixels.long(), model=pipe, size=32)


def test_images_that_are_not_pixels_in_0_1_are_refused_by_name(upsampler):
    """An ImageNet-normalised or 0-255 float image (what LoftUp itself and many loaders give)
    was normalised again and upsampled without a word: the features of another image. A NaN
    one failed on "lr_feats", an empty one with a ZeroDivisionError traceback."""
    from loftup.featurizers import imagenet_normalize

    pipe = loftup.load_pipeline(upsampler, device="cpu")
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    nan = image.clone()
    nan[0, 1, 3, 4] = float("nan")
    for bad in (imagenet_normalize(image), image * 255):
        with pytest.raises(loftup.LoftUpError, match=r"expected RGB values in \[0, 1\], got"):
            loftup.upsample(bad, model=pipe, size=32)
    inf = image.clone()
    inf[0, 0, :2, 0] = float("inf")
    for bad, count in ((nan, "1 NaN or infinite value:"), (inf, "2 NaN or infinite values:")):
        with pytest.raises(loftup.LoftUpError, match=f"the image has {count} pixels must be RGB"):
            loftup.upsample(bad, model=pipe, size=32)
    for empty in (image[:, :, :0], image[:0]):
        with pytest.raises(loftup.LoftUpError, match="with B, H, W >= 1, got"):
            pipe(empty, 32)
    # a resampling's overshoot is not refused: bicubic resizing leaves [0, 1] a little
    edge = torch.zeros(1, 3, 20, 28)
    edge[..., 14:] = 1
    resized = torch.nn.functional.interpolate(edge, (40, 56), mode="bicubic")
    assert resized.min() < -0.05 and resized.max() > 1.05
    assert loftup.upsample(resized, model=pipe, size=32).shape == (1, 32, 32, 45)


def test_a_model_that_is_no_model_is_named():
    """model=3 or model=None was os.fspath's TypeError (expected str, bytes or os.PathLike
    object, not int), which says nothing of what model may be."""
    image = torch.rand(3, 40, 56)
    for bad in (3, None, 2.5, ["loftup_dinov2s"]):
        for call, kw in (
            (loftup.upsample, {"image_or_path": image, "model": bad}),
            (loftup.load_pipeline, {"model": bad, "device": "cpu"}),
            (loftup.load_upsampler, {"source": bad}),
        ):
            with pytest.raises(loftup.LoftUpError, match=r"name \(e\.g\. loftup_dinov2s\)") as e:
                call(**kw)
            assert f"got {bad!r}" in str(e.value) and "\n" not in str(e.value)


def test_a_size_that_is_no_size_is_named_not_misread(upsampler):
    """size="32" was read as 3 x 2 (a string is a sequence), size=32.0 was a TypeError
    traceback ('float' object is not iterable)."""
    pipe = loftup.load_pipeline(upsampler, device="cpu")
    image = torch.rand(3, 40, 56)
    for bad in ("32", 32.0, (32, 32, 3), (32, 0), True, (32.5, 40)):
        with pytest.raises(loftup.LoftUpError, match=r"shorter side N >= 1\) or \(H, W\)"):
            loftup.upsample(image, model=pipe, size=bad)
    assert loftup.upsample(image, model=pipe, size=np.int64(20)).shape == (32, 20, 28)
    assert loftup.upsample(image, model=pipe, size=[24, 30]).shape == (32, 24, 30)


def test_bad_files_are_named_skipped_and_fail_the_run(photos, upsampler, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    nodata = np.full((30, 40), 0.5, np.float32)
    nodata[:2] = np.nan  # a float TIFF's "no data": that image fails, not the whole run
    Image.fromarray(nodata, "F").save(tmp_path / "nodata.tiff")
    inputs = [str(photos / "astronaut.png"), str(tmp_path / "broken.jpg"), str(tmp_path / "*.tif")]
    inputs.append(str(tmp_path / "nodata.tiff"))
    code = main(
        ["upsample", *inputs, "-m", str(upsampler), "-o", str(tmp_path / "out"), "--size", "32"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "*.tif" in err
    assert f"{tmp_path / 'nodata.tiff'}: 80 of its pixels are NaN" in err
    assert outputs(tmp_path / "out") == ["astronaut.pt"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no half-written files left
    # nothing at all to read: why, in one line, before any model loads
    nope = str(tmp_path / "nope.png")
    assert main(["upsample", nope, "-m", "no-such-model", "-o", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: no images found in {nope} ({nope}: no such file, folder or matching glob)\n"
    )


def test_an_output_name_the_file_system_cannot_hold_fails_before_its_work(
    photos, upsampler, tmp_path, capsys
):
    """A 254-byte input name fits, its picture's name (``_viz.png``: 258 bytes) does not: the
    image failed only after its features had been computed. Its features' name (253 bytes)
    is written where no picture is asked for."""
    long = tmp_path / ("x" * 250 + ".png")
    Image.open(photos / "astronaut.png").crop((0, 0, 40, 40)).save(long)
    args = ["upsample", str(long), str(photos / "astronaut.png"), "-m", str(upsampler)]
    assert main([*args, "-o", str(tmp_path / "out"), "--size", "32", "--viz"]) == 1
    err = capsys.readouterr().err
    assert f"failed: {long}: its output's name, {'x' * 250}_viz.png, is 258 bytes" in err
    assert f"rename the input ({'x' * 250}) shorter" in err
    assert outputs(tmp_path / "out") == ["astronaut.pt", "astronaut_viz.png"]
    assert main([*args, "-o", str(tmp_path / "out2"), "--size", "32"]) == 0
    assert outputs(tmp_path / "out2") == ["astronaut.pt", "x" * 250 + ".pt"]


def test_pictures_written_into_an_input_folder_are_not_read_back(photos, upsampler, tmp_path):
    Image.open(photos / "astronaut.png").crop((0, 0, 70, 56)).save(tmp_path / "a.png")
    args = ["upsample", str(tmp_path), "-m", str(upsampler), "-o", str(tmp_path), "--viz",
            "--backbone-size", "56"]  # fmt: skip
    assert main(args) == 0 and main(args) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a.png", "a_viz.png"]


def test_resume_takes_a_local_folder_by_any_of_its_names(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """--backbone-weights ./w, ~/w, /abs/w and a link to w are one folder, and so one option
    for --resume (the first two were refused as other options): upsample.json records local
    paths resolved, -m's too; a record of an earlier version, which kept ./w as written,
    still matches from the folder it was run in. Another folder is still refused."""
    import shutil

    from transformers import Dinov2Model

    from loftup.featurizers.dinov2 import tiny_config

    torch.manual_seed(0)
    Dinov2Model(tiny_config()).save_pretrained(tmp_path / "w")
    (tmp_path / "link").symlink_to(tmp_path / "w")
    (tmp_path / "in").mkdir()
    Image.open(photos / "astronaut.png").crop((0, 0, 70, 56)).save(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    model = os.path.relpath(upsampler, tmp_path)
    args = ["upsample", "in", "-m", model, "-o", "out", "--backbone-size", "56"]
    assert main([*args, "--backbone-weights", "./w"]) == 0
    record = tmp_path / "out" / OPTIONS_NAME
    options = json.loads(record.read_text())
    w = str((tmp_path / "w").resolve())
    assert options["backbone_weights"] == w
    assert options["model"] == str(upsampler.resolve())
    for name in (w, "~/w", "link"):
        capsys.readouterr()
        assert main([*args, "--backbone-weights", name, "--resume"]) == 0, capsys.readouterr()
        assert "(1 already there)" in capsys.readouterr().out
    record.write_text(json.dumps({**options, "backbone_weights": "./w"}))  # an older record
    assert main([*args, "--backbone-weights", w, "--resume"]) == 0
    shutil.copytree(tmp_path / "w", tmp_path / "w2")
    capsys.readouterr()
    assert main([*args, "--backbone-weights", "w2", "--resume"]) == 2
    assert f"backbone_weights {w!r} there, {str(tmp_path.resolve() / 'w2')!r} now" in (
        capsys.readouterr().err
    )


def test_no_output_overwrites_an_input_or_a_file_loftup_did_not_write(
    photos, upsampler, tmp_path, capsys
):
    """-o in an input folder: the picture of a.png is a_viz.png, which may be the user's own
    picture, and an input; a user's own a.npy is where --format npy puts a's features; a
    user's upsample.json is where the record goes. Each is refused before any work, in one
    line naming the file and the fix; loftup's own earlier outputs are overwritten, as
    always (a record of an earlier version, which does not list them, vouches for them)."""
    folder = tmp_path / "in"
    folder.mkdir()
    crop = Image.open(photos / "astronaut.png").crop((0, 0, 70, 56))
    crop.save(folder / "a.png")
    crop.rotate(90).save(folder / "a_viz.png")  # the user's own picture
    mine = (folder / "a_viz.png").read_bytes()
    args = ["upsample", str(folder), "-m", str(upsampler), "-o", str(folder),
            "--backbone-size", "56"]  # fmt: skip

    def refused(extra, line):
        before = sorted(p.name for p in folder.iterdir())
        capsys.readouterr()
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {line}\n"
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written

    refused(["--viz"], f"{folder / 'a_viz.png'} is an input of this run, and the picture "
            f"(--viz) of {folder / 'a.png'} would overwrite it; choose another -o (outside the "
            "input folders)")  # fmt: skip
    assert main(args) == 0  # features only: a_viz.png is an image like any other
    assert outputs(folder) == ["a.png", "a.pt", "a_viz.png", "a_viz.pt"]
    refused(["--viz", "--resume"], f"{folder / 'a_viz.png'} is an input of this run, and the "
            f"picture (--viz) of {folder / 'a.png'} would overwrite it; choose another -o "
            "(outside the input folders)")  # fmt: skip
    (folder / "a.npy").write_bytes(b"the user's depth map")
    refused(["--format", "npy"], f"{folder / 'a.npy'} is not loftup's (its upsample.json "
            f"records no .npy features), and the features of {folder / 'a.png'} would "
            "overwrite it; move it away, or choose another -o")  # fmt: skip
    assert (folder / "a_viz.png").read_bytes() == mine
    assert (folder / "a.npy").read_bytes() == b"the user's depth map"

    # no record at all: any file at an output's name is someone else's
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.pt").write_bytes(b"x")
    refused(["-o", str(other)], f"{other / 'a.pt'} is not loftup's (no upsample.json in "
            f"{other}), and the features of {folder / 'a.png'} would overwrite it; move it "
            "away, or choose another -o")  # fmt: skip
    (other / "a.pt").unlink()
    (other / OPTIONS_NAME).write_text('{"name": "my own settings"}')
    refused(["-o", str(other)], f"{other / OPTIONS_NAME} is not a record of loftup upsample "
            "(no loftup_version), and this run would write its record there; move the file "
            "away, or choose another -o")  # fmt: skip
    assert (other / OPTIONS_NAME).read_text() == '{"name": "my own settings"}'

    # loftup's own outputs, a record of an earlier version too (no "outputs" in it)
    (other / OPTIONS_NAME).unlink()
    assert main([*args, "-o", str(other), "--viz"]) == 0
    record = json.loads((other / OPTIONS_NAME).read_text())
    assert record["outputs"] == ["pt", "viz"]
    del record["outputs"]
    (other / OPTIONS_NAME).write_text(json.dumps(record))
    inode = (other / "a_viz.png").stat().st_ino
    assert main([*args, "-o", str(other), "--viz"]) == 0  # a whole run: computed again
    assert (other / "a_viz.png").stat().st_ino != inode
    assert json.loads((other / OPTIONS_NAME).read_text())["outputs"] == ["pt", "viz"]


def test_batches_give_the_batch_of_one_result(photos, tmp_path, upsampler):
    big = Image.open(photos / "astronaut.png")
    for i, (x, y) in enumerate([(0, 0), (200, 100), (300, 300)]):
        big.crop((x, y, x + 96, y + 80)).save(tmp_path / f"crop{i}.png")
    for bs in ("1", "2"):
        args = [
            "upsample",
            str(tmp_path / "crop*.png"),
            "-m",
            str(upsampler),
            "-o",
            str(tmp_path / bs),
        ]
        assert main([*args, "--batch-size", bs, "--backbone-size", "56"]) == 0
    for i in range(3):
        one = torch.load(tmp_path / "1" / f"crop{i}.pt", weights_only=True)
        two = torch.load(tmp_path / "2" / f"crop{i}.pt", weights_only=True)
        assert one.shape == (32, 80, 96)  # the image's own size by default
        torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)


def test_writer_threads_give_the_same_bytes_and_name_what_they_cannot_write(
    photos, upsampler, tmp_path, capsys
):
    big = Image.open(photos / "astronaut.png")
    for i in range(4):
        big.crop((50 * i, 30 * i, 50 * i + 64, 30 * i + 48)).save(tmp_path / f"im{i}.png")
    args = ["upsample", str(tmp_path / "im*.png"), "-m", str(upsampler), "--viz"]
    assert main([*args, "-o", str(tmp_path / "one"), "--writers", "1"]) == 0
    assert main([*args, "-o", str(tmp_path / "three"), "--writers", "3"]) == 0
    names = outputs(tmp_path / "one")
    assert len(names) == 8 and names == outputs(tmp_path / "three")
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()
    # a file that cannot be written (a folder in its place) fails its image, not the run
    (tmp_path / "blocked" / "im2.pt").mkdir(parents=True)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "blocked"), "--writers", "2"]) == 1
    err = capsys.readouterr().err
    assert "im2.png: could not write its outputs" in err and "Traceback" not in err
    written = outputs(tmp_path / "blocked")
    assert (
        written == sorted(n for n in names if not n.startswith("im2_"))
        and (tmp_path / "blocked" / "im2.pt").is_dir()
    )  # the other images written, nothing half-written left
    assert main([*args, "-o", str(tmp_path / "x"), "--writers", "0"]) == 2


def test_streamed_outputs_are_the_same_files(photos, upsampler, tmp_path, capsys, tiles_of_64):
    """--stream-above 0 writes every output tile by tile through a memory map: the same bytes
    as holding it whole, in every format and stored dtype, batched or not, pictures too."""
    args = ["upsample", str(photos), "-m", str(upsampler), "--viz", "--size", "80"]
    runs = [  # 80 x 80 and 80 x 120 outputs: 2 x 2 tiles of 64 each
        ["--format", "pt", "--batch-size", "2"],
        ["--format", "npy", "--save-dtype", "float16"],
        ["--format", "safetensors", "--save-dtype", "bfloat16"],
    ]
    for i, extra in enumerate(runs):
        whole, streamed = tmp_path / f"whole{i}", tmp_path / f"streamed{i}"
        assert main([*args, *extra, "-o", str(whole)]) == 0
        assert main([*args, *extra, "-o", str(streamed), "--stream-above", "0"]) == 0
        names = outputs(whole)
        assert len(names) == 4 and names == outputs(streamed)
        for name in names:  # no temporary file left either
            assert (whole / name).read_bytes() == (streamed / name).read_bytes(), (extra, name)
    # an output that cannot be put in place (a folder there) fails its image only
    (tmp_path / "blocked" / "coffee.pt").mkdir(parents=True)
    capsys.readouterr()
    code = main([*args, "-o", str(tmp_path / "blocked"), "--stream-above", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "coffee.jpg: could not write its outputs" in err
    assert "Traceback" not in err
    left = outputs(tmp_path / "blocked")
    assert left == ["astronaut.pt", "astronaut_viz.png", "coffee.pt"]  # and nothing half-written
    assert main([*args, "-o", str(tmp_path / "x"), "--stream-above", "-1"]) == 2


def test_a_streamed_output_is_never_held_whole(photos, upsampler, tmp_path, tiles_of_64):
    """Streamed, the pipeline hands the output over tile by tile and never returns it whole;
    above the threshold only (the default, 1 GB, is far above these outputs)."""
    from loftup.extract import collect_inputs, run

    pipe = loftup.load_pipeline(upsampler, device="cpu")
    returned, tiles = [], []

    def spy(images, size=None, callback=None, progress=False):
        def counted(tile, feats):
            tiles.append((tile.rows, tile.cols))
            callback(tile, feats)

        counted_or_none = None if callback is None else counted
        lr, hr = pipe(images, size, callback=counted_or_none, progress=progress)
        returned.append(hr)
        return lr, hr

    spy.upsampler, spy.dtype, spy.featurizer = pipe.upsampler, pipe.dtype, pipe.featurizer
    spy.backbone_size = pipe.backbone_size
    jobs, _ = collect_inputs([str(photos / "coffee.jpg")])
    assert run(jobs, spy, tmp_path / "a", size=80, stream_above=32 * 80 * 120 * 4 - 1).written
    assert returned == [None] and len(tiles) == 4  # 2 x 2 tiles of 64
    assert run(jobs, spy, tmp_path / "b", size=80).written  # 1.2 MB: held whole
    assert returned[1].shape == (1, 32, 80, 120) and len(tiles) == 4
    a = torch.load(tmp_path / "a" / "coffee.pt", weights_only=True)
    assert torch.equal(a, torch.load(tmp_path / "b" / "coffee.pt", weights_only=True))
    assert not run(jobs, spy, tmp_path / "c", size=80, stream_above=32 * 80 * 120 * 4).failed
    assert returned[2] is not None  # exactly at the threshold: held whole


def test_unrecorded_backbone_and_missing_weights_are_one_line(
    upsampler, photos, tmp_path, capsys, monkeypatch
):
    from huggingface_hub import constants
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"  # a weights file knows nothing of its backbone
    save_file(loftup.load_upsampler(upsampler).state_dict(), bare)
    args = [
        "upsample",
        str(photos / "coffee.jpg"),
        "-m",
        str(bare),
        "-o",
        str(tmp_path / "o"),
        "--size",
        "16",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--backbone" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--backbone", "dinov2_tiny"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main([*args, "--backbone", "dinov2_vits14"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "facebook/dinov2-small" in err and "--backbone-weights" in err


def test_input_collection_and_sharding(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    hidden = ("a/._x.jpg", "a/.ipynb_checkpoints/x-checkpoint.png")  # never images to compute
    for rel in ("a/x.jpg", "a/x.png", "a/sub/y.png", "a/notes.txt", "z.png", *hidden):
        (tmp_path / rel).write_bytes(b"")
    jobs, missing = collect_inputs(
        [str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "a")]
    )
    assert [j.stem for j in jobs] == [
        "sub/y",
        "x.jpg",
        "x.png",
        "z",
    ]  # clashing stems keep suffixes
    assert missing == []
    # a file that several inputs reach has one name whatever their order: the outermost
    # folder's (with a sub-folder given first, a/sub/y.png was y, and a/sub then a was refused
    # as two files of one name when a/sub held an x.png as a does)
    (tmp_path / "a" / "sub" / "x.png").write_bytes(b"")
    a, sub, y = (str(tmp_path / rel) for rel in ("a", "a/sub", "a/sub/y.png"))
    for specs in ([a, sub], [sub, a], [y, a], [a, y], [sub, y, a, sub]):
        jobs, _ = collect_inputs(specs)
        assert [j.stem for j in jobs] == ["sub/x", "sub/y", "x.jpg", "x.png"], specs
    jobs = [Job(tmp_path / f"{i}.png", str(i)) for i in range(7)]
    parts = [shard(jobs, 2, r, 3) for r in range(3)]
    assert [[j.stem for b in p for j in b] for p in parts] == [
        ["0", "1", "6"],
        ["2", "3"],
        ["4", "5"],
    ]


def test_a_glob_gives_its_images_as_a_folder_does_and_a_file_named_is_tried(tmp_path):
    """``loftup upsample 'photos/*'`` took the folder's notes.txt and upsample.json too, which
    then failed and made the run's exit status 1; the folder itself gives only its images."""
    for rel in ("x.JPG", "y.png", "notes.txt", "upsample.json"):
        (tmp_path / rel).write_bytes(b"")
    jobs, missing = collect_inputs([str(tmp_path / "*")])
    assert [j.path.name for j in jobs] == ["x.JPG", "y.png"] and missing == []
    assert collect_inputs([str(tmp_path)])[0] == jobs
    # a glob of no image says so; a file named is tried (and fails by name if it is none)
    jobs, missing = collect_inputs([str(tmp_path / "*.t*t"), str(tmp_path / "notes.txt")])
    assert [j.path.name for j in jobs] == ["notes.txt"]
    assert missing == [
        (
            str(tmp_path / "*.t*t"),
            "matches 1 file, none an image (.jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp, "
            ".ppm, .pgm); name a file to read it as one",
        )
    ]


def test_inputs_of_one_name_in_two_folders_are_refused_not_overwritten(
    photos, upsampler, tmp_path, capsys
):
    # two cameras' folders with the same file names: each keeps its suffix, which is the same
    for cam, name in (("cam1", "astronaut.png"), ("cam2", "coffee.jpg")):
        (tmp_path / cam).mkdir()
        Image.open(photos / name).convert("RGB").resize((40, 30)).save(tmp_path / cam / "0001.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "cam1"), str(tmp_path / "cam2"), "-m", str(upsampler)]
    assert main([*args, "-o", str(out), "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "cam1/0001.png and " in err and "cam2/0001.png would write outputs of one name" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()  # before any work
    # so does a recursive glob that meets one name in two sub-folders
    with pytest.raises(loftup.LoftUpError, match="outputs of one name"):
        collect_inputs([str(tmp_path / "**" / "*.png")])
    # their common folder keeps the sub-folders: two files
    assert main(["upsample", str(tmp_path), "-m", str(upsampler), "-o", str(out)]) == 0
    assert outputs(out) == ["cam1", "cam2"]
    a, b = (torch.load(out / cam / "0001.pt", weights_only=True) for cam in ("cam1", "cam2"))
    assert a.shape == b.shape == (32, 30, 40) and not torch.equal(a, b)


def test_size_argument_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["upsample", "x.png", "-o", "out", "--size", "0x5"])
    assert "expected N or HxW" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upsample", "x.png", "-o", "out", "--dtype", "fp8"])
    assert "choose one of float32, bfloat16, float16" in capsys.readouterr().err


#: ``python -m loftup`` that says, once the command has returned, how many of gloo's threads
#: are still running: none, or they run into the interpreter's teardown (conftest.GLOO_THREADS)
LOFTUP_COUNTING_GLOO_THREADS = (
    GLOO_THREADS
    + """
import sys
from loftup.cli import main

status = main(sys.argv[1:])
print(f"gloo threads left: {gloo_threads()}", file=sys.stderr)
sys.exit(status)
"""
)


def test_torchrun_two_processes_write_what_one_writes(photos, upsampler, tmp_path):
    """Two processes write the bytes one writes, whole or streamed, and resume each its own
    batches; each leaves the process group with gloo's threads ended (a group that outlived
    destroy_process_group, kept by a torch module imported with the backbone, took them into
    the interpreter's teardown, where rank 0 once aborted: "terminate called without an active
    exception")."""
    big = Image.open(photos / "astronaut.png")
    for i in range(3):
        big.crop((60 * i, 40 * i, 60 * i + 70, 40 * i + 56)).save(tmp_path / f"im{i}.png")
    args = [str(tmp_path / "im*.png"), "-m", str(upsampler), "--viz", "--backbone-size", "56"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes run (OMP_NUM_THREADS=1)
    try:
        assert main(["upsample", *args, "-o", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    loftup_cli = tmp_path / "loftup_cli.py"
    loftup_cli.write_text(LOFTUP_COUNTING_GLOO_THREADS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(loftup_cli)]  # fmt: skip
    one = outputs(tmp_path / "one")
    assert len(one) == 6
    # held whole; and every output streamed tile by tile into its file, two images a batch
    for out, extra in (("two", []), ("two_streamed", ["--stream-above", "0", "--batch-size", "2"])):
        cmd = [*torchrun, "upsample", *args, *extra, "-o", str(tmp_path / out)]
        multi = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert multi.returncode == 0, multi.stderr
        assert "rank 1" in multi.stderr  # really two processes
        assert gloo_left(multi.stderr) == [0, 0], multi.stderr
        assert one == outputs(tmp_path / out), out
        for name in one:
            alone, here = tmp_path / "one" / name, tmp_path / out / name
            if extra and ROWS_ROUND_BY_COUNT:  # batches of two there: a few ulps from one's
                if name.endswith(".pt"):  # the features (the --viz pictures' pixels may move)
                    torch.testing.assert_close(torch.load(here, weights_only=True),
                                               torch.load(alone, weights_only=True),
                                               rtol=0, atol=1e-5)  # fmt: skip
                continue
            assert alone.read_bytes() == here.read_bytes(), (out, name)
    # resumed by two processes: each skips its own batches that are done (rank 0 has im0 and
    # im2, rank 1 im1), and rank 0 reports the total kept
    (tmp_path / "two" / "im2.pt").unlink()
    cmd = [*torchrun, "upsample", *args, "-o", str(tmp_path / "two"), "--resume"]
    multi = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr
    assert gloo_left(multi.stderr) == [0, 0], multi.stderr
    assert f"features of 1 image(s) to {tmp_path / 'two'} (2 already there)" in multi.stdout
    for name in one:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_a_rank_that_fails_under_torchrun_ends_every_rank_in_one_line(photos, upsampler, tmp_path):
    """One process of a torchrun run fails (here rank 1, as a node without the weights would)
    while the other waits for it at the end: each says what ended it in one line, with no
    traceback (the waiting one's gloo error, "Connection closed by peer", was one), and each
    leaves the process group on its way out."""
    big = Image.open(photos / "astronaut.png")
    for i in range(3):
        big.crop((60 * i, 40 * i, 60 * i + 70, 40 * i + 56)).save(tmp_path / f"im{i}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "im*.png"), "-m", str(upsampler), "-o", str(out),
            "--backbone-size", "56"]  # fmt: skip
    script = tmp_path / "one_rank_fails.py"
    script.write_text(
        GLOO_THREADS + "import os, sys, time\n"
        "import torch.distributed as dist\n"
        "import loftup.extract\n"
        "from loftup.cli import main\n"
        "from loftup.errors import LoftUpError\n"
        "def fail(jobs, pipeline, out_dir, **kw):  # rank 1, once rank 0 waits in the sum\n"
        "    while not all((out_dir / f'im{i}.pt').exists() for i in (0, 2)):\n"
        "        time.sleep(0.05)\n"
        "    time.sleep(1)\n"
        "    raise LoftUpError('no weights on this node')\n"
        "if os.environ['RANK'] == '1':\n"
        "    loftup.extract.run = fail\n"
        f"status = main({args!r})\n"
        "rank = dist.get_rank() if dist.is_initialized() else None\n"
        "print(f'rank {rank} left, gloo threads: {gloo_threads()}', file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*torchrun, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    err = done.stderr
    assert "[rank 1] error: no weights on this node\n" in err, err
    # rank 0 is told its peer ended (or torchrun's SIGTERM, on rank 1's exit, comes first)
    told = "[rank 0] error: another process of this run has ended (Connection closed by peer"
    assert told in err or "[rank 0] terminated (SIGTERM)" in err, err
    assert "[rank0]:" not in err and "RuntimeError" not in err, err  # no rank's traceback
    # both left the group (parsed: the two ranks' lines may interleave)
    assert re.findall(r"rank None left, gloo threads: (\d+)", err) == ["0", "0"], err


def test_readme_example_runs():
    text = (REPO / "README.md").read_text()
    section = text.split("## Backbones and `loftup upsample`")[1].split("\n## ")[0]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert blocks, "the section has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_an_output_too_large_for_memory_or_disk_fails_by_name_and_the_run_goes_on(
    photos, upsampler, tmp_path, capsys, limited_runs
):
    """A --size too large for this machine costs the images it is asked of, by name with the
    reason and the fix, not the run (it was a traceback)."""
    args = [str(photos / "coffee.jpg"), str(photos / "astronaut.png"), "-m", str(upsampler)]
    # streamed (the default above 1 GB): no room for the files, so nothing is computed (the
    # guide image alone of a 400000-pixel side takes terabytes)
    out = tmp_path / "disk"
    assert main(["upsample", *args, "-o", str(out), "--size", "400000"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("could not write its outputs") == 2 and "coffee.jpg" in captured.err
    assert "2 input(s) failed" in captured.out and outputs(out) == []
    # held whole, in a process allowed 16 GB of address space: the allocation fails, each
    # image fails by name with the size it was asked, and the next one is still tried
    done, folder = limited_runs["memory"]
    out = folder / "out"
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    failed = done.stderr.split("failed: ")[1:]
    assert sorted(f.split(":")[0] for f in failed) == sorted(args[:2])
    coffee = "out of memory for a 40000x60000 output (32 channels): the host could not allocate"
    assert coffee in done.stderr and done.stderr.count("; try a smaller --size") == 2
    assert "wrote float32 features of 0 image(s)" in done.stdout and outputs(out) == []


def test_out_of_memory_is_told_apart_and_read():
    """Which errors mean no memory, and what the failure says of them (CUDA's message as
    PyTorch words it; the host allocator's as seen in the test above)."""
    from loftup.errors import out_of_memory
    from loftup.extract import _no_memory

    gpu = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
    )
    assert out_of_memory(gpu) and out_of_memory(MemoryError())
    assert not out_of_memory(RuntimeError("shape mismatch")) and not out_of_memory(OSError(28))
    assert _no_memory((384, 9000, 12000), 2, gpu) == (
        "out of memory for a 9000x12000 output (384 channels): the GPU could not allocate "
        "2.00 GiB; try a smaller --size or --batch-size 1"
    )


def test_files_written_atomically_get_the_mode_of_any_new_file(photos, upsampler, tmp_path):
    """Temporary files are private (0600); the features, pictures and reports they become must
    not be (they were 0600 too: unreadable to a user's group on a shared cluster). Here under
    umask 027, in a process of its own: 0640 for held, streamed and atomic writes alike."""
    out = tmp_path / "out"
    args = ["upsample", str(photos / "coffee.jpg"), "-m", str(upsampler), "--size", "32", "--viz"]
    umask = "import os; os.umask(0o027)\n"
    runs = {  # one process for both (run_scripts)
        "held": umask + cli_script([*args, "-o", str(out)]),
        "streamed": umask
        + cli_script([*args, "--stream-above", "0", "--format", "npy", "-o", str(out)]),
    }
    for done in run_scripts(runs, timeout=120).values():
        assert done.returncode == 0, done.stderr[-2000:]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert modes == {
        n: "0o640" for n in ("coffee.pt", "coffee.npy", "coffee_viz.png", OPTIONS_NAME)
    }


def test_sigterm_while_streaming_leaves_no_temporary_file(photos, upsampler, tmp_path):
    """A job scheduler's cancel (SIGTERM) in the middle of an output streamed into its file:
    the half-written temporary file (gigabytes, for a large one) is removed on the way out,
    as with Ctrl-C, and the exit status says why (it was left behind, hidden)."""
    import signal
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "loftup", "upsample", str(photos / "coffee.jpg")]
    cmd += ["-m", str(upsampler), "-o", str(out), "--size", "1500", "--stream-above", "0"]
    proc = subprocess.Popen(
        cmd, env=src_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and list(out.glob(".coffee.pt.*.tmp"))):  # streaming has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err, err[-2000:]
    assert outputs(out) == []


def test_a_run_ended_while_it_waits_for_a_writer_leaves_no_temporary_file(
    upsampler, tmp_path, monkeypatch
):
    """Streamed files of a batch that were not yet handed to a writer when the run ended
    (Ctrl-C while it waited for an earlier file, delivered here through that file's writer)
    are deleted on the way out; they were left behind, each of the output's full size."""
    import loftup.outputs
    from loftup.extract import run

    for i in range(6):
        Image.new("RGB", (24, 16), (40 * i, 90, 30)).save(tmp_path / f"im{i}.png")
    jobs, _ = collect_inputs([str(tmp_path / "im*.png")])
    drawn = []

    def picture(*args, **kwargs):  # the second file's picture: the interrupted wait
        drawn.append(1)
        if len(drawn) == 2:
            raise KeyboardInterrupt
        return b"png"

    monkeypatch.setattr(loftup.outputs, "comparison_png", picture)
    pipeline = loftup.load_pipeline(upsampler, device="cpu")
    out = tmp_path / "out"
    # batches of 3, 2 files waiting at most: im1's file is awaited when im3's is handed over
    with pytest.raises(KeyboardInterrupt):
        run(jobs, pipeline, out, size=8, fmt="npy", viz=True, batch_size=3, writers=1,
            stream_above=0)  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["im0.npy", "im0_viz.png", "im2.npy", "im2_viz.png", "im3.npy", "im3_viz.png"]


def test_images_above_the_decompression_bomb_guard_are_read_when_asked(
    upsampler, tmp_path, capsys, monkeypatch
):
    """Pillow refuses images above ~179 million pixels (a guard for untrusted files); a large
    aerial or scanned image is named with the way to read it, and read when the user says so.
    Pillow's own check, with its threshold lowered for a small file (2400 pixels)."""
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # refused above 1000 pixels
    photo = tmp_path / "aerial.png"
    Image.new("RGB", (60, 40), (90, 120, 30)).save(photo)
    args = ["upsample", str(photo), "-m", str(upsampler), "--size", "32"]
    assert main([*args, "-o", str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err
    assert "exceeds limit of 1000 pixels" in err
    assert "If you trust the file, raise the limit: loftup upsample --max-image-pixels N" in err
    assert main([*args, "-o", str(tmp_path / "small"), "--max-image-pixels", "2000"]) == 1
    assert "exceeds limit of 2000 pixels" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "yes"), "--max-image-pixels", "2400"]) == 0
    assert (tmp_path / "yes" / "aerial.pt").exists()
    filters = list(warnings.filters)
    assert main([*args, "-o", str(tmp_path / "any"), "--max-image-pixels", "0"]) == 0
    # the command's limit, not the process's: main() called in Python left it at None, and
    # DecompressionBombWarning silenced for good
    assert PILImage.MAX_IMAGE_PIXELS == 500 and warnings.filters == filters


def test_resume_goes_on_with_the_same_options_and_the_same_bytes(
    photos, upsampler, tmp_path, capsys
):
    """An interrupted run (here: files deleted) goes on with --resume: batches whose outputs
    are all there are skipped, untouched; a batch with any output missing is computed again,
    whole, giving the bytes of the uninterrupted run. Other options are refused by name."""
    big = Image.open(photos / "astronaut.png")
    for i in range(5):
        big.crop((50 * i, 30 * i, 50 * i + 70, 30 * i + 56)).save(tmp_path / f"im{i}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "im*.png"), "-m", str(upsampler), "-o", str(out),
            "--batch-size", "2", "--backbone-size", "56", "--viz"]  # fmt: skip
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(first) == 11 and OPTIONS_NAME in first
    options = json.loads(first[OPTIONS_NAME])
    assert options["backbone"] == "dinov2_tiny" and options["batch_size"] == 2
    assert options["size"] is None and len(options["upsampler_sha256"]) == 16
    inode = {name: (out / name).stat().st_ino for name in first}  # a rewrite makes a new one
    # batches [im0, im1], [im2, im3], [im4]: the last two lose an output each
    (out / "im3_viz.png").unlink()
    (out / "im4.pt").unlink()
    # what a killed run was writing (kill -9: no handler removed it) goes with the resume
    (out / ".im4.pt.k1ll3d_0.tmp").write_bytes(b"half")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    said = capsys.readouterr()
    assert f"features of 3 image(s) to {out} (2 already there)" in said.out
    assert "removed 1 unfinished file(s) of the interrupted run" in said.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert all((out / n).stat().st_ino == inode[n] for n in ("im0.pt", "im1_viz.png"))
    assert all((out / n).stat().st_ino != inode[n] for n in ("im2.pt", "im3.pt", "im2_viz.png"))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert f"features of 0 image(s) to {out} (5 already there)" in capsys.readouterr().out

    # other options, other weights, or files of unknown making: refused, nothing written
    other = tmp_path / "other"
    torch.manual_seed(1)
    loftup.LoftUp(dim=32).save_pretrained(other, backbone="dinov2_tiny")
    for change, said in (
        (["--size", "64"], "size None there, 64 now"),
        (["--save-dtype", "float16"], "save_dtype 'float32' there, 'float16' now"),
        (["-m", str(other)], f"upsampler_sha256 {options['upsampler_sha256']!r} there"),
    ):
        assert main([*args, *change, "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"--resume: the files in {out} were made with other options (" in err, err
        assert said in err and "use the same options, or another -o" in err, err
        # a whole run with other options is refused too: the record describes every file, and
        # a later --resume would keep the others
        assert main([*args, *change]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: the files in {out} were made with other options (")
        assert said in err and "(with --resume to skip what is done), or another -o" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    (out / OPTIONS_NAME).write_text("[1]")
    assert main([*args, "--resume"]) == 2
    assert "cannot be read (a JSON object was expected, not list)" in capsys.readouterr().err
    (out / OPTIONS_NAME).unlink()
    assert main([*args, "--resume"]) == 2
    assert f"{out} holds files but no {OPTIONS_NAME}" in capsys.readouterr().err
    fresh = [*args[:5], str(tmp_path / "new"), *args[6:], "--resume"]
    assert main(fresh) == 0  # nothing there yet: a resumed run of nothing is a whole run
    assert "features of 5 image(s)" in capsys.readouterr().out


def test_the_library_call_behind_the_command_counts_what_it_did(photos, upsampler, tmp_path):
    """loftup.extract.upsample_folder, what `loftup upsample` calls: the images written now, those a
    resumed run found there and the inputs that failed, for the command's last line."""
    from loftup.extract import FolderReport, upsample_folder

    (tmp_path / "c.png").write_bytes(b"not a picture")
    inputs, out = [str(photos), str(tmp_path / "c.png")], tmp_path / "out"
    options = dict(model=str(upsampler), device="cpu", size=32, backbone_size=56)
    # what a killed run was writing: a whole run removes its own outputs' (it writes them
    # again), not another format's; a resumed run every one
    out.mkdir()
    for name in (".astronaut.pt.ab12cd34.tmp", ".astronaut.npy.ab12cd34.tmp"):
        (out / name).write_bytes(b"x")
    assert upsample_folder(inputs, out, **options) == FolderReport(0, done=2, kept=0, failed=1)
    assert outputs(out) == [".astronaut.npy.ab12cd34.tmp", "astronaut.pt", "coffee.pt"]
    assert torch.load(out / "coffee.pt", weights_only=True).shape == (32, 32, 48)
    again = upsample_folder(inputs, out, resume=True, **options)
    assert again == FolderReport(0, done=0, kept=2, failed=1)
    assert outputs(out) == ["astronaut.pt", "coffee.pt"]


def test_an_image_too_elongated_for_the_backbone_fails_by_name_and_the_run_goes_on(
    photos, upsampler, tmp_path, capsys
):
    """A 2x3000 strip at --backbone-size 224 would be 384,000 patches: refused before any work
    (it hung), and only that image fails: the run went no further than it."""
    Image.new("RGB", (3000, 2), (90, 120, 30)).save(tmp_path / "strip.png")
    out = tmp_path / "out"
    inputs = [str(tmp_path / "strip.png"), str(photos / "astronaut.png")]
    args = ["upsample", *inputs, "-m", str(upsampler), "-o", str(out), "--size", "32"]
    assert main([*args, "--batch-size", "1"]) == 1
    captured = capsys.readouterr()
    # named as the command line calls it (it said "backbone_size ... (None: ...)", which no
    # option of the command line spells)
    assert f"failed: {tmp_path / 'strip.png'}: image is 2x3000 px: at --backbone-size 224" in (
        captured.err
    )
    assert "pass a smaller --backbone-size\n" in captured.err
    assert "1 input(s) failed" in captured.out and outputs(out) == ["astronaut.pt"]
    assert not list(out.glob(".*tmp"))


# Inputs that are links: each is named as the inputs name it (a link by its own name, not its
# target's) in the --viz title and in the line of an image that fails, and a link beside its
# file with another suffix (x.jpg -> x.png) is a name of its own.


def noise_picture(path) -> None:
    """A small image of noise (48x40) at ``path``."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def upsample_small(inputs, upsampler, out, *extra) -> int:
    args = ["-m", str(upsampler), "-o", str(out), "--backbone-size", "28", "--size", "32"]
    return main(["upsample", *map(str, inputs), *args, *extra])


def test_the_viz_title_names_the_link_given_not_its_target(upsampler, tmp_path):
    """The picture of ``shown.png`` -> ``data/target.png`` was titled ``target.png``: it is the
    picture of a file of the link's own name (a copy), and not of its target."""
    (tmp_path / "data").mkdir()
    noise_picture(tmp_path / "data" / "target.png")
    for folder in ("link", "copy"):
        (tmp_path / folder).mkdir()
    (tmp_path / "link" / "shown.png").symlink_to("../data/target.png")
    (tmp_path / "copy" / "shown.png").write_bytes((tmp_path / "data" / "target.png").read_bytes())
    for name in ("link", "copy"):
        given, out = tmp_path / name / "shown.png", tmp_path / f"{name}_out"
        assert upsample_small([given], upsampler, out, "--viz") == 0
    drawn = (tmp_path / "link_out" / "shown_viz.png").read_bytes()
    assert drawn == (tmp_path / "copy_out" / "shown_viz.png").read_bytes()


def test_an_image_that_fails_is_named_by_the_link_given(upsampler, tmp_path, capsys):
    """A damaged file reached through a link (``frame.png`` -> ``store/blob.bin``) was said
    as the target, a name the user never gave and may not know."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "blob.bin").write_bytes(b"not an image at all")
    link = tmp_path / "frame.png"
    link.symlink_to(tmp_path / "store" / "blob.bin")
    noise_picture(tmp_path / "fine.png")
    assert upsample_small([link, tmp_path / "fine.png"], upsampler, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"skipped: cannot read image {link}: " in err, err
    assert "blob.bin" not in err, err


def test_a_link_beside_its_file_with_another_suffix_is_a_name_of_its_own(upsampler, tmp_path):
    """``x.jpg`` -> ``x.png`` beside it gave outputs of each name (``x.jpg.pt``, ``x.png.pt``,
    as two files of one stem do) until a link and its file of one name given through two
    inputs were made one job: the two names then became one job, ``x``, and ``--resume`` on a
    folder of the earlier runs computed ``x`` again beside the files it had. They are two
    again, and a resumed run keeps what an earlier one wrote."""
    data = tmp_path / "data"
    data.mkdir()
    noise_picture(data / "x.png")
    (data / "x.jpg").symlink_to("x.png")
    jobs, _ = collect_inputs([str(data)])
    assert [j.stem for j in jobs] == ["x.jpg", "x.png"]
    assert [j.given for j in jobs] == [data / "x.jpg", data / "x.png"]  # each as found
    assert jobs[0].path == jobs[1].path == (data / "x.png").resolve()
    out = tmp_path / "out"
    assert upsample_small([data], upsampler, out) == 0
    assert sorted(p.name for p in out.iterdir()) == [OPTIONS_NAME, "x.jpg.pt", "x.png.pt"]
    assert (out / "x.jpg.pt").read_bytes() == (out / "x.png.pt").read_bytes()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != OPTIONS_NAME}
    assert upsample_small([data], upsampler, out, "--resume") == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != OPTIONS_NAME} == (
        before
    )


def test_a_world_of_one_is_one_process_whatever_rank_says(upsampler, tmp_path, monkeypatch):
    """RANK=1 with WORLD_SIZE=1 (a job script's exports) took batches[1::1]: the first image
    was never computed, yet the run said it had written both."""
    for name in ("a.png", "b.png"):
        noise_picture(tmp_path / name)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "out"
    assert upsample_small([tmp_path / "a.png", tmp_path / "b.png"], upsampler, out) == 0
    assert outputs(out) == ["a.pt", "b.pt"]
