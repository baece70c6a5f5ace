"""A Hugging Face hub for tests, offline: a cache laid out on disk (:func:`make_hf_cache`) and
a mirror served on 127.0.0.1 (:func:`hub_mirrors`, conftest's ``local_hub`` fixture), so that
the real download code runs without a network."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path


def make_hf_cache(
    root: Path, repo_id: str, files: dict[str, Path | bytes], *, blobs: bool = False
) -> Path:
    """Lay out ``files`` as a Hugging Face hub cache entry under ``root`` (the HF_HUB_CACHE);
    its snapshot folder returned. ``blobs``: as huggingface_hub writes one, each file a link
    to a blob of ``blobs/`` named by its bytes' sha256 (the mode and bytes are the blob's);
    else each file is in the snapshot itself."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for name, src in files.items():
        target = snap / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        if blobs:
            blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(exist_ok=True)
            blob.write_bytes(data)
            os.symlink(os.path.relpath(blob, target.parent), target)
        else:
            target.write_bytes(data)
    return snap


def hub_mirrors():
    """``serve``, which starts a mirror for the ``local_hub`` fixture (its docstring says what
    each mirror answers) and returns its endpoint URL; ``serve.servers``: the mirrors'
    servers, in order; ``serve.requests``: each request any of them answered, as (method,
    path). :func:`stop_mirrors` ends them."""
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
    return serve


def stop_mirrors(serve) -> None:
    """Shut the mirrors ``serve`` (:func:`hub_mirrors`) started down, and close their sockets."""
    for server in serve.servers:
        server.shutdown()
        server.server_close()
