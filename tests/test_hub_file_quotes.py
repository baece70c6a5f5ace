"""What a weights file that is no weights is quoted as saying: a web page its <title> (or its
first text), an error reply its first line cut at a word, a Git LFS pointer the size of the
file it stands for, text that is no UTF-8 decoded. The first 41 bytes were quoted, cut
mid-word, and a page's title or a pointer's size line never reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_builders import make_hf_cache
from hub_helpers import POINTER, TEXT, _offline_cache, _own_upsampler, _released_cached_said, _said
from loftup import load_upsampler
from loftup.errors import CheckpointError
from loftup.hub import read_weights
from loftup.hub.damaged import damage

SUFFIXES = [".safetensors", ".pth"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_web_page_is_quoted_by_its_title(tmp_path, suffix):
    """A proxy's page: its title (entities read, the second page's title not), where its
    first 41 bytes said only "<!DOCTYPE html>"; a page without a title: its first text, its
    script left out, whole: its "; " (where callers cut a message for their fix) made ", "."""
    page = (
        b"<!DOCTYPE html>\n<html lang=en><head><meta charset='utf-8'>\n"
        b"<title>\n  Access Denied &amp; Logged - Example Corp Web Gateway\n</title>"
        b"<style>body { color: red }</style></head><body><h1>Blocked</h1></body></html>\n"
    )
    path, said = _said(tmp_path, suffix, page + page.replace(b"Access", b"Second"))
    assert said.startswith(
        f"{path} is a web page (HTML) titled 'Access Denied & Logged - Example Corp Web "
        "Gateway', not a weights file: a page's address was downloaded in its place"
    )
    untitled = (
        b"<html><head><script>var policy = 1;</script></head><body>\n<h1>Access   denied</h1>"
        b"<p>Your request was blocked by the proxy; ask your administrator.</p></body></html>"
    )
    path, said = _said(tmp_path, suffix, untitled)
    assert said.startswith(
        f"{path} is a web page (HTML) that reads 'Access denied Your request was blocked by "
        "the proxy, ask your administrator.', not a weights file"
    )


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_long_first_line_is_cut_at_a_word(tmp_path, suffix):
    """An error reply's first line, 170 characters: cut after the last whole word within 120
    characters (its URL whole), "..." after it; its second line left out."""
    line = (
        "Error 403: Access denied. Your request to https://huggingface.co/haiwen/loftup-dinov2s"
        "/resolve/main/model.safetensors was blocked by the network policy of your organisation"
    )
    path, said = _said(tmp_path, suffix, f"\n{line}\nRequest id: 1234\n".encode())
    cut = line[: line.index(" was blocked")]
    assert said.startswith(f"{path} {TEXT}{cut + '...'!r}; download the file itself again")
    short = '{"error":"Entry not found"}'  # whole: nothing cut, no "..."
    path, said = _said(tmp_path, suffix, short.encode())
    assert said.startswith(f"{path} {TEXT}{short!r}; ")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_text_that_is_no_utf8_is_quoted_decoded(tmp_path, suffix):
    """A proxy's reply in Windows-1252 ("für") was no text (a byte not UTF-8 before the end of
    the 41 bytes read): "corrupt or truncated". Bytes that are no text are still not quoted."""
    line = "Zugriff für diesen Rechner verweigert: die Firewall Ihres Netzes blockiert sie."
    path, said = _said(tmp_path, suffix, f"{line}\r\n".encode("cp1252"))
    assert said.startswith(f"{path} {TEXT}{line!r}; ")
    path, said = _said(tmp_path, suffix, bytes(range(256)) * 20)
    assert "it is text" not in said and "begins" not in said


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_git_lfs_pointer_says_the_file_it_stands_for(tmp_path, suffix):
    """A pointer's size and hash (the file the clone lacks) were past the 41 bytes read: now
    said, by a load and by loftup download's check of a cached file. Outside a clone it came
    from the hub's /raw/ link, which is said, not a clone without Git LFS."""
    _, folder, _ = _own_upsampler(tmp_path)
    path = folder / "model.safetensors"
    path.unlink()
    path = path.with_suffix(suffix)
    path.write_bytes(POINTER)
    stands = "of 88225724 bytes (84.1 MiB), sha256 4d7a214614ab..."
    want = f"{path} is a Git LFS pointer (133 bytes of text), not the file it stands for, {stands}"
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path if suffix == ".pth" else folder)
    assert str(e.value).startswith(f"{want} (the hub's /raw/ link gives a large file's pointer")
    assert "download the file by its /resolve/ URL" in str(e.value)
    assert "git lfs" not in str(e.value)
    assert damage(path).startswith(want) and not damage(path).endswith(";")


def test_a_pointer_in_a_clone_says_git_lfs_pull_and_one_of_nothing_its_size(tmp_path):
    """A clone of a hub repo (its .gitattributes tracks files with Git LFS) is told `git lfs
    pull`, a project's own repository that a pointer was downloaded into is not; a pointer to
    an empty file was "of 0 bytes (0.0 TiB)"."""
    clone = tmp_path / "loftup-dinov2s"
    (clone / ".git").mkdir(parents=True)
    (clone / "weights").mkdir()
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    path = clone / "weights" / "model.pth"
    path.write_bytes(POINTER)
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    assert "(a repository cloned without Git LFS holds pointers in place of its large " in str(
        e.value
    )
    assert str(e.value).endswith(
        "; `git lfs install` and `git lfs pull` in the clone fetch the files"
    )
    (clone / ".gitattributes").write_text("*.png binary\n")  # a project's repo: /raw/ said
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    assert "git lfs" not in str(e.value) and "/raw/ link" in str(e.value)
    path.write_bytes(POINTER.replace(b"size 88225724", b"size 0"))
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    assert "not the file it stands for, of 0 bytes, sha256 4d7a214614ab... (" in str(e.value)


def test_a_pointer_in_the_cache_is_told_its_blob_not_a_clone(tmp_path, monkeypatch):
    """A released name whose cached file is a pointer: the blob to delete and loftup download,
    where the message also said "a repository cloned without Git LFS: git lfs pull"."""
    snap, said = _released_cached_said(tmp_path, monkeypatch, POINTER)
    assert said.startswith(f"{snap / 'pytorch_model.bin'} is a Git LFS pointer (133 bytes")
    assert "/blobs/" in said and "`loftup download loftup_dinov2s`" in said
    assert "clone" not in said and "/raw/" not in said
    assert "clone" not in damage(snap / "pytorch_model.bin")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_page_the_html_parser_gives_up_on_is_still_said_a_page(tmp_path, suffix):
    """An unknown marked section (``<![foo]>``) made Python's HTMLParser raise AssertionError,
    which a load gave as a raw traceback: what was read before it is said."""
    page = b"<!DOCTYPE html><html><head><title>Blocked</title></head><body><![foo]> x</body>"
    path, said = _said(tmp_path, suffix, page)
    assert said.startswith(f"{path} is a web page (HTML) titled 'Blocked', not a weights file")
    path, said = _said(tmp_path, suffix, b"<html><body>Denied <![  x ]]> later</body></html>")
    assert said.startswith(f"{path} is a web page (HTML) that reads 'Denied', not a weights")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_utf16_text_is_said_with_the_redirection_that_wrote_it(tmp_path, suffix):
    """Windows PowerShell 5.1's > writes UTF-16 text (its byte order mark first): it was
    "corrupt", a page in it not a page. Said as UTF-16 text, with a download that writes the
    bytes themselves."""
    path, said = _said(tmp_path, suffix, "Access denied by proxy\r\n".encode("utf-16"))
    assert said.startswith(
        f"{path} is corrupt or not a PyTorch or safetensors file: it is UTF-16 text (a "
        "download's output written by a shell's > redirection?) and begins 'Access denied by "
        "proxy'; download it with curl -L -o FILE URL or Invoke-WebRequest URL -OutFile FILE"
    )
    page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n"
    path, said = _said(tmp_path, suffix, b"\xfe\xff" + page.encode("utf-16-be"))
    assert said.startswith(
        f"{path} is a web page (HTML as UTF-16 text, as a shell's > redirection writes it) "
        "titled 'Sign in', not a weights file"
    )
    assert "-OutFile" in said


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_semicolon_in_a_quote_does_not_cut_it(tmp_path, suffix):
    """A quote was cut at its first "; " ('Error; please retry later' said 'Error...'), as
    callers cut a message there for their own fix (damage() among them): its "; " is ", "."""
    path, said = _said(tmp_path, suffix, b"Error; please retry later\n")
    assert said.startswith(f"{path} {TEXT}'Error, please retry later'; download the file")
    page = b"<html><head><title>Error 403; Access denied by policy XYZ</title></head></html>"
    path, said = _said(tmp_path, suffix, page)
    assert "titled 'Error 403, Access denied by policy XYZ', not a weights file" in said
    if suffix == ".pth":  # damage() of a .safetensors is safetensors' own error
        assert damage(path) == said.split("; ")[0]
        assert damage(path).endswith("its /resolve/ link the file itself)")


#: Pages that do not begin with <!doctype html> or <html>, as proxies and servers send them
LATE_STARTS = {
    "comment": b"<!-- generated by proxy -->\n<!DOCTYPE html><html><title>Denied</title></html>",
    "xhtml": b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML '
    b'1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html xmlns="http:'
    b'//www.w3.org/1999/xhtml"><head><title>Denied</title></head></html>',
    "head": b"<head><title>Denied</title></head><body>Access denied</body>",
    "body": b"<BODY>\n<TITLE>Denied</TITLE>Access denied</BODY>",
    "title": b"<title>Denied</title>\n<p>Access denied",
}


@pytest.mark.parametrize("start", LATE_STARTS)
def test_a_page_that_starts_late_is_said_a_page(tmp_path, start):
    """A page with a comment or an XML declaration first, or whose first tag is <head>,
    <body> or <title>, was quoted as raw markup (the XHTML page's title lost)."""
    path, said = _said(tmp_path, ".pth", LATE_STARTS[start])
    assert said.startswith(f"{path} is a web page (HTML) titled 'Denied', not a weights file")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_control_character_past_the_first_line_leaves_it_quoted(tmp_path, suffix):
    """One colour escape anywhere in the head made it no text: "neither a zip archive nor a
    pickle", under .safetensors "corrupt or truncated (header too large)"."""
    path, said = _said(tmp_path, suffix, b"Service Unavailable\n\x1b[0m\n")
    assert said.startswith(f"{path} {TEXT}'Service Unavailable'; ")
    path, said = _said(tmp_path, suffix, b"\x1b[31mService Unavailable\n")  # its escape left out
    assert said.startswith(f"{path} {TEXT}'Service Unavailable'; ")
    path, said = _said(tmp_path, suffix, b"Service\x00Unavailable\n")  # another, in it: unquoted
    assert "Service" not in said


def _fetched_as(tmp_path, monkeypatch, data: bytes) -> tuple[Path, str]:
    """loftup_dinov2s's file cached as huggingface_hub saves what it was served: ``data`` in
    the blob named by the hub's file's hash (a portal's page in the weights' place); its
    snapshot file, and what loading the name said."""
    snap = make_hf_cache(
        tmp_path / "hub", "haiwen/loftup-dinov2s", {"pytorch_model.bin": b"weights"}, blobs=True
    )
    (snap / "pytorch_model.bin").resolve().write_bytes(data)
    _offline_cache(monkeypatch, tmp_path / "hub")
    with pytest.raises(CheckpointError) as e:
        load_upsampler("loftup_dinov2s")
    return snap / "pytorch_model.bin", str(e.value)


def test_a_page_or_utf16_text_in_the_hugging_face_cache_is_not_told_an_origin_it_cannot_have(
    tmp_path, monkeypatch
):
    """huggingface_hub fetches by /resolve/ links into files of its own: a page or UTF-16 text
    in its cache, which the hub does not hold (its blob's name is another file's hash), was
    said to be "the hub's /blob/ link"'s page or "a shell's > redirection"'s output, which
    cannot have put it there."""
    page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n"
    file, said = _fetched_as(tmp_path / "a", monkeypatch, page.encode("utf-16"))
    assert said.startswith(
        f"{file} is a web page (HTML as UTF-16 text) titled 'Sign in', not a weights file (a "
        "proxy's or captive portal's page saved by the download?); it is a damaged download "
    )
    text = "Access denied by proxy\r\n".encode("utf-16")
    file, said = _fetched_as(tmp_path / "b", monkeypatch, text)
    assert said.startswith(
        f"{file} is corrupt or not a PyTorch or safetensors file: it is "
        "UTF-16 text (an error reply saved in its place?) and begins 'Access denied by proxy'; "
        "it is a damaged download in the Hugging Face cache: delete "
    )
    assert "/blob/" not in said and "redirection" not in said


def test_a_coloured_error_reply_is_quoted_without_its_escapes(tmp_path):
    """A coloured error reply (a terminal's escape sequences: a colour, a window's title) was
    "neither a zip archive nor a pickle", its escapes counted as bytes that are no text."""
    reply = b"\x1b]0;curl\x07\x1b[1;31mERROR\x1b[0m: 403 Forbidden\n\x1b[2mretry\x1b[0m\n"
    path, said = _said(tmp_path, ".pth", reply)
    assert said.startswith(f"{path} {TEXT}'ERROR: 403 Forbidden'; "), said


def test_a_page_with_a_byte_windows_1252_leaves_undefined_keeps_its_title(tmp_path):
    """A page holding a byte that Windows-1252 leaves undefined (0x81) was told a page, by its
    Latin-1 text, but its title was looked for in no text at all."""
    page = b"<html><head><title>Acc\xe8s refus\xe9</title></head><body>\x81</body></html>"
    path, said = _said(tmp_path, ".pth", page)
    assert said.startswith(f"{path} is a web page (HTML) titled 'Accès refusé', not a weights")
