"""What a download says where the hub (here a local mirror, :func:`conftest.local_hub`)
answered that it has no such repo, revision or file: the id, the revision or the repo to
check, not a network to find (another machine's download gets the same answer)."""

from __future__ import annotations

import pytest

from hub_helpers import _own_upsampler, _use_mirror
from loftup import load_upsampler
from loftup.downloads import download_names
from loftup.errors import WeightsNotFoundError

NETWORK = "on a machine with network"


@pytest.mark.parametrize(
    "name, said",
    [
        (
            "someone/nothing",
            "The hub has no repo 'someone/nothing' that may be read without a login: check the "
            "id, and for a private repo log in (set HF_TOKEN to an access token, or `hf auth "
            "login`), or pass a local path instead: ",
        ),
        (
            "someone/up@v9",
            "Hub repo 'someone/up' has no branch, tag or commit 'v9': check the revision "
            "(someone/up alone is its main branch), or pass a local path instead: ",
        ),
        (
            "someone/empty",
            "Hub repo 'someone/empty' holds no 'config.json': check that it is the repo meant, "
            "or pass a local path instead: ",
        ),
    ],
)
def test_what_the_hub_lacks_is_said_with_what_to_check(
    tmp_path, monkeypatch, local_hub, name, said
):
    """It said to run the same download on a machine with network and copy its cache."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    files["someone/empty", "README.md"] = b"nothing here yet"
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError) as e:
        list(download_names([name]))
    assert said in str(e.value) and NETWORK not in str(e.value)
    with pytest.raises(WeightsNotFoundError) as e:  # and so does a load
        load_upsampler(name)
    # its weights are looked for first
    said = said.split(":")[0].replace("'config.json'", "'model.safetensors'")
    assert said in str(e.value) and NETWORK not in str(e.value)


def test_a_hub_that_fails_is_still_said_as_a_download_to_try_again(
    tmp_path, monkeypatch, local_hub
):
    """A server's own failure (500) is no answer about the repo: the download may work later or
    elsewhere, as the message says (it said to find a machine with network)."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    failing = (("someone/up", "config.json"),)
    _use_mirror(monkeypatch, local_hub(files, failing=failing), tmp_path / "hub")
    with pytest.raises(WeightsNotFoundError) as e:
        list(download_names(["someone/up"]))
    # the network is there, and the server said so itself: not "find a network"
    assert "Run `loftup download someone/up` again later, or on another machine" in str(e.value)
    assert NETWORK not in str(e.value) and "500" in str(e.value)


def test_a_server_error_on_the_first_request_is_read_through_the_raised_error():
    """huggingface_hub retries a first request the hub answers with a 500, then raises its own
    "check your connection" error with that answer as the cause only: read there too (it was
    said as no network), and nowhere else."""
    from types import SimpleNamespace

    from loftup.hub.reach import server_error

    def answered(status):
        e = OSError("500 Server Error")
        e.response = SimpleNamespace(status_code=status)
        return e

    try:
        try:
            raise answered(500)
        except OSError as first:
            raise FileNotFoundError("check your connection") from first
    except FileNotFoundError as raised:
        assert server_error(raised)
    assert server_error(answered(503)) and not server_error(answered(404))
    assert not server_error(ConnectionError("no route to host"))


def test_a_cache_that_cannot_be_written_is_said_as_a_local_problem(
    tmp_path, monkeypatch, local_hub
):
    """A download that fails writing to this machine's cache (a full disk, a read-only folder;
    here a file where the cache's folder should be) said to download on a machine with
    network and copy its cache here, which fails the same way: it says where it could not
    write and how to give it a folder it can."""
    _, folder, _ = _own_upsampler(tmp_path)
    files = {("someone/up", n): (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}  # fmt: skip
    (tmp_path / "full").write_text("a file, not a folder")
    _use_mirror(monkeypatch, local_hub(files), tmp_path / "full" / "hub")
    for fetch in (
        lambda: list(download_names(["someone/up"])),
        lambda: load_upsampler("someone/up"),
    ):
        with pytest.raises(WeightsNotFoundError) as e:
            fetch()
        said = str(e.value)
        assert (
            f"could not be written to the Hugging Face cache {tmp_path / 'full' / 'hub'} (" in said
        )
        # the file in the way is named: no room or right to write is lacking
        assert f"{tmp_path / 'full'} is a file where the cache needs a folder: move or " in said
        assert "free space" not in said and "set HF_HOME to a writable folder" in said
        assert NETWORK not in said


def test_which_os_errors_are_the_caches_and_which_the_networks():
    """A full disk's write names no file; a socket's EPERM (a firewall) names none either, and
    is the network's. A file over the size limit (EFBIG) was told to free space."""
    import errno

    from loftup.hub.reach import cache_write_error

    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError as first:
            raise RuntimeError("download failed") from first
    except RuntimeError as wrapped:
        assert "(No space left on device): free space there" in cache_write_error(wrapped, "/c")
    denied = PermissionError(errno.EACCES, "Permission denied", "/c/models--a--b")
    assert "(Permission denied: /c/models--a--b): this user may not write there: set HF_HOME" in (
        cache_write_error(denied, "/c")
    )
    read_only = OSError(errno.EROFS, "Read-only file system", "/c/x")
    assert "free space" not in cache_write_error(read_only, "/c")
    too_large = OSError(errno.EFBIG, "File too large", "/c/blobs/x.incomplete")  # ulimit -f
    said = cache_write_error(too_large, "/c")
    assert "free space" not in said and "larger than this process may write (`ulimit -f`)" in said
    for network in (OSError(errno.EPERM, "Operation not permitted"), ConnectionRefusedError()):
        assert cache_write_error(network, "/c") is None
