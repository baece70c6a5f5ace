"""The oldest releases that pyproject.toml allows, installed from the package registry into a
folder of their own, under the default test suite (slow: an install of about 150 MB and a
whole run of the suite, about 8 minutes on a quiet machine, over 30 on 2 cores other work
shares: each run of the suite may take an hour); and torch's own lower bound, 2.4, in another
run of the suite (about 5 GB installed; 12 minutes here in all, 10 of them the suite). Each
test prints the run's last line, its counts and time: `-rP` shows it.

What these packages need but pyproject does not name is left at the installed release;
tensorboard's lower bound is also run with the installed numpy 2 (its reader needs 2.17.1
there)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from processes import REPO, pip_install_into

pytestmark = pytest.mark.slow

#: pyproject's lower bounds, tested as they are, except where a wheel for this Python or another
#: lower bound asks for more.
NEWER = {
    "pyyaml": "6.0.1",  # 6.0 has no wheel for Python 3.11
    "safetensors": "0.4.3",  # what transformers 4.56 needs
}
#: What the oldest transformers needs beside them (pip installs nothing it is not named), and
#: six, which packaging 20 imports (torch.compile's inductor imports setuptools, which imports
#: packaging): pip installs it beside packaging 20 for a user, so it is no reason for a bound.
EXTRA = ["huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<0.23", "requests", "urllib3", "idna",
         "charset-normalizer", "certifi", "regex", "six"]  # fmt: skip


def env_with(*first) -> dict[str, str]:
    """This process's environment with the folders ``first`` (then our source) on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, first), str(REPO / "src")])}


def lower_bounds() -> dict[str, str]:
    """{name: version} of every ``name>=version`` in pyproject.toml but torch, Triton, the
    tools (pytest, ruff, setuptools) and huggingface_hub (:data:`EXTRA`: transformers 4.56
    needs a newer one than our bound; the bound itself is tested in tests/test_hub_mirror.py)."""
    text = (REPO / "pyproject.toml").read_text()
    found = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)[";]', text))
    for name in (
        "torch",
        "triton",
        "pytest",
        "ruff",
        "huggingface_hub",
        "setuptools",
    ):
        found.pop(name, None)
    return {name: NEWER.get(name, version) for name, version in found.items()}


def test_the_suite_passes_with_the_oldest_releases_allowed(tmp_path):
    bounds = lower_bounds()
    assert {"transformers", "numpy", "scikit-image", "pillow", "tensorboard"} <= set(bounds)
    pip_install_into(tmp_path, [f"{n}=={v}" for n, v in bounds.items()] + EXTRA)
    env = env_with(tmp_path)
    names = ", ".join(f"'{n}'" for n in ("transformers", "numpy", "skimage", "PIL"))
    code = f"import importlib; print(*[importlib.import_module(n).__version__ for n in [{names}]])"
    versions = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert versions.returncode == 0, versions.stderr
    got = versions.stdout.split()

    def release(version: str) -> list[int]:  # "10" -> [10, 0]
        return ([int(p) for p in version.split(".")[:2]] + [0])[:2]

    for want, seen in zip(("transformers", "numpy", "scikit-image", "pillow"), got):
        assert release(seen) == release(bounds[want]), (want, seen)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert run.returncode == 0, f"with {versions.stdout.strip()}:\n{run.stdout[-3000:]}"
    print(run.stdout.strip().splitlines()[-1])  # the counts and minutes, for the README (-rP)


def test_tensorboard_s_lower_bound_reads_back_a_resumed_run_with_numpy_2(tmp_path):
    """The oldest tensorboard allowed, with the installed numpy (2.x): TensorBoard's own reader
    shows a crashed and resumed run's numbers and pictures once each (2.14 to 2.17.0 write
    the files but cannot read them with numpy 2: `np.string_` was removed)."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        pytest.skip(f"numpy {numpy.__version__} is installed; this checks numpy 2")
    bound = lower_bounds()["tensorboard"]
    site = pip_install_into(tmp_path / "tb", [f"tensorboard=={bound}"])
    env = env_with(site)
    test = (
        "tests/test_train_resume_state.py::"
        "test_tensorboard_shows_the_numbers_of_the_csv_once_each_across_a_crash_and_resume"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
    code = "import tensorboard; print(tensorboard.__version__)"
    seen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert seen.stdout.strip() == bound, seen.stderr


def test_torch_2_4_runs_the_suite_and_a_transformers_too_new_for_it_is_named(tmp_path):
    """torch 2.4.1 (PyPI's CUDA build, run on the CPU, with the NVIDIA libraries it loads)
    with the newest transformers that runs beside it, 4.57 (transformers 5 switches its PyTorch
    models off below torch 2.6): the default suite passes (the kernel tests say why they skip:
    torch 2.4's Triton 3.0 has no interpreter for them). And with the installed transformers 5,
    `loftup upsample` says in one line which releases are in the way and what to install."""
    try:
        site = pip_install_into(tmp_path / "torch", ["torch==2.4.1"], with_dependencies=True)
        old = pip_install_into(tmp_path / "tf", ["transformers==4.57.6"] + EXTRA)

        code = "import torch, transformers; print(torch.__version__, transformers.__version__)"
        versions = subprocess.run(
            [sys.executable, "-c", code], env=env_with(old, site), capture_output=True, text=True
        )
        assert versions.stdout.split()[:2] == ["2.4.1+cu121", "4.57.6"], versions.stderr[-2000:]
        # 6 minutes on a quiet machine; about 50 on a shared, busy one
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            env=env_with(old, site), cwd=REPO, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]
        print(run.stdout.strip().splitlines()[-1])  # the counts and minutes, for the README (-rP)

        import transformers

        if int(transformers.__version__.split(".")[0]) < 5:
            return  # the installed transformers runs with torch 2.4: nothing to name
        photo, model = tmp_path / "photo.png", tmp_path / "up"
        make = (
            "import sys, torch, loftup; from PIL import Image; torch.manual_seed(0); "
            "loftup.LoftUp(dim=32).save_pretrained(sys.argv[1], backbone='dinov2_tiny'); "
            "Image.new('RGB', (40, 30), 'red').save(sys.argv[2])"
        )
        subprocess.run([sys.executable, "-c", make, str(model), str(photo)], check=True,
                       env=env_with())  # fmt: skip
        cli = subprocess.run(
            [sys.executable, "-m", "loftup", "upsample", str(photo), "-m", str(model), "-o",
             str(tmp_path / "out")],
            env=env_with(site), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr[-2000:]
        assert cli.stderr.strip().splitlines()[-1] == (
            f"error: transformers {transformers.__version__} does not run its models with torch "
            "2.4.1+cu121 (it needs a newer torch): upgrade torch, or install a transformers "
            "release that supports this one: pip install 'transformers>=4.56,<5'"
        )
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # 5 GB
