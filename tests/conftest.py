"""Shared test fixtures: refused folders, the paper's reference outputs, an offline Hugging
Face cache, a local hub mirror, and cases forked each into a process of its own. The helpers
they and the tests use lie beside it: processes.py (a fresh Python: run_python, run_scripts,
run_cli), forked.py, reference_files.py,
model_helpers.py (perturbed upsamplers, the torch under test), hub_builders.py (a cache laid
out on disk, the mirror's server), file_modes.py, train_fixtures.py."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU the Triton kernels are tested in Triton's CPU interpreter (tests/test_kernels.py),
# which has to be chosen before anything imports Triton. The forward never uses the kernels on
# the CPU unless a test switches them on there.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A suite started in the background of a script (`pytest &`, a non-interactive shell) has Ctrl-C
# ignored, and every process it starts inherits that: the Ctrl-C tests' SIGINT then did nothing
# (21 of them failed so, run that way with the oldest releases). Python's own handler here: the
# processes it starts get the default again, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from reference_files import REFERENCE_CASES, REFERENCE_STATE, need_reference  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_bar_lock():
    """Each test gives tqdm's bars a lock of their own (a thread lock only). The in-process
    signal tests raise Terminated or KeyboardInterrupt at any bytecode of the main thread, also
    between the acquire of a `with tqdm's lock:` and its block, which leaves the lock taken by
    the main thread for good: reentrant, it goes on there, but a bar made in any other thread
    waits forever (two suites hung so: a later test's second run, in a thread, and upsample's
    writer threads, all stuck in tqdm's acquire, held by no thread that was waiting). tqdm's
    default lock also holds a multiprocessing semaphore shared with the children the tests
    fork, which a thread lock avoids."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


@pytest.fixture(autouse=True)
def fresh_hub_verdicts(monkeypatch):
    """Each test starts with no hub reachability verdict remembered (loftup.hub.reach keeps
    each for a minute, by host and port): another test's server may have had the same port."""
    from loftup.hub import reach

    monkeypatch.setattr(reach, "UNREACHABLE", {})
    monkeypatch.setattr(reach, "REACHABLE", {})
    monkeypatch.setattr(reach, "WHY", {})


@pytest.fixture
def unsearchable(monkeypatch):
    """``deny(folder)``: what is in ``folder`` cannot be looked at (EACCES), as in another
    user's folder of mode 700. Tests run as root, whom no mode denies, so os.stat (the OS
    boundary pathlib's exists and is_file, and os.path's, look through) is refused for what
    lies in it, links followed, and so is os.scandir of a folder in it (the folder itself is
    read, as its mode 600 lets it be); as another user, the folder's search (x) permission is
    taken away instead. As the OS does, a path is walked as written: ``locked/../ok.png``
    looks up ``..`` in ``locked``, and is refused (os.path.realpath would resolve it away)."""
    real, denied = os.stat, []

    def inside(path, follow_symlinks=True) -> bool:
        written = os.path.join(os.getcwd(), os.fsdecode(path))  # not normalised
        parts = written.split(os.sep)
        # each folder a name is looked up in, links on the way followed; and the file's own
        # folder where the last name, a link, is followed too
        folders = [os.path.realpath(os.sep.join(parts[:n]) or os.sep) for n in range(1, len(parts))]
        if follow_symlinks:
            folders.append(os.path.dirname(os.path.realpath(written)))
        return any((f + os.sep).startswith(d + os.sep) for f in folders for d in denied)

    def stat(path, *args, follow_symlinks=True, **kw):
        if not isinstance(path, int) and inside(path, follow_symlinks):
            raise PermissionError(13, os.strerror(13), os.fspath(path))
        return real(path, *args, follow_symlinks=follow_symlinks, **kw)

    def deny(folder):
        denied.append(os.path.realpath(folder))
        if os.geteuid() != 0:
            folder.chmod(0o600)
            return
        scandir = os.scandir  # as it is now: another fixture's refusals kept

        def refused(path="."):
            if not isinstance(path, int) and inside(path):
                raise PermissionError(13, os.strerror(13), os.fspath(path))
            return scandir(path)

        monkeypatch.setattr(os, "stat", stat)
        if len(denied) == 1:
            monkeypatch.setattr(os, "scandir", refused)

    yield deny
    for folder in denied:  # as another user: searchable again, for tmp_path's removal
        Path(folder).chmod(0o700)


@pytest.fixture
def locked(monkeypatch):
    """``lock(folder)``: reading ``folder`` fails with EACCES, as for a folder of another user
    with mode 700. Tests run as root, whom no mode denies, so the one call that reads a folder
    (os.scandir, the OS boundary os.walk lists through) is refused for it; as another user, the
    folder's mode is taken away instead. Reached through a link, it is refused too, as the
    folder's mode refuses it. With ``unsearchable``, lock a folder after denying it."""
    denied = set()

    def lock(folder):
        if os.geteuid() != 0:
            folder.chmod(0)
            return
        if not denied:
            real = os.scandir  # as it is now: another fixture's refusals kept

            def scandir(path="."):
                if not isinstance(path, int) and os.path.realpath(path) in denied:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
                return real(path)

            monkeypatch.setattr(os, "scandir", scandir)
        denied.add(os.path.realpath(folder))

    return lock


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on two shared cores: one thread is faster and repeatable (no OpenMP
    hand-offs). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sa1b(tmp_path_factory):
    """The training tests' data: 16 SA-1B images of 56 px with their masks
    (tests/train_fixtures.py), written once per test module (a module may define its own)."""
    from train_fixtures import write_sa1b

    return write_sa1b(tmp_path_factory.mktemp("data") / "sa1b", 16, size=56)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The ``loftup upsample`` tests' photos: astronaut (512x512) and coffee (400x600) from
    scikit-image, as files."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.jpg", quality=95)
    return folder


@pytest.fixture
def base():
    """A new folder under /tmp that every user may search (pytest's own is root's only, 0700),
    for a test that runs as another user; removed after it."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def upsampler(tmp_path_factory):
    """A random-weight upsampler for the tiny backbone, as a save_pretrained folder."""
    import loftup

    folder = tmp_path_factory.mktemp("up")
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")
    return folder


@pytest.fixture(scope="module")
def forked(request):
    """Runs each case of the test module in a process of its own (``forked.run(case, log,
    **kwargs)``), forked from one prepared for them that imports the module and its
    ``PREPARED`` modules (tests/forked.py): for a case that sends a signal, which is raised at
    whatever bytecode runs next, maybe a library's, leaving its lock held (tqdm's write lock:
    a later test's writer thread, in a garbage collection of a bar, then waited for it for
    ever), so that no process runs a case after another."""
    from forked import Forked

    cases = Forked([request.module.__name__, *getattr(request.module, "PREPARED", ())])
    yield cases
    cases.close()


@pytest.fixture
def printed():
    """What the unraisable hook was handed (``Exception ignored in``), the hook put back."""
    printed = []
    hook, sys.unraisablehook = sys.unraisablehook, printed.append
    yield printed
    sys.unraisablehook = hook


@pytest.fixture
def tiles_of_64(monkeypatch):
    """Outputs tiled in 64-pixel tiles instead of the CPU's 256: the same tiling, streaming and
    writing, on outputs of a 16th of the pixels."""
    import loftup.tiling

    assert loftup.tiling.default_tile_size("cpu") == 256
    monkeypatch.setattr(loftup.tiling, "default_tile_size", lambda device: 64)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return need_reference()


@pytest.fixture(scope="session")
def reference_state(reference_dir) -> dict:
    return torch.load(REFERENCE_STATE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def reference_cases(reference_dir) -> dict:
    return torch.load(REFERENCE_CASES, map_location="cpu", weights_only=True)


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """No network, and an empty Hugging Face cache (``tmp_path / "empty-cache"``), for the
    backbone tests (tests/test_featurizer*.py). Use with ``pytestmark =
    pytest.mark.usefixtures("hf_offline")``."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


@pytest.fixture
def local_hub():
    """A Hugging Face hub mirror on 127.0.0.1 (what ``HF_ENDPOINT`` points at): ``serve(files)``
    with ``files`` {(repo_id, filename): bytes} returns its endpoint URL. It answers the file
    requests ``hf_hub_download`` makes (HEAD for the commit, ETag and size, then GET) and 404
    for anything else (a repo, revision or file it lacks said as the hub says each), so the
    real download code runs, offline. ``serve(files, gated=repos)``:
    those repos answer as the hub does for a gated repo the caller may not read (401,
    X-Error-Code GatedRepo); ``private=repos``: as it does for a private or deleted repo
    asked without a login (401, X-Error-Code RepoNotFound). ``commit``: the commit it says its files are of (a repo pushed
    again is another commit), served at its hash as at "main". ``failing``: (repo_id,
    filename) pairs whose download (the GET after the HEAD) is answered with a 500, as a hub
    that fails mid-download does. ``slow``: seconds it waits before each answer.
    ``serve.servers``: the mirrors' servers, in order (``shutdown()``, ``server_close()``).
    ``serve.requests``: each request any of its mirrors answered, as (method, path), in order."""
    from hub_builders import hub_mirrors, stop_mirrors

    serve = hub_mirrors()
    yield serve
    stop_mirrors(serve)
