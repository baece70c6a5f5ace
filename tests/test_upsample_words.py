"""The errors of :func:`loftup.extract.upsample_folder` call its output folder and going on as
its caller gives them: ``out`` and ``resume=True`` from Python, ``-o`` and ``--resume`` from
``loftup upsample`` (they told a Python caller "--resume" and "another -o", which it has not)."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

import loftup
from loftup.cli import main
from loftup.cli.upsample import SAID_AS
from loftup.errors import LoftUpError
from loftup.extract import OPTIONS_NAME, upsample_folder

PYTHON = {"out": "out", "resume": "resume=True", "size": "size None", "viz": "viz=True"}
CLI = {"out": "-o", "resume": "--resume", "size": "--size unset", "viz": "--viz"}


@pytest.fixture(scope="module")
def made(upsampler, tmp_path_factory):
    """An input folder of one image, and an output folder a first run made from it."""
    root = tmp_path_factory.mktemp("words")
    (root / "in").mkdir()
    Image.new("RGB", (30, 20)).save(root / "in" / "a.png")
    upsample_folder(root / "in", root / "out", model=str(upsampler), backbone_size=28,
                    progress=False)  # fmt: skip
    return root


def _refusals(root, upsampler, call):
    """What ``call(inputs, out, extra options)`` is told of a run of other options (whole and
    resumed), a resumed run into a folder of files and no record, and a record not loftup's."""
    (root / "own").mkdir(exist_ok=True)
    (root / "own" / "x.pt").write_bytes(b"mine")
    (root / "foreign").mkdir(exist_ok=True)
    (root / "foreign" / OPTIONS_NAME).write_text("{}")
    return [
        call(root / "out", {"size": 16}),
        call(root / "out", {"size": 16, "resume": True}),
        call(root / "own", {"resume": True}),
        call(root / "foreign", {}),
    ]


def _said(root, words):
    out, resume = words["out"], words["resume"]
    size = words["size"]
    other = f"the files in {root / 'out'} were made with other options ({size} there, 16 now)"
    return [
        f"{other}; use the same options (with {resume} to skip what is done), or another {out}",
        f"{resume}: {other}; use the same options, or another {out}",
        f"{resume}: {root / 'own'} holds files but no {OPTIONS_NAME}, so the options that made "
        f"them are unknown; choose another {out}, or empty it to compute them all again",
        f"{root / 'foreign' / OPTIONS_NAME} is not a record of loftup upsample (no "
        "loftup_version), and this run would write its record there; move the file away, or "
        f"choose another {out}",
    ]


def test_a_python_caller_is_told_its_arguments(made, upsampler):
    def call(out, extra):
        with pytest.raises(LoftUpError) as caught:
            upsample_folder(made / "in", out, model=str(upsampler), backbone_size=28,
                            progress=False, **extra)  # fmt: skip
        return str(caught.value)

    said = _refusals(made, upsampler, call)
    assert said == _said(made, PYTHON)
    assert not any(" -o" in line or "--resume" in line for line in said)


def test_the_command_line_is_told_its_options(made, upsampler, capsys):
    assert {k: SAID_AS[k] for k in ("out", "resume", "viz")} == {
        k: CLI[k] for k in ("out", "resume", "viz")
    }

    def call(out, extra):
        args = ["upsample", str(made / "in"), "-m", str(upsampler), "-o", str(out),
                "--backbone-size", "28"]  # fmt: skip
        args += ["--size", str(extra["size"])] if "size" in extra else []
        args += ["--resume"] if extra.get("resume") else []
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.endswith("\n"), err
        return err[len("error: ") : -1]

    assert _refusals(made, upsampler, call) == _said(made, CLI)


def test_an_output_folder_that_is_a_file_is_named_as_given(made, upsampler, capsys):
    taken = made / "taken"
    taken.write_bytes(b"")
    with pytest.raises(LoftUpError, match=rf"^out {taken} is a file; give a folder$"):
        upsample_folder(made / "in", taken, model=str(upsampler), progress=False)
    assert main(["upsample", str(made / "in"), "-m", str(upsampler), "-o", str(taken)]) == 2
    assert capsys.readouterr().err == f"error: -o {taken} is a file; give a folder\n"


def test_a_picture_and_a_blank_model_are_named_as_the_caller_gives_them(made, upsampler, capsys):
    """A user's own x_viz.png is the "picture (viz=True)" from Python, "(--viz)" on the command
    line; a blank model is ``model`` from Python (no -m "$MODEL" hint), ``-m`` on the command
    line (it said "model is empty" there)."""
    (made / "pics").mkdir()
    (made / "pics" / "a_viz.png").write_bytes(b"mine")
    with pytest.raises(LoftUpError) as caught:
        upsample_folder(made / "in", made / "pics", model=str(upsampler), viz=True,
                        backbone_size=28, progress=False)  # fmt: skip
    assert "the picture (viz=True) of" in str(caught.value) and "--viz" not in str(caught.value)
    args = ["upsample", str(made / "in"), "-m", str(upsampler), "-o", str(made / "pics"),
            "--viz", "--backbone-size", "28"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 2
    assert "the picture (--viz) of" in capsys.readouterr().err
    with pytest.raises(LoftUpError) as caught:
        upsample_folder(made / "in", made / "blank", model=" ", progress=False)
    assert str(caught.value).startswith("model is empty or blank") and "-m" not in str(caught.value)
    assert main(["upsample", str(made / "in"), "-m", "", "-o", str(made / "blank")]) == 2
    assert capsys.readouterr().err.startswith(
        'error: -m is empty or blank (an unset variable, as in -m "$MODEL"?)'
    )


def test_a_resume_in_another_dtype_is_told_that_alone(made, upsampler, capsys, tmp_path):
    """The weights' digest was taken after their conversion to --dtype: a resume in bfloat16
    was told an upsampler_sha256 difference too, a key of the record it never passed."""
    args = ["upsample", str(made / "in"), "-m", str(upsampler), "-o", str(made / "out")]
    capsys.readouterr()
    assert main([*args, "--backbone-size", "28", "--resume", "--dtype", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "other options (--dtype float32 there, bfloat16 now; --save-dtype " in err, err
    assert "sha256" not in err and "weights" not in err, err
    torch.manual_seed(1)  # other weights: said as what the command line gives, -m
    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "up", backbone="dinov2_tiny")
    args[3] = str(tmp_path / "up")
    assert main([*args, "--backbone-size", "28", "--resume"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"other options \(-m's weights [0-9a-f]{16} there, [0-9a-f]{16} now\)", err), (
        err
    )


def test_a_fix_naming_values_is_python_from_python_and_the_options_on_the_command_line():
    """npy with bfloat16 told a Python caller to "use save_dtype float16 or float32, or fmt pt
    or safetensors", a float16 overflow to "compute with dtype='bfloat16' or float32": Python
    takes neither as written. The command line's words are as they were."""
    from loftup.extract import check_run_options
    from loftup.extract.write import unwritable

    for said_as, want in (
        (None, "use save_dtype='float16' or 'float32', or fmt='pt' or 'safetensors'"),
        (SAID_AS, "use --save-dtype float16 or float32, or --format pt or safetensors"),
    ):
        with pytest.raises(LoftUpError) as caught:
            check_run_options("npy", "float32", "bf16", None, 1, 1, said_as)
        assert str(caught.value).endswith(want), str(caught.value)
    inf = torch.tensor([float("inf")])
    said = unwritable(inf, torch.float16, torch.float16)
    assert said.endswith("float16 overflowed: compute with dtype='bfloat16' or 'float32'"), said
    said = unwritable(inf, torch.float16, torch.float16, SAID_AS)
    assert said.endswith("float16 overflowed: compute with --dtype bfloat16 or float32"), said
