"""An optional package that is not installed, or a transformers that will not run beside the
installed torch: one line that names the package, what needs it and the pip command, said
before any work, and nothing written.

A package is made missing the way Python itself knows: ``sys.modules[name] = None`` makes
``import name`` raise ModuleNotFoundError for it, as an absent package does.
"""

from __future__ import annotations

import sys

import pytest
import torch

import loftup
from loftup.cli import main
from loftup.errors import MissingDependencyError, missing_dependency


def block(monkeypatch, *names: str) -> None:
    """``import name`` fails, for each name and its submodules, as if not installed."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def upsampler(tmp_path):
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    return tmp_path / "up"


@pytest.fixture
def photo(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(30, 40, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_upsample_without_transformers_names_the_extra(upsampler, photo, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        block(mp, "transformers")
        code = main(["upsample", str(photo), "-m", str(upsampler), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == (
        "error: transformers is not installed, and this needs it: pip install "
        "'loftup[backbones]' (or pip install transformers)"
    )
    assert not out.exists() or not any(out.iterdir())


def test_viz_without_matplotlib_fails_before_any_image(upsampler, photo, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["upsample", str(photo), "-m", str(upsampler), "-o", str(out), "--size", "28"]
    with pytest.MonkeyPatch.context() as mp:
        block(mp, "matplotlib")
        code = main([*args, "--viz"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (
        "error: matplotlib is not installed, and --viz (its PNGs) needs it: pip install "
        "'loftup[viz]' (or pip install matplotlib)"
    )
    assert not out.exists() or not any(out.iterdir())  # no feature file before the failure
    assert main(args) == 0 and (out / "photo.pt").exists()  # without --viz it runs


def test_the_demo_names_every_missing_package_at_once(tmp_path, capsys):
    """`loftup demo` after `pip install loftup` alone: one line with all it lacks and the one
    command that installs them, not one package per try."""
    with pytest.MonkeyPatch.context() as mp:
        block(mp, "scipy", "matplotlib")
        code = main(["demo", "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (
        "error: scipy, matplotlib are not installed, and this needs them (scipy: the boundary "
        "F-score; matplotlib: the figure): pip install 'loftup[eval,viz]' (or pip install "
        "scipy matplotlib)"
    )
    assert not (tmp_path / "demo").exists()  # before the scenes


def test_davis_evaluation_without_scipy_stops_before_the_features(upsampler, tmp_path, capsys):
    from eval_data import TEST_BACKBONE, write_davis

    write_davis(tmp_path / "davis", frames=3)
    out, cache = tmp_path / "davis.json", tmp_path / "cache"
    args = ["eval", "davis", "--root", str(tmp_path / "davis"), "--backbone", TEST_BACKBONE,
            "--upsampler", str(upsampler), "--size", "28", "--cache-dir", str(cache),
            "--json", str(out), "--no-progress"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        block(mp, "scipy")
        code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        "error: scipy is not installed, and loftup eval davis (the boundary measure F) needs "
        "it: pip install 'loftup[eval]' (or pip install scipy)"
    )
    assert not out.exists() and not cache.exists()  # no features computed


@pytest.mark.parametrize("task", ["depth", "normals"])
def test_nyu_evaluation_names_both_missing_readers_at_once(tmp_path, capsys, task):
    """NYUv2 is read with scipy (splits.mat) and h5py (the labelled set): both named in the
    one line, at the start, not one per try nor after a check of the dataset's files."""
    args = ["eval", task, "--root", str(tmp_path / "nyu"), "--backbone", "dinov2_tiny",
            "--upsampler", "bilinear", "--no-cache", "--no-progress"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        block(mp, "scipy", "h5py")
        code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: scipy, h5py are not installed") and err[0].endswith(
        "pip install 'loftup[eval]' (or pip install scipy h5py)"
    ), err[0]


def test_training_says_at_the_start_which_option_needs_a_missing_package(tmp_path):
    from loftup.train import train
    from train_fixtures import tiny_config, write_folder

    data = write_folder(tmp_path / "images", 4, size=56)
    out = tmp_path / "run"
    cases = {  # what is missing: the overrides that need it, and what the error says
        "matplotlib": (["log.viz_every=2"], "log.viz_every .* log.viz_every=0 draws none"),
        "tensorboard": (["log.tensorboard=true"], "log.tensorboard=false writes none"),
        "skimage": ([], "scikit-image is not installed, and data.masks=superpixels needs it"),
    }
    for name, (extra, says) in cases.items():
        cfg = tiny_config(data, out, 1, 2, "data.masks=superpixels", *extra)
        with pytest.MonkeyPatch.context() as mp:
            block(mp, name)
            with pytest.raises(MissingDependencyError, match=says):
                train(cfg)
        assert not out.exists() or not any(out.iterdir()), name  # said before any step


def test_a_transformers_that_cannot_use_this_torch_is_named_with_the_fix(monkeypatch):
    """transformers 5 switches its PyTorch models off below torch 2.6 and fails only when a
    model is built, asking for PyTorch to be installed; the error names both releases and what
    to install. (Seen for real with torch 2.4.1: tests/test_min_versions.py, slow.)"""
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)
    with pytest.raises(MissingDependencyError) as e:
        loftup.get_featurizer("dinov2_tiny")
    assert str(e.value) == (
        f"transformers {transformers.__version__} does not run its models with torch "
        f"{torch.__version__} (it needs a newer torch): upgrade torch, or install a transformers "
        "release that supports this one: pip install 'transformers>=4.56,<5'"
    )


def test_only_optional_packages_are_answered_with_an_install_command():
    """A missing module of loftup's own or of torch is a broken install or a bug: it keeps its
    traceback rather than a pip command that would not help."""
    hdf5 = missing_dependency(ModuleNotFoundError("No module named 'h5py'", name="h5py"))
    assert hdf5 == (
        "h5py is not installed, and this needs it: pip install 'loftup[eval]' (or pip install h5py)"
    )
    coco = ModuleNotFoundError("no", name="pycocotools._mask")
    assert "pip install 'loftup[train]'" in missing_dependency(coco)
    for name in ("loftup.fused", "torch._C", "numpy"):
        assert missing_dependency(ModuleNotFoundError("no", name=name)) is None
    assert missing_dependency(ImportError("cannot import name 'x'")) is None
