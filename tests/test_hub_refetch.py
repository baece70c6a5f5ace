"""`loftup download` of a damaged file in the Hugging Face cache: fetched again and linked in
its place, whatever the damaged blob is named; a copy that comes back damaged is said so."""

from __future__ import annotations

import os

import pytest

from hub_builders import make_hf_cache
from hub_helpers import _use_mirror
from loftup import WeightsNotFoundError
from reference_files import REFERENCE_STATE

PAGE = b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head></html>"
POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 12345\n"


def test_download_replaces_a_damaged_blob_not_named_by_its_etag(tmp_path, local_hub, monkeypatch):
    """A damaged cached file whose blob is not named by the file's ETag (a portal's page, a Git
    LFS pointer, each a blob of its own bytes' name) or that is a plain file of the snapshot
    stayed in place: huggingface_hub relinks a snapshot's file only where none exists, so
    `loftup download` said it had fetched it, and the next load sent the user back to it. A
    copy that comes back damaged too is an error, not a success; one whose download failed, once
    its damaged copy was removed, is not told to delete that copy."""
    from loftup.hub import download

    good = REFERENCE_STATE.read_bytes()
    files = {
        ("haiwen/loftup-clip", "pytorch_model.bin"): good,
        ("haiwen/loftup-dinov2s", "pytorch_model.bin"): good,
        ("haiwen/loftup-siglip", "pytorch_model.bin"): PAGE,  # the proxy serves its page
        ("haiwen/loftup-siglip2", "pytorch_model.bin"): good,
    }
    failing = (("haiwen/loftup-siglip2", "pytorch_model.bin"),)  # its download fails midway
    endpoint = local_hub(files, commit="0123456789abcdef0123456789abcdef01234567", failing=failing)
    hub = tmp_path / "hub"
    page = make_hf_cache(hub, "haiwen/loftup-clip", {"pytorch_model.bin": PAGE}, blobs=True)
    pointer = make_hf_cache(hub, "haiwen/loftup-dinov2s", {"pytorch_model.bin": POINTER})
    for repo in ("haiwen/loftup-siglip", "haiwen/loftup-siglip2"):
        make_hf_cache(hub, repo, {"pytorch_model.bin": POINTER}, blobs=True)
    page_blob = (page / "pytorch_model.bin").resolve()
    _use_mirror(monkeypatch, endpoint, hub)
    for name, snap in (("loftup_clip", page), ("loftup_dinov2s", pointer)):
        assert download(name).read_bytes() == good
        assert (snap / "pytorch_model.bin").read_bytes() == good  # what the next load reads
    assert not page_blob.exists()  # the page's blob, linked from nowhere, is gone
    with pytest.raises(WeightsNotFoundError) as e:
        download("loftup_siglip")
    msg = str(e.value)
    assert "is a Git LFS pointer" in msg and "the copy downloaded again is damaged too" in msg
    assert "is a web page" in msg and "check them and run `loftup download loftup_siglip`" in msg
    with pytest.raises(WeightsNotFoundError) as e:  # its damaged copy was removed first
        download("loftup_siglip2")
    assert "it was removed from the cache: run `loftup download loftup_siglip2` again" in str(
        e.value
    )


@pytest.mark.skipif(
    not hasattr(os, "setresuid") or os.geteuid() != 0,
    reason="takes another user's ids (setresuid), which only root may",
)
def test_a_damaged_file_of_another_users_cache_that_cannot_be_removed_is_said_so():
    """The damaged entry is removed before it is fetched again: in a shared cache of another
    user's, where it cannot be, the download would have linked nothing in its place. Said
    with the file, its blob and what to run once its owner deleted them."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from as_nobody import as_nobody
    from loftup.hub.damaged import drop_damaged

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own is root's only (0700)
    try:
        os.chmod(base, 0o755)
        snap = make_hf_cache(base, "haiwen/loftup-clip", {"pytorch_model.bin": PAGE}, blobs=True)
        link = snap / "pytorch_model.bin"
        said = as_nobody(lambda: drop_damaged(link, "loftup_clip"))
        assert said == (
            f"{link} is a damaged download in the Hugging Face cache that cannot be removed to "
            f"fetch it again (Permission denied): have its owner delete it and {link.resolve()}, "
            "then run `loftup download loftup_clip`"
        )
        assert link.resolve().read_bytes() == PAGE  # left as it was
    finally:
        shutil.rmtree(base)
