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
    assert {p.dtype for p in pipe.featurizer.parameters()} == {torch.bfloat16}  # as given
    # the same weights in float32: the run in bfloat16 goes on
    assert upsample_folder(**run, dtype="bfloat16", resume=True).kept == 1


def test_a_half_precision_record_of_an_earlier_loftup_goes_on(upsampler, tmp_path):
    """A record that a loftup before f63b95b wrote with ``--dtype bfloat16`` holds the digest
    of the weights as they ran, converted (and no ``digests_of``): the upgraded loftup, whose
    digests are of the float32 weights, refused its --resume and its rerun as a run of other
    weights ("-m's weights X there, Y now"). Such a record is compared as it was taken; one
    of other weights is still refused, and the record rewritten holds the float32 digest."""
    import torch

    import loftup
    from loftup.hub.record import weights_digest as state_digest

    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (30, 20), (200, 40, 90)).save(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "in"), "-m", str(upsampler), "--backbone-size", "28"]
    args += ["-o", str(out), "--dtype", "bfloat16", "--no-progress"]
    assert main(args) == 0
    record = json.loads((out / OPTIONS_NAME).read_text())
    record.pop("digests_of", None)  # (what a record without it is)
    record["backbone_dtype"] = None  # (recorded so for a backbone by name then)
    new = record["upsampler_sha256"]
    # as f63b95b^ took it: extract.weights_digest(pipeline.upsampler), the module converted
    ran = loftup.load_upsampler(str(upsampler)).to(torch.bfloat16)
    old = state_digest(ran.state_dict())[:16]
    assert old != new
    for digest, code in ((old, 0), ("0123456789abcdef", 2)):
        (out / OPTIONS_NAME).write_text(json.dumps({**record, "upsampler_sha256": digest}))
        (out / "b.pt").unlink(missing_ok=True)
        assert main([*args, "--resume"]) == code
        assert (out / "b.pt").exists() == (code == 0)
    (out / OPTIONS_NAME).write_text(json.dumps({**record, "upsampler_sha256": old}))
    assert main(args) == 0  # a rerun of the same options too
    rewritten = json.loads((out / OPTIONS_NAME).read_text())
    assert (rewritten["upsampler_sha256"], rewritten["digests_of"]) == (new, "float32")
