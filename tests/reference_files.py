"""The paper's reference outputs: the released upsampler's weights and what it gave for a
few inputs, kept in the project's shared/ beside the checkout (``LOFTUP_SHARED``: elsewhere),
for the parity tests (:func:`need_reference`, or conftest's ``reference_*`` fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from processes import REPO

SHARED = Path(os.environ.get("LOFTUP_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "fixtures" / "reference"
REFERENCE_STATE = REFERENCE / "loftup_reference_dinov2s_state_dict.bin"
REFERENCE_CASES = REFERENCE / "loftup_reference_cases.pt"
CASE_NAMES = ("square", "nonsquare", "downscale")


def need_reference() -> Path:
    """The reference fixtures' folder (the paper's upsampler's weights and outputs, kept in the
    project's shared/ beside the checkout). Without it a test that compares with them is
    skipped, saying where they were looked for; in CI (CI set), where they must be, it fails."""
    if REFERENCE_STATE.exists() and REFERENCE_CASES.exists():
        return REFERENCE
    message = (
        f"reference fixtures not found at {REFERENCE}: the parity tests need the project's "
        f"shared/ beside the checkout, or LOFTUP_SHARED=/path/to/shared"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
