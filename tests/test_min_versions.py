"""The oldest releases that pyproject.toml allows, installed from the package registry into a
folder of their own, under the default test suite (slow: an install of about 150 MB and a
whole run of the suite, about 8 minutes).

torch is left at the installed build (its lower bound, 2.4, is not tested: its wheels are
large), and so are tensorboard and what these packages need but pyproject does not name."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, pip_install_into

pytestmark = pytest.mark.slow

#: pyproject's lower bounds, tested as they are, except where a wheel for this Python or another
#: lower bound asks for more.
NEWER = {
    "pyyaml": "6.0.1",  # 6.0 has no wheel for Python 3.11
    "safetensors": "0.4.3",  # what transformers 4.56 needs
}
#: What the oldest transformers needs beside them (pip installs nothing it is not named).
EXTRA = ["huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<0.23", "requests", "urllib3", "idna",
         "charset-normalizer", "certifi", "regex"]  # fmt: skip


def lower_bounds() -> dict[str, str]:
    """{name: version} of every ``name>=version`` in pyproject.toml but torch, Triton, the
    tools (pytest, ruff, setuptools), tensorboard (its dependencies are many) and
    huggingface_hub (:data:`EXTRA`: transformers 4.56 needs a newer one than our bound; the
    bound itself is tested in tests/test_hub.py)."""
    text = (REPO / "pyproject.toml").read_text()
    found = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)[";]', text))
    for name in (
        "torch",
        "triton",
        "pytest",
        "ruff",
        "tensorboard",
        "huggingface_hub",
        "setuptools",
    ):
        found.pop(name, None)
    return {name: NEWER.get(name, version) for name, version in found.items()}


def test_the_suite_passes_with_the_oldest_releases_allowed(tmp_path):
    bounds = lower_bounds()
    assert {"transformers", "numpy", "scikit-image", "pillow"} <= set(bounds), bounds
    pip_install_into(tmp_path, [f"{n}=={v}" for n, v in bounds.items()] + EXTRA)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src")])}
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
        env=env, cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert run.returncode == 0, f"with {versions.stdout.strip()}:\n{run.stdout[-3000:]}"
