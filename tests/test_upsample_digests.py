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


def test_a_resume_with_the_same_modules_in_another_dtype_is_told_the_precision_alone(tmp_path):
    """The digest of a Featurizer passed in was taken after its conversion to ``dtype``: a
    resume with the same backbone in float32 was told a backbone_sha256 difference too, as if
    another backbone had made the files (the LoftUp's own digest, of its weights in float32
    as given, was not); and so was the precision it ran in, beside ``dtype`` that sets it."""
    import pytest
    import torch

    import loftup
    from loftup.errors import LoftUpError
    from loftup.extract import upsample_folder, weights_digest

    (tmp_path / "in").mkdir()
    _image(tmp_path / "in")
    torch.manual_seed(0)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28,
                                dtype="bfloat16")  # fmt: skip
    kw = dict(model=pipe.upsampler, backbone=pipe.featurizer, backbone_size=28, progress=False)
    run = dict(inputs=tmp_path / "in", out=tmp_path / "out", **kw)
    upsample_folder(**run)
    record = json.loads((tmp_path / "out" / OPTIONS_NAME).read_text())
    assert (record["dtype"], record["backbone_dtype"]) == ("bfloat16", "bfloat16")
    assert record["backbone_sha256"] == weights_digest(pipe.featurizer.float())
    pipe.featurizer.to(torch.bfloat16)
    with pytest.raises(LoftUpError) as caught:
        upsample_folder(**run, dtype="float32", resume=True)
    told = str(caught.value)  # as a LoftUp's with a backbone by name is told
    diff = "(dtype 'bfloat16' there, 'float32' now; save_dtype 'bfloat16' there, 'float32' now)"
    assert diff in told, told
    assert {p.dtype for p in pipe.featurizer.parameters()} == {torch.float32}  # converted
    # the same weights in float32: the run in bfloat16 goes on
    assert upsample_folder(**run, dtype="bfloat16", resume=True).kept == 1
