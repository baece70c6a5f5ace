"""loftup.paths: an output folder that cannot be written, refused before any work in one line
that names the option, the path, what is in the way and the fix; the same words from every
command and from loftup.extract.upsample_folder."""

from __future__ import annotations

import os
import re
import sys

import pytest

from loftup.errors import UsageError
from loftup.paths import check_folder_output


def _refused(path, option="--out") -> str:
    with pytest.raises(UsageError) as e:
        check_folder_output(path, option)
    return str(e.value)


def test_a_folder_that_can_be_written_passes_and_nothing_is_made_or_left(tmp_path):
    (tmp_path / "there").mkdir()
    for path in (tmp_path / "there", tmp_path / "new" / "deeper", str(tmp_path / "there")):
        check_folder_output(path, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]  # no new/, no check file
    assert list((tmp_path / "there").iterdir()) == []


def test_a_file_or_a_path_under_one_is_named_with_the_fix(tmp_path):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    assert _refused(taken, "-o") == f"-o {taken} is a file; give a folder"
    assert _refused(taken / "a" / "b") == (
        f"--out {taken / 'a' / 'b'} cannot be written: {taken} is a file, not a folder; "
        "choose another folder"
    )
    assert taken.read_bytes() == b"x"


def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    """``-o "$OUT"`` with OUT unset: the outputs went into the current folder."""
    from loftup.paths import check_file_output

    monkeypatch.chdir(tmp_path)
    assert _refused("", "-o") == "-o is empty; give a folder"
    with pytest.raises(UsageError, match="^--json is empty; give a file name, e.g. out$"):
        check_file_output("", "--json")
    assert list(tmp_path.iterdir()) == []


def test_a_link_to_nothing_is_named_not_taken_for_a_file(tmp_path):
    """A dangling link where the folder goes (or above it) was said to be 'a file', or, above
    it, passed, and the run failed later with 'File exists'."""
    link = tmp_path / "feats"
    link.symlink_to(tmp_path / "gone")
    for path in (link, link / "sub"):
        assert _refused(path) == (
            f"--out {path} cannot be written: {link} is a link to {tmp_path / 'gone'}, which "
            "does not exist; choose another folder"
        )
    (tmp_path / "gone").mkdir()  # the link now leads to a folder: it is one
    check_folder_output(link / "sub", "--out")


def test_a_folder_that_takes_no_files_is_named_even_for_root(tmp_path):
    """Tried by making a file, not by os.access (which says yes to root everywhere): sysfs
    takes no new files from anyone, and neither does a folder made read-only for a user."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/sys/kernel"):
        pytest.skip("needs Linux's /sys")
    for path, blocker in (("/sys/kernel", "/sys/kernel"), ("/sys/kernel/feats/a", "/sys/kernel")):
        message = _refused(path, "-o")
        pattern = rf"-o {path} cannot be written: {blocker} takes no new files \([^)]+\); "
        assert re.fullmatch(pattern + "choose another folder", message), message


def test_the_alternative_fix_and_a_home_folder_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r" choose another folder \(or --no-cache\)$"):
        check_folder_output("~/f/cache", "--cache-dir", " (or --no-cache)")
    check_folder_output("~/cache", "--cache-dir")  # ~ is the home folder, not a folder named ~
    assert not (tmp_path / "cache").exists()


def test_upsample_folder_refuses_its_output_before_any_input_or_model(tmp_path):
    """The library call, not only the command: a file as ``out`` was a traceback from the
    first write (or 'upsample.json cannot be read'), after the model had loaded."""
    from loftup.extract import upsample_folder

    taken = tmp_path / "taken"
    taken.write_text("x")
    # neither the inputs nor the model exist: the output is said first
    for out, said in ((taken, "is a file; give a folder"), (taken / "o", "cannot be written")):
        with pytest.raises(UsageError, match=f"^out {re.escape(str(out))} {said}"):
            upsample_folder([str(tmp_path / "none")], out, model="nosuch", device="cpu")
        with pytest.raises(UsageError, match=f"^out {re.escape(str(out))} {said}"):
            upsample_folder([str(tmp_path / "none")], str(out), model="nosuch", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_pipe_or_a_link_to_stdout_is_refused_not_replaced_by_a_file(tmp_path, capsys):
    """``--json /dev/stdout`` or ``/dev/null`` (here: a pipe and a link into /proc, as they
    are): the JSON was written beside it and renamed onto the name, so that, as root, the
    device or link became a plain file and nothing reached stdout."""
    import socket
    import stat

    from loftup.cli import main
    from loftup.paths import check_file_output

    pipe, stdout = tmp_path / "pipe.json", tmp_path / "stdout"
    os.mkfifo(pipe)
    stdout.symlink_to("/proc/self/fd/1")
    sock = tmp_path / "sock.json"  # a socket was called "a device, pipe or socket" too
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
    for path, kind in ((pipe, "a pipe"), (sock, "a socket"), (stdout, "a link to a process's")):
        assert main(["info", "--json", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == (
            f"error: --json {path} is {kind}{' open file (in /proc)' * (path == stdout)}, not a "
            "file: the file written would be renamed onto it, replacing it; give a file's path "
            "(--json -: to stdout)\n"
        )
        with pytest.raises(UsageError, match="^--figure .* give a file's path$"):
            check_file_output(path, "--figure")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and os.readlink(stdout) == "/proc/self/fd/1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.json", "sock.json", "stdout"]
    check_file_output(tmp_path / "plain.json", "--json")  # a new file, and through a link to one
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to("real.json")
    check_file_output(tmp_path / "link.json", "--json")


def test_a_link_in_a_loop_is_refused_not_replaced_by_a_file(tmp_path, capsys):
    """``--json lp1`` with lp1 -> lp2 -> lp1 passed the check, printed "wrote lp1" and put a
    plain file in place of the link."""
    from loftup.cli import main

    (tmp_path / "lp1").symlink_to("lp2")
    (tmp_path / "lp2").symlink_to("lp1")
    assert main(["info", "--json", str(tmp_path / "lp1")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"error: --json {tmp_path / 'lp1'} is a link to lp2, which leads back to it (a loop of "
        "links), no file; fix or remove the link, or give another path\n"
    )
    assert os.readlink(tmp_path / "lp1") == "lp2"
