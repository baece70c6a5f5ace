"""What the commands share: argument types, checks said before any work, JSON output (to a
file, or to stdout alone with ``--json -``), and a finished command's last words
(:func:`say_done`)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from ..errors import LoftUpError, printable
from ..stops import owning_the_process, owns_process  # noqa: F401  (the command line's)


def precision(text: str) -> str:
    """A precision's name, aliases (fp16, bf16, half, fp32) accepted -> its canonical name."""
    from ..api import as_dtype

    try:
        return str(as_dtype(text)).removeprefix("torch.")
    except LoftUpError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_size(text: str):
    """``--size`` of upsample: ``N`` (the shorter side) -> N, ``HxW`` -> (H, W)."""
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            if h > 0 and w > 0:
                return (h, w)
        elif int(text) > 0:
            return int(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected N or HxW with positive integers, got {text!r}")


def scene_size(text: str) -> tuple[int, int]:
    """A scene's ``N`` or ``HxW`` (sides of at least 8) -> (H, W)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected N or HxW with sides >= 8, got {text!r}")
    return (parts[0], parts[-1])


def refuse_empty_folder(path: str, option: str) -> None:
    """A UsageError where the folder ``path`` given as ``option`` is empty (``--out "$OUT"``
    with OUT unset): the library reads it as Path(""), the current folder, and wrote there."""
    if not path:
        from ..paths import check_folder_output

        check_folder_output(path, option)  # says it is empty, as for every folder option


def picked_device(device: str) -> str:
    """``--device`` as torch names it: ``auto`` becomes the device it picks (CUDA when
    available); the value was checked by :func:`loftup.cli.outcome._main` before the command ran."""
    from ..api import resolve_device

    return str(resolve_device(device)) if device == "auto" else device


def add_backbone_norm(p, default: str | None) -> None:
    """``--backbone-norm`` on the parser ``p`` (upsample's and eval's)."""
    from ..norms import INPUT_NORMS

    p.add_argument(
        "--backbone-norm",
        choices=list(INPUT_NORMS),
        default=default,
        help="what a backbone trained with other constants than ImageNet's (CLIP, SigLIP) is "
        "given: the ImageNet-normalised image as it is, as the paper's code gives it, so the "
        "features the released upsamplers were trained on (imagenet), or its own normalisation "
        "(own); the same for DINOv2 and DINOv3 (default: "
        + (default or "what the upsampler records, else imagenet")
        + ")",
    )


#: What the running command set for the whole process (:func:`for_the_command`), undone when
#: it ends (:func:`loftup.cli.main`): ``main([...])`` called in Python leaves the caller's
#: torch threads, Pillow pixel limit and warning filters as they were.
_SETTINGS: list[contextlib.ExitStack] = []


def end_if_a_look_is_left(status: int, since: float) -> None:
    """End the process now with ``status`` where a look at a torchrun meeting point handed
    since ``since`` (``time.monotonic()``: the command's start; not a Python caller's earlier
    looks) was left under way (:func:`loftup.extract.looks.in_flight`: unanswered, or its wait
    stopped by Ctrl-C or SIGTERM): its worker, in torch's C++, aborted the process (SIGABRT, a
    C++ trace after the one line) where the point answered or closed while Python ended it."""
    looks = sys.modules.get("loftup.extract.looks")  # (not imported: no look was made)
    if looks is not None and looks.in_flight(since):
        looks.exit_now(status)


def for_the_command(setting) -> None:
    """Enter the context manager ``setting`` (a process-wide one: Pillow's pixel limit, which
    the threads that read images see too) until the running command ends; for good where no
    command runs."""
    if _SETTINGS:
        _SETTINGS[-1].enter_context(setting)
    else:
        setting.__enter__()


@contextlib.contextmanager
def _torch_threads(threads: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_threads(threads: int | None) -> None:
    """``--threads N`` for the running command (0 or None: torch's own number)."""
    if threads:
        for_the_command(_torch_threads(threads))


#: The real stdout while a command given ``--json -`` runs (:func:`stdout_for_json`).
_JSON_STDOUT: list = []


@contextlib.contextmanager
def stdout_for_json(json_out):
    """With ``--json -`` stdout holds the JSON alone (``| python -c 'json.load(sys.stdin)'``):
    everything else the command prints (tables, reports, "wrote" lines, a library's own
    prints) goes to stderr meanwhile, and :func:`write_json` writes to the real stdout."""
    if json_out != "-":
        yield
        return
    _JSON_STDOUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STDOUT.pop()


def write_json(path: str, obj) -> None:
    """``obj`` as strict JSON to the file ``path`` (said on a line), or to stdout for ``-``;
    ``~/x.json`` is written in the home folder, where it was checked (not in a ``./~``)."""
    import os

    from .. import atomic

    if path == "-":
        out = _JSON_STDOUT[-1] if _JSON_STDOUT else sys.stdout
        out.write(atomic.json_text(obj) + "\n")  # strict, as the files are: NaN is null
        out.flush()
        return
    path = os.path.expanduser(path)
    atomic.write_json(path, obj, follow_links=True)  # a link named by the user stays one
    say(f"wrote {path}")


def say(line: str, file=None) -> None:
    """Print ``line`` as one line: what it quotes that is not printable (an escape or a newline
    in a path, a bidirectional control, the byte of a name that is no UTF-8) written escaped
    (:func:`~loftup.errors.printable`), shown, neither obeyed by the terminal nor breaking the
    line."""
    print(printable(line), file=file)


def say_lines(text: str, file=None, flush: bool = False) -> None:
    """Print ``text`` (a table, a report, a config) on the lines it lays out itself, what is
    not printable within a line written escaped, as :func:`say` does."""
    print("\n".join(map(printable, text.split("\n"))), file=file, flush=flush)


def say_done(text: str) -> None:
    """Print the summary of a finished run (or experiment, or demo), or the config that
    ``--print-config`` resolved. To a terminal that is gone (its window closed, the SSH session
    ended, without the hang-up that stops a run: EIO) it is lost, and the command still ends
    with status 0, a run's files written; not a traceback and status 1 in its place. (A closed
    pipe, ``| head``, is the command line's status 141, as for every command.)"""
    import errno

    try:
        say_lines(text, flush=True)  # a name in it holding an escape: shown, not obeyed
    except OSError as e:
        if e.errno != errno.EIO:
            raise
        from .outcome import _drop_stdout

        _drop_stdout()  # what is still buffered would fail again at exit
