"""``loftup upsample`` end to end on real photos, with the tiny backbone and a random upsampler:
the files it writes (features, pictures, their formats, precisions and modes), whether in
batches or by writer threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.extract import OPTIONS_NAME
from processes import REPO, cli_script, run_scripts
from upsample_helpers import outputs


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


def test_readme_example_runs():
    text = (REPO / "README.md").read_text()
    section = text.split("## Backbones and `loftup upsample`")[1].split("\n## ")[0]
    blocks = [b.split("```")[0] for b in section.split("```python\n")[1:]]
    assert blocks, "the section has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


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
