"""What a weights file that is no weights is quoted as saying: a web page its <title> (or its
first text), an error reply its first line cut at a word, a Git LFS pointer the size of the
file it stands for, text that is no UTF-8 decoded. The first 41 bytes were quoted, cut
mid-word, and a page's title or a pointer's size line never reached."""

from __future__ import annotations

import pytest

from hub_helpers import _own_upsampler
from loftup import load_upsampler
from loftup.errors import CheckpointError
from loftup.hub import read_weights
from loftup.hub.damaged import damage

#: How text in a weights file's place is said, before its quoted line
TEXT = "is corrupt or not a PyTorch or safetensors file: it is text (an error reply saved in "
TEXT += "its place?) and begins "
SUFFIXES = [".safetensors", ".pth"]


def _said(tmp_path, suffix: str, data: bytes) -> tuple[str, str]:
    """The file ``data`` as weights named ``model{suffix}``: its path, and what reading it said."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as e:
        read_weights(path)
    return str(path), str(e.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_web_page_is_quoted_by_its_title(tmp_path, suffix):
    """A proxy's page: its title (entities read, the second page's title not), where its
    first 41 bytes said only "<!DOCTYPE html>"; a page without a title: its first text, its
    script left out, cut before a "; " (which starts the fix)."""
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
        "the proxy...', not a weights file"
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


#: A Git LFS pointer, as a clone without Git LFS holds in a weights file's place
POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 88225724\n"
)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_git_lfs_pointer_says_the_file_it_stands_for(tmp_path, suffix):
    """A pointer's size and hash (the file the clone lacks) were past the 41 bytes read: now
    said, beside `git lfs pull`, by a load and by loftup download's check of a cached file."""
    _, folder, _ = _own_upsampler(tmp_path)
    path = folder / "model.safetensors"
    path.unlink()
    path = path.with_suffix(suffix)
    path.write_bytes(POINTER)
    stands = "of 88225724 bytes (84.1 MiB), sha256 4d7a214614ab..."
    want = f"{path} is a Git LFS pointer (133 bytes of text), not the file it stands for, {stands}"
    with pytest.raises(CheckpointError) as e:
        load_upsampler(path if suffix == ".pth" else folder)
    assert str(e.value).startswith(f"{want} (a repository cloned without Git LFS: `git lfs ")
    assert str(e.value).count("`git lfs pull`") == 1
    assert damage(path).startswith(want)
