"""Shared test fixtures: the paper's reference outputs and a local Hugging Face cache."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOFTUP_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "fixtures" / "reference"
REFERENCE_STATE = REFERENCE / "loftup_reference_dinov2s_state_dict.bin"
REFERENCE_CASES = REFERENCE / "loftup_reference_cases.pt"
CASE_NAMES = ("square", "nonsquare", "downscale")

# Without a GPU the Triton kernels are tested in Triton's CPU interpreter (tests/test_kernels.py),
# which has to be chosen before anything imports Triton. The forward never uses the kernels on
# the CPU unless a test switches them on there.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from loftup.hub.files import SAFE_PICKLE_TORCH, torch_release  # noqa: E402 (after TRITON_INTERPRET)

#: For a test that has transformers read a backbone's pytorch_model.bin: it reads one only with
#: torch 2.6 or newer (CVE-2025-32434), and below it loftup refuses the file, naming it, by
#: design (tests/test_featurizer_damaged.py checks that refusal on the torch under test too).
READS_BACKBONE_PICKLES = pytest.mark.skipif(
    torch_release() < SAFE_PICKLE_TORCH,
    reason="transformers reads a backbone's pytorch_model.bin only with torch 2.6 or newer",
)

#: torch 2.4's oneDNN (seen with 2.4.1) rounds each row of a matrix product by how many rows it
#: is given: an image alone and in a batch, or a tile and the whole image, agree there to a few
#: float32 ulps (about 1e-6), not bit for bit as with newer releases (2.5.1 included: the tests
#: of test_api.py, test_bench.py and test_upsample_cli.py pass bit for bit with it).
ROWS_ROUND_BY_COUNT = torch_release() < (2, 5)


def perturb(model, scale: float = 0.05, seed: int = 1):
    """``model`` (a LoftUp) in eval mode with every weight and buffer moved off its initial
    value by ``scale`` x N(0, 1) (BatchNorm variances kept positive): no parameter is left at a
    value that hides a mistake."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point() and t.dim() > 0:
                t.add_(scale * torch.randn(t.shape, generator=g))
        for bn in (model.stem.bn1, model.stem.bn2):
            bn.running_var.abs_().add_(0.5)
    return model.eval()


def perturbed_loftup(dim: int = 384):
    """A perturbed (:func:`perturb`) LoftUp for C = ``dim``, the same one on every call."""
    from loftup import LoftUp

    torch.manual_seed(0)
    return perturb(LoftUp(dim=dim))


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


def need_reference() -> Path:
    """The reference fixtures' folder (the paper's upsampler's weights and outputs, kept in the
    project's shared/ beside the checkout). Without it a test that compares with them is
    skipped, saying where they were looked for; in CI (CI set), where they must be, it fails."""
    if REFERENCE_STATE.exists() and REFERENCE_CASES.exists():
        return REFERENCE
    message = (
        f"reference fixtures not found at {REFERENCE}: the parity tests need the project's "
        f"shared/ beside the checkout, or LOFTUP_SHARED=/path/to/shared"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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


def make_hf_cache(root: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """Lay out ``files`` as a Hugging Face hub cache entry under ``root`` (the HF_HUB_CACHE)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, src in files.items():
        target = snap / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            target.write_bytes(src)
        else:
            shutil.copyfile(src, target)
    return snap


def src_env() -> dict[str, str]:
    """This process's environment with our source first on PYTHONPATH and what it held there
    after it (as tests/test_min_versions.py runs the suite with an older torch on it)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])
        ),
    }


def run_cli(args: list[str], env: dict | None = None, cwd=None, timeout: int = 600):
    """Run ``python -m loftup ARGS`` in a fresh process (for offline/env-dependent behaviour)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "loftup", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, env: dict | None = None, timeout: int = 600):
    """Run a Python snippet in a fresh process with the given environment overrides."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_scripts(scripts: dict[str, str], env: dict | None = None, timeout: int = 600) -> dict:
    """Each of ``scripts`` ({name: Python code}) run in turn in one fresh process, as
    :func:`run_python` runs one, each in a namespace of its own: {name: its ``returncode``
    (its SystemExit's status; 1 and the traceback on stderr for another exception; 0 if it
    ends), ``stdout`` and ``stderr``}, told apart by markers written to both streams between
    them. For several checks that each need a process of their own (an environment read at
    import, no pytest capture) but not a start of their own: each start imports torch and
    loftup again, seconds of CPU."""
    runner = (
        "import sys, traceback\n"
        f"scripts = {scripts!r}\n"
        "for name, code in scripts.items():\n"
        "    for f in (sys.stdout, sys.stderr):\n"
        "        f.write(f'<<<{name}>>>'); f.flush()\n"
        "    try:\n"
        "        exec(compile(code, f'<{name}>', 'exec'), {'__name__': '__main__'})\n"
        "        status = 0\n"
        "    except SystemExit as e:  # as the interpreter takes it at exit\n"
        "        status = e.code if isinstance(e.code, int) else int(e.code is not None)\n"
        "        if e.code is not None and not isinstance(e.code, int):\n"
        "            print(e.code, file=sys.stderr)\n"
        "    except BaseException:\n"
        "        traceback.print_exc()\n"
        "        status = 1\n"
        "    for f in (sys.stdout, sys.stderr):\n"
        "        f.write(f'<<<end {name}: {status}>>>'); f.flush()\n"
    )
    done = run_python(runner, env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    out = {}
    for name in scripts:
        (stdout, status), (stderr, _) = (
            text.split(f"<<<{name}>>>", 1)[1].split("<<<end ")[0:2]
            for text in (done.stdout, done.stderr)
        )
        returncode = int(status.split(">>>", 1)[0].rsplit(": ", 1)[1])
        out[name] = SimpleNamespace(returncode=returncode, stdout=stdout, stderr=stderr)
    return out


def cli_script(args: list[str]) -> str:
    """Code running ``loftup ARGS`` as ``python -m loftup`` does, for :func:`run_scripts`."""
    return f"import sys; from loftup.cli import main; sys.exit(main({list(args)!r}))\n"


def also_in_bfloat16(feat, images, got):
    """The featurizer in bfloat16 (``load_pipeline(..., dtype="bfloat16")``) takes the same
    float32 input and gives bfloat16 features close to its float32 ones."""
    import copy

    half = copy.deepcopy(feat).to(torch.bfloat16)
    with torch.no_grad():
        out = half(images)
    assert out.dtype == torch.bfloat16 and out.shape == got.shape
    err = (out.float() - got).abs().max().item()
    assert 0 < err < 0.1 * got.abs().max().item(), err


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
    import hashlib
    import http.server
    import threading
    import time

    servers = []

    def serve(
        files: dict,
        gated: tuple[str, ...] = (),
        commit: str = "89abcdef0123456789abcdef0123456789abcdef",
        failing: tuple[tuple[str, str], ...] = (),
        private: tuple[str, ...] = (),
        slow: float = 0.0,
    ) -> str:
        by_path = {  # at the main branch, and at the commit by its hash
            f"/{repo}/resolve/{rev}/{name}": data
            for (repo, name), data in files.items()
            for rev in ("main", commit)
        }
        broken = {f"/{repo}/resolve/{rev}/{name}" for repo, name in failing for rev in ("main", commit)}  # fmt: skip
        repos = {repo for repo, _ in files}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                serve.requests.append((self.command, self.path.split("?")[0]))
                time.sleep(slow)
                refused = [r for r in (*gated, *private) if self.path.startswith(f"/{r}/")]
                if refused:
                    self.send_response(401)
                    code = "GatedRepo" if refused[0] in gated else "RepoNotFound"
                    self.send_header("X-Error-Code", code)
                    self.send_header("X-Error-Message", "Access to this model is restricted.")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body and self.path.split("?")[0] in broken:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = by_path.get(self.path.split("?")[0])
                if data is None:  # no such repo, revision or file: said as the hub says it
                    repo, _, rest = self.path.split("?")[0][1:].partition("/resolve/")
                    rev = rest.split("/")[0]
                    code = "RevisionNotFound" if rev not in ("main", commit) else "EntryNotFound"
                    self.send_response(404)
                    self.send_header("X-Error-Code", code if repo in repos else "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):  # noqa: N802 - http.server's name
                self._answer(body=False)

            def do_GET(self):  # noqa: N802
                self._answer(body=True)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    serve.requests = []
    serve.servers = servers  # to shut one down mid-test
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def pip_install_into(
    target: Path, pins: list[str], timeout: int = 600, with_dependencies: bool = False
) -> Path:
    """``pins`` installed from the package registry into the folder ``target`` (without their
    dependencies, unless ``with_dependencies``: name each one), for a test that runs code
    against those releases; the test is skipped, with the reason, where the registry cannot be
    reached."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target)]
    if not with_dependencies:
        pip.append("--no-deps")
    try:
        got = subprocess.run([*pip, *pins], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package registry did not answer within {timeout} s")
    if got.returncode != 0:
        pytest.skip(f"the package registry cannot be reached: {got.stderr.strip()[-200:]}")
    return target


#: Code defining ``gloo_threads()``: how many of the process group's own gloo threads this
#: process still runs (Linux), for a torchrun process to say once it has left its process group:
#: a group that outlives ``destroy_process_group`` keeps them into the interpreter's teardown,
#: where one that needs the GIL aborts the process (see loftup.extract.torchrun._HOLDING_THE_GROUP).
#: They are its workers (``pt_gloo_runloop``, two), which the group's destructor joins before
#: destroy_process_group returns: counted at once, with no wait, as a group kept alive keeps both.
#: gloo's other thread, its TCP transport's event loop (``gloo_tcp_loop``), belongs to the
#: transport device, which anything holding one of the group's gloo contexts (a collective's work)
#: keeps: it is named after the count, not counted. (All of them counted, with no wait, one gloo
#: thread alone, not a kept group's set, was once seen just after destroy_process_group: rank 0,
#: about 1 run in 8 of a loaded CI.)
GLOO_THREADS = """
import os

def gloo_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # a thread that has just ended
            pass
    others = sorted(n for n in names if "gloo" in n and n != "pt_gloo_runloop")
    return f"{names.count('pt_gloo_runloop')}" + (f" (and {', '.join(others)})" if others else "")
"""


def gloo_left(stderr: str) -> list[int]:
    """The gloo thread counts the ranks said (``gloo threads left: N``), in order: parsed, as
    two ranks' lines may interleave on one stderr (one's newline after the other's text)."""
    return [int(n) for n in re.findall(r"gloo threads left: (\d+)", stderr)]
