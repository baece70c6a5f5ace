"""The oldest transformers and huggingface_hub that pyproject allows, installed from the package
registry into a folder of their own, under the backbone and hub tests (slow: an install)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, pip_install_into

pytestmark = pytest.mark.slow


def _minimum(name: str) -> str:
    """The ``>=`` bound pyproject.toml gives ``name``."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(rf'"{re.escape(name)}>=([0-9.]+)"', text)
    assert match, f"pyproject.toml gives {name} no lower bound"
    return match.group(1)


def test_backbones_and_the_hub_work_with_the_oldest_releases_allowed(tmp_path):
    transformers = _minimum("transformers")
    # transformers 4.x needs a huggingface_hub below 1.0 and its own tokenizers release
    pins = [f"transformers=={transformers}", "huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<0.23",
            "requests", "urllib3", "idna", "charset-normalizer", "certifi", "regex"]  # fmt: skip
    pip_install_into(tmp_path, pins)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src")])}
    code = (
        "import transformers, huggingface_hub as h; print(transformers.__version__, h.__version__)"
    )
    versions = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    got_version = versions.stdout.split()[0] if versions.stdout else versions.stderr
    assert got_version.split(".")[:2] == transformers.split(".")[:2], got_version
    tests = ["tests/test_featurizers.py", "tests/test_hub.py", "tests/test_upsample_cli.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert run.returncode == 0, f"with {versions.stdout.strip()}:\n{run.stdout[-3000:]}"
