"""``loftup upsample`` at the limits of the disk and of memory: an output with no room, too
large, an image above Pillow's guard or too elongated for the backbone fails by name and the run
goes on."""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from loftup.cli import main
from processes import cli_script, run_scripts
from upsample_helpers import outputs


def _limited(limit: str, value: int, body: str) -> str:
    """A script for run_scripts: ``body`` with the soft limit ``resource.<limit>`` at ``value``
    (put back after it), a file-size limit's signal ignored (EFBIG instead of a killed
    process)."""
    return (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"soft, hard = resource.getrlimit(resource.{limit})\n"
        f"resource.setrlimit(resource.{limit}, ({value}, hard))\n"
        "try:\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "finally:\n"
        f"    resource.setrlimit(resource.{limit}, (soft, hard))\n"
    )


@pytest.fixture(scope="module")
def limited_runs(photos, upsampler, tmp_path_factory) -> dict:
    """``loftup upsample`` under limits on file sizes and address space, one script each,
    sharing one process (each start costs seconds of imports): {name: (result, output folder)}.
    The tests below read them."""
    two = [str(photos / "coffee.jpg"), str(photos / "astronaut.png"), "-m", str(upsampler)]
    out = {name: tmp_path_factory.mktemp(name) for name in ("streamed", "whole", "memory")}
    streamed = ["upsample", *two, "-o", str(out["streamed"] / "out"), "--size", "100"]
    memory = ["upsample", *two, "-o", str(out["memory"] / "out"), "--size", "40000"]
    scripts = {
        # 1.5 MB: a 100 x 100 x 32 output fits, 100 x 150 not
        "streamed": _limited(
            "RLIMIT_FSIZE", 1_500_000, cli_script([*streamed, "--stream-above", "0"])
        ),
        # a 100 x 100 x 32 output's data (1.28 MB) and its safetensors file fit, not its .pt
        # archive nor a 100 x 150 one; three runs, one a format
        "whole": _limited(
            "RLIMIT_FSIZE",
            1_280_200,
            "from loftup.cli import main\n"
            f"args, out = {[*two, '--size', '100']!r}, {str(out['whole'])!r}\n"
            "for i, extra in enumerate([[], ['--format', 'safetensors'], ['--stream-above', '0']]):\n"
            "    print(main(['upsample', *args, '-o', f'{out}/{i}', *extra]))\n",
        ),
        # held whole, in 16 GB of address space: a 40000 x 60000 output cannot be allocated
        "memory": _limited("RLIMIT_AS", 16 << 30, cli_script([*memory, "--stream-above", "1e6"])),
    }
    if not hasattr(os, "posix_fallocate"):  # streamed files reserve their space with it
        del scripts["streamed"]
    done = run_scripts(scripts, timeout=300)
    return {name: (done[name], out[name]) for name in done}


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="reserves space with fallocate")
def test_no_room_for_a_streamed_output_fails_that_image_at_once(limited_runs):
    """The space of a streamed file is reserved before anything is computed into it: where
    there is no room (here a 1.5 MB limit on file sizes), that image fails by name, nothing is
    left behind, and the run goes on (1.5 MB: a 100 x 100 x 32 output fits, 100 x 150 not)."""
    res, folder = limited_runs["streamed"]
    out = folder / "out"
    assert res.returncode == 1, res.stderr
    assert "coffee.jpg: could not write its outputs" in res.stderr
    assert "File too large" in res.stderr and "Traceback" not in res.stderr
    assert outputs(out) == ["astronaut.pt"]
    # how large the file is, the limit, and the fix (it said "[Errno 27] File too large")
    said = (
        "coffee.jpg: could not write its outputs (File too large): its features file is 1.9 MB, "
        "over this process's limit on a file's size, 1.5 MB (ulimit -f); try a smaller --size, "
        "--save-dtype float16 or bfloat16, or a higher limit\n"
    )
    assert said in res.stderr, res.stderr


def test_no_room_for_a_whole_output_fails_that_image_in_every_format(limited_runs):
    """A write that fails for the disk (here a limit on file sizes: EFBIG, as a full disk
    gives ENOSPC) fails its image by name in every format, as .npy's does: torch.save and
    safetensors report it as their own errors (a RuntimeError, a SafetensorError), which
    stopped the run with a traceback. The limit lets a 100 x 100 x 32 output's data (1.28 MB)
    and its safetensors file through, not its .pt archive nor a 100 x 150 one."""
    res, tmp_path = limited_runs["whole"]
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    codes = [line for line in res.stdout.splitlines() if not line.startswith("wrote")]
    assert codes == ["1", "1", "1"]  # three runs, each with an image that failed
    failed = [line for line in res.stderr.splitlines() if "could not write its outputs" in line]
    assert all("File too large" in line for line in failed) and len(failed) == 5, res.stderr
    limit = "over this process's limit on a file's size, 1.3 MB (ulimit -f); try a smaller --size"
    assert all(limit in line for line in failed), res.stderr  # .npy's short write too
    assert outputs(tmp_path / "0") == outputs(tmp_path / "2") == []  # .pt: neither fits
    assert outputs(tmp_path / "1") == ["astronaut.safetensors"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # nothing half-made


def test_an_output_too_large_for_memory_or_disk_fails_by_name_and_the_run_goes_on(
    photos, upsampler, tmp_path, capsys, limited_runs
):
    """A --size too large for this machine costs the images it is asked of, by name with the
    reason and the fix, not the run (it was a traceback)."""
    args = [str(photos / "coffee.jpg"), str(photos / "astronaut.png"), "-m", str(upsampler)]
    # streamed (the default above 1 GB): no room for the files, so nothing is computed (the
    # guide image alone of a 400000-pixel side takes terabytes)
    out = tmp_path / "disk"
    assert main(["upsample", *args, "-o", str(out), "--size", "400000"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("could not write its outputs") == 2 and "coffee.jpg" in captured.err
    # 400000 x 600000 x 32 in float32: over the most a file may hold there (or the room)
    assert "coffee.jpg: could not write its outputs (" in captured.err
    assert "its features file is 30.7 TB, " in captured.err, captured.err
    fix = "; try a smaller --size, --save-dtype float16 or bfloat16, or another -o "
    assert captured.err.count(fix) == 2, captured.err
    assert "2 input(s) failed" in captured.out and outputs(out) == []
    # held whole, in a process allowed 16 GB of address space: the allocation fails, each
    # image fails by name with the size it was asked, and the next one is still tried
    done, folder = limited_runs["memory"]
    out = folder / "out"
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    failed = done.stderr.split("failed: ")[1:]
    assert sorted(f.split(":")[0] for f in failed) == sorted(args[:2])
    coffee = "out of memory for a 40000x60000 output (32 channels): the host could not allocate"
    assert coffee in done.stderr and done.stderr.count("; try a smaller --size") == 2
    assert "wrote float32 features of 0 image(s)" in done.stdout and outputs(out) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_room_on_the_disk_is_said_with_the_size_and_the_room_there(tmp_path, code):
    """A full disk (or quota) said "[Errno 28] No space left on device" alone, for a 614 GB
    output where 59 GB were free: the output's size, the room where it goes (as the disk
    tells it) and the fix, naming the options as the caller does (a 16-bit --save-dtype only
    where it is wider, bfloat16 not in .npy). Called with the error a full disk raises (one
    cannot be filled here: the test's file system is shared)."""
    from loftup.extract.no_room import amount, write_failure

    full = OSError(code, os.strerror(code), str(tmp_path / "a.pt.tmp"))
    said_as = {"size": "--size", "save_dtype": "--save-dtype", "out": "-o"}
    why = write_failure(full, tmp_path, 614_400_000_000, "pt", torch.float32, said_as)
    free = amount(shutil.disk_usage(tmp_path).free)
    room = (
        f"and {tmp_path} has {free} free"
        if code == errno.ENOSPC
        else "over this user's disk quota there"
    )
    assert why.startswith(
        f"could not write its outputs ({os.strerror(code)}): its features file is 614.4 GB, {room}"
    ), why
    assert why.endswith(
        "; try a smaller --size, --save-dtype float16 or bfloat16, or another -o with room (or free space there)"
    ), why
    assert "--save-dtype float16, or" in write_failure(
        full, tmp_path, 10**15, "npy", torch.float32, said_as
    )
    half = write_failure(full, tmp_path, 10**15, "pt", torch.float16)  # from Python: its names
    assert half.endswith("; try a smaller size or another out with room (or free space there)"), (
        half
    )
    other = OSError(errno.EACCES, "Permission denied", "a.pt")
    assert (
        write_failure(other, tmp_path, 1, "pt", torch.float32)
        == f"could not write its outputs: {other}"
    )


def test_no_room_says_the_room_of_a_folder_not_made_yet_and_never_a_room_unknown_as_none(
    tmp_path, monkeypatch
):
    """The room was looked at in the output folder alone: one not made yet (its file system is
    its parent's), or a disk that could not be looked at (EACCES, unmounted), was said to have
    "no room", which sent one to free a disk with room; and a small file was "0.0 MB"."""
    from loftup.extract.no_room import amount, write_failure

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "a.pt.tmp")
    later = tmp_path / "not" / "made"
    why = write_failure(full, later, 2048, "pt", torch.float16)
    free = amount(shutil.disk_usage(tmp_path).free)
    assert f"its features file is 2.0 kB, and {later} has {free} free" in why, why
    # room enough there now: a disk out of inodes (or filled meanwhile) is no lack of bytes
    assert f"has {free} free now (filled meanwhile, or out of inodes" in why and "df -i" in why
    # where the bytes are there, a smaller size or 16 bits cannot help: inodes or another out
    assert why.endswith("; free inodes or room there (delete files), or try another out"), why
    assert amount(0) == "0 bytes" and amount(1) == "1 byte" and amount(99_999) == "100.0 kB"

    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "disk_usage", denied)
    why = write_failure(full, tmp_path, 2048, "pt", torch.float16)
    assert "no room" not in why, why
    assert f"and {tmp_path} has room that could not be looked at;" in why, why
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "a.pt.tmp")
    why = write_failure(quota, tmp_path, 2048, "pt", torch.float16)
    assert f"({tmp_path}: room that could not be looked at on the disk)" in why, why


def test_a_file_too_large_for_its_file_system_is_not_said_over_a_higher_ulimit():
    """EFBIG from the file system (FAT32's 4 GB) in a process with a finite, higher ``ulimit
    -f`` was said to be "over this process's limit on a file's size, 100.0 GB": the limit is
    named only where the file is over it."""
    import resource

    from loftup.extract.no_room import write_failure

    big = OSError(errno.EFBIG, os.strerror(errno.EFBIG), "a.pt.tmp")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    high = 100 * 10**9 if hard == resource.RLIM_INFINITY else min(hard, 100 * 10**9)
    resource.setrlimit(resource.RLIMIT_FSIZE, (high, hard))
    try:
        fs = write_failure(big, Path("."), 5 * 10**9, "pt", torch.float16)
        over = write_failure(big, Path("."), high + 1, "pt", torch.float16)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "ulimit" not in fs and "the most one file may hold on that file system" in fs, fs
    assert "over this process's limit on a file's size" in over, over


def test_numpys_short_write_at_the_ulimit_is_said_over_it_as_efbig_is():
    """NumPy's short write (no errno) was said over ``ulimit -f`` only for a file larger than
    the limit, where EFBIG is from a file within a megabyte of it (its headers): a file just
    under the limit was "could not write its outputs: ... requested and ... written"."""
    import resource

    from loftup.extract.no_room import write_failure

    short = OSError("8388608 requested and 262112 written")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    low = 10**7 if hard == resource.RLIM_INFINITY else min(hard, 10**7)
    resource.setrlimit(resource.RLIMIT_FSIZE, (low, hard))
    try:
        near = write_failure(short, Path("."), low - 1000, "npy", torch.float16)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "over this process's limit on a file's size" in near, near


def test_out_of_memory_is_told_apart_and_read():
    """Which errors mean no memory, and what the failure says of them (CUDA's message as
    PyTorch words it; the host allocator's as seen in the test above)."""
    from loftup.errors import out_of_memory
    from loftup.extract import _no_memory

    gpu = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
    )
    assert out_of_memory(gpu) and out_of_memory(MemoryError())
    assert not out_of_memory(RuntimeError("shape mismatch")) and not out_of_memory(OSError(28))
    from loftup.cli.upsample import SAID_AS

    assert _no_memory((384, 9000, 12000), 2, gpu, SAID_AS) == (
        "out of memory for a 9000x12000 output (384 channels): the GPU could not allocate "
        "2.00 GiB; try a smaller --size or --batch-size 1"
    )
    # from Python (upsample_folder, run): its arguments, not the command line's options
    assert _no_memory((384, 9000, 12000), 2, gpu).endswith("try a smaller size or batch_size=1")


def test_images_above_the_decompression_bomb_guard_are_read_when_asked(
    upsampler, tmp_path, capsys, monkeypatch
):
    """Pillow refuses images above ~179 million pixels (a guard for untrusted files); a large
    aerial or scanned image is named with the way to read it, and read when the user says so.
    Pillow's own check, with its threshold lowered for a small file (2400 pixels)."""
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 500)  # refused above 1000 pixels
    photo = tmp_path / "aerial.png"
    Image.new("RGB", (60, 40), (90, 120, 30)).save(photo)
    args = ["upsample", str(photo), "-m", str(upsampler), "--size", "32"]
    assert main([*args, "-o", str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err
    assert "exceeds limit of 1000 pixels" in err
    assert "If you trust the file, raise the limit: loftup upsample --max-image-pixels N" in err
    assert main([*args, "-o", str(tmp_path / "small"), "--max-image-pixels", "2000"]) == 1
    assert "exceeds limit of 2000 pixels" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "yes"), "--max-image-pixels", "2400"]) == 0
    assert (tmp_path / "yes" / "aerial.pt").exists()
    filters = list(warnings.filters)
    assert main([*args, "-o", str(tmp_path / "any"), "--max-image-pixels", "0"]) == 0
    # the command's limit, not the process's: main() called in Python left it at None, and
    # DecompressionBombWarning silenced for good
    assert PILImage.MAX_IMAGE_PIXELS == 500 and warnings.filters == filters


def test_an_image_too_elongated_for_the_backbone_fails_by_name_and_the_run_goes_on(
    photos, upsampler, tmp_path, capsys
):
    """A 2x3000 strip at --backbone-size 224 would be 384,000 patches: refused before any work
    (it hung), and only that image fails: the run went no further than it."""
    Image.new("RGB", (3000, 2), (90, 120, 30)).save(tmp_path / "strip.png")
    out = tmp_path / "out"
    inputs = [str(tmp_path / "strip.png"), str(photos / "astronaut.png")]
    args = ["upsample", *inputs, "-m", str(upsampler), "-o", str(out), "--size", "32"]
    assert main([*args, "--batch-size", "1"]) == 1
    captured = capsys.readouterr()
    # named as the command line calls it (it said "backbone_size ... (None: ...)", which no
    # option of the command line spells)
    assert f"failed: {tmp_path / 'strip.png'}: image is 2x3000 px: at --backbone-size 224" in (
        captured.err
    )
    assert "pass a smaller --backbone-size\n" in captured.err
    assert "1 input(s) failed" in captured.out and outputs(out) == ["astronaut.pt"]
    assert not list(out.glob(".*tmp"))
