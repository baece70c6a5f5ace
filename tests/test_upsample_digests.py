"""``loftup upsample``'s record of the weights it ran (``upsampler_sha256``, and
``backbone_sha256`` for a Featurizer passed in): digests of the weights in float32 as given or
loaded, taken before any conversion to ``--dtype``, the upsampler's checkpoint read once."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from loftup.cli import main
from loftup.extract import OPTIONS_NAME


def _image(tmp_path) -> Path:
    Image.new("RGB", (30, 20), (200, 40, 90)).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def test_a_half_precision_run_reads_the_upsampler_once(upsampler, tmp_path, monkeypatch):
    """``-m PATH --dtype bf16`` read the checkpoint twice: once for the pipeline (converted to
    bfloat16), once more in float32 for the record's digest; under torchrun, on every rank.
    Counted where the weights file is opened (the load itself runs)."""
    import safetensors

    real, opened = safetensors.safe_open, []

    def counting(name, *args, **kwargs):
        opened.append(Path(name).name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", counting)
    args = ["upsample", str(_image(tmp_path)), "-m", str(upsampler), "--backbone-size", "28"]
    assert main([*args, "-o", str(tmp_path / "bf16"), "--dtype", "bf16", "--no-progress"]) == 0
    assert opened == ["model.safetensors"]
    assert main([*args, "-o", str(tmp_path / "fp32"), "--no-progress"]) == 0
    assert opened == ["model.safetensors"] * 2
    half, full = (json.loads((tmp_path / d / OPTIONS_NAME).read_text()) for d in ("bf16", "fp32"))
    assert half["dtype"] == "bfloat16" and half["model"] == full["model"] == str(upsampler)
    assert half["upsampler_sha256"] == full["upsampler_sha256"]  # of the float32 weights
