"""The lines of Python that a refusal of an upsampler's file tells (keep one of its LoftUps,
keep its weights from pickled objects), printed by the command line for a file whose name
holds a newline, and the call a warning of its heads tells: pasted into Python as printed,
they read that file (and write one that loads)."""

from __future__ import annotations

import argparse
import re

import torch
from PIL import Image

from loftup import LoftUp, load_upsampler
from loftup.cli import main


def _told_line(capsys, tmp_path, path) -> str:
    """The line of Python that ``loftup upsample -m path`` ends its refusal with, as printed."""
    Image.new("RGB", (28, 28)).save(tmp_path / "img.png")
    assert (
        main(["upsample", "-m", str(path), "-o", str(tmp_path / "out"), str(tmp_path / "img.png")])
        == 2
    )
    said = capsys.readouterr().err.strip().splitlines()[-1]  # (torch < 2.6 warns before it)
    assert said.startswith("error: "), said
    if "in Python: " in said:  # the way out of pickled objects: torch.save(...), then load ...
        return said.split("in Python: ", 1)[1].rsplit(", then load ", 1)[0]
    return re.split(r"for '[^']*': ", said, maxsplit=1)[1]


def _run(line: str) -> str:
    """Run ``line`` as pasted (after ``import torch``); the file its torch.save wrote."""
    exec("import torch; " + line, {})
    return eval(line.rsplit(", ", 1)[1].removesuffix(")"))  # torch.save's second argument


def test_the_lines_told_for_a_name_with_a_newline_run_as_printed(tmp_path, capsys):
    """The command line escaped the whole refusal (its path held a newline), doubling the
    backslashes of the repr in its line of Python: pasted, '...ru\\\\nn.pt' named a file that
    is not there (FileNotFoundError). The path in prose is escaped where the message is made,
    the line's repr left as it is, and each line runs on the file and writes one that loads."""
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    state = model.state_dict()
    two = tmp_path / "ru\nn.pt"
    torch.save({**state, **{"ema." + k: v + 1 for k, v in state.items()}}, two)
    written = _run(_told_line(capsys, tmp_path, two))
    got = load_upsampler(written, num_heads=2).state_dict()
    assert all(torch.equal(v, state[k] + 1) for k, v in got.items()), written
    holders = tmp_path / "h\nl.pt"  # two holders of other weights
    torch.save({"model": {k: v + 2 for k, v in state.items()}, "state_dict": state}, holders)
    written = _run(_told_line(capsys, tmp_path, holders))
    got = load_upsampler(written, num_heads=2).state_dict()
    assert all(torch.equal(v, state[k]) for k, v in got.items()), written
    pickled = tmp_path / "w\no.pt"
    torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, pickled)
    written = _run(_told_line(capsys, tmp_path, pickled))
    got = load_upsampler(written, num_heads=2).state_dict()
    assert all(torch.equal(v, state[k]) for k, v in got.items()), written


def test_the_line_told_for_a_torchscript_archive_with_a_newline_runs_as_printed(tmp_path, capsys):
    """A TorchScript archive's refusal, its path holding a newline, was escaped whole by the
    command line as the others were: its line's torch.jit.load named a file not there. Pasted
    as printed, it writes the archive's state dict."""
    module = torch.jit.script(torch.nn.Linear(2, 3))
    script = tmp_path / "j\nit.pt"
    torch.jit.save(module, script)
    written = torch.load(_run(_told_line(capsys, tmp_path, script)), weights_only=True)
    assert written.keys() == {"weight", "bias"} and torch.equal(written["weight"], module.weight)


def test_the_call_the_heads_warning_tells_runs_for_a_name_with_a_newline(tmp_path):
    """The warning that a state dict was read with 4 heads was escaped whole where its path held
    a newline, its load_upsampler(...) call's repr too: '...2\\\\nheads.pt', pasted, named a
    file that is not there. The path in prose is escaped, the call left as it is: it loads."""
    import warnings

    import loftup

    model = LoftUp(dim=8, num_heads=2, n_freqs=2).eval()
    path = tmp_path / "2\nheads.pt"
    torch.save(model.state_dict(), path)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", "loading .*CVE-2025-32434")  # torch < 2.6's
        load_upsampler(path)
    (message,) = [str(w.message) for w in said]
    assert "\n" not in message and message.startswith(f"{str(path)!r}"[1:-1] + " holds ")
    call = re.search(r"(loftup\.load_upsampler\(.*, num_heads=)N\)", message).group(1)
    got = eval(call + "2)", {"loftup": loftup})
    assert got.config.num_heads == 2 and all(
        torch.equal(v, model.state_dict()[k]) for k, v in got.state_dict().items()
    )


def test_the_line_that_keeps_one_of_a_safetensors_files_loftups_runs_for_a_name_not_utf8(
    tmp_path, capsys
):
    """For a safetensors file of two LoftUps whose name holds a byte that is no UTF-8 (as
    Python names it, U+DCFF), the line told read it with safetensors' load_file, which takes
    UTF-8 names alone ("Path ... is not valid UTF-8"): pasted as printed, it failed. It reads
    the file's bytes through open(), which takes any name, and writes one that loads."""
    import os

    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = LoftUp(dim=8, num_heads=2, n_freqs=2).eval().state_dict()
    save_file({**state, **{"ema." + k: v + 1 for k, v in state.items()}}, tmp_path / "two")
    odd = tmp_path / os.fsdecode(b"tw\xffo.safetensors")
    os.rename(tmp_path / "two", odd)
    written = _run(_told_line(capsys, tmp_path, odd))
    got = load_upsampler(written, num_heads=2).state_dict()
    assert all(torch.equal(v, state[k] + 1) for k, v in got.items()), written


def test_the_line_told_for_a_torchscript_archive_runs_for_a_name_not_utf8(tmp_path, capsys):
    """For a TorchScript archive whose name holds a byte that is no UTF-8, the line told gave
    torch.jit.load the name, which it takes as UTF-8 alone (a TypeError of its arguments):
    pasted as printed, it failed. It gives it the file open()ed, and writes its state dict."""
    import io
    import os

    module = torch.jit.script(torch.nn.Linear(2, 3))
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    script = tmp_path / os.fsdecode(b"j\xffit.pt")
    script.write_bytes(buffer.getvalue())
    written = torch.load(_run(_told_line(capsys, tmp_path, script)), weights_only=True)
    assert written.keys() == {"weight", "bias"} and torch.equal(written["weight"], module.weight)
