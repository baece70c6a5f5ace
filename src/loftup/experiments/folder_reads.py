"""What one start of an experiment reads of its run folders, read once: each checkpoint's step
and history (:func:`~.run_folders._load_step`), each stage-1 checkpoint's sha256, and each
folder's ``config.yaml`` and records (``init.json``, ``inputs.json``). The up-front check
(:func:`~.begun.check_begun`) and then every variant at every seed (:func:`~.runs.run_variant`)
each read them: a stage-1 run that three variants share was loaded four times and hashed four
times per seed. Distill-view's 3 seeds, all finished, made 30 loads of 12 files and 12 hashes of
3 (7 to 10 s on 2 CPU cores with DINOv2-S's 49-66 MiB checkpoints); now 12 and 3 (3.5 to
4.7 s). Its 2 quick seeds' rerun (8 folders) opened config.yaml 26 times and inputs.json 16
times; now 8 and 8.

A file is known by its path, inode, size and time of change: one written since it was read (a
run trained on, a stage-1 run trained again) is read again. What the start writes itself (the
folder of a run it trains or copies, :func:`~.runs.run_stage`; a record) is forgotten outright
(:meth:`FolderReads.forget`): the file's identity may not tell (ext4 gives an atomic replace
the inode just freed, NFS and SMB keep times to the second, FAT to two).

A run the start trains on (resumes) is loaded again by ``train``, under its folder's lock: a
checkpoint held from before the lock could be an older one than another process has written
since (a requeued job), and holding it would keep it in memory through the evaluations."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .folder_files import _read, _saved_config
from .run_folders import _check_inputs, _load_step, _record_inputs


class FolderReads:
    """The reads of one start (a new one per start: nothing is kept across them)."""

    def __init__(self) -> None:
        self._steps: dict[tuple, dict] = {}
        self._shas: dict[tuple, str] = {}
        self._records: dict[tuple, dict | None] = {}
        self._configs: dict[tuple, dict] = {}
        self._inputs: set[tuple] = set()

    def step(self, out: Path) -> dict:
        """``{"step", "history"}`` of the checkpoint of the begun run in ``out``, refused as
        :func:`~.run_folders._load_step` refuses it (only those two are kept: the checkpoints
        of an experiment's every run, held whole, take gigabytes)."""
        key = _identity(Path(out) / "checkpoint.pt")
        if key is None or key not in self._steps:
            raw = _load_step(Path(out))  # refused where gone or damaged
            return _keep(self._steps, key, {"step": raw["step"], "history": raw.get("history")})
        return self._steps[key]

    def sha256(self, path: Path) -> str:
        """The sha256 of the file ``path``."""
        from .data import file_sha256

        return _once(self._shas, path, file_sha256)

    def record(self, path: Path) -> dict | None:
        """The record (a JSON object) ``path`` holds, None where there is none; a damaged one
        refused as :func:`~.folder_files._read` refuses it."""
        return _once(self._records, path, _read)

    def config(self, out: Path) -> dict:
        """The config the run in ``out`` saved (:func:`~.folder_files._saved_config`), a copy:
        each folder's was read 3 to 5 times a start (the up-front check, every variant that
        reuses it, the report's training configs)."""
        import copy

        path = Path(out) / "config.yaml"
        return copy.deepcopy(_once(self._configs, path, lambda p: _saved_config(p.parent)))

    def forget(self, path: Path) -> None:
        """Drop what was read of the file ``path`` (its step and history, its sha256, its
        record or config), or of every file in the folder ``path``: the start has written
        it again (a run trained in it, a run copied into it)."""
        where = os.path.abspath(path)
        inside = where.rstrip(os.sep) + os.sep

        def gone(key: tuple) -> bool:
            return key[0] == where or key[0].startswith(inside)

        for cache in (self._steps, self._shas, self._records, self._configs):
            for key in [k for k in cache if gone(k)]:
                del cache[key]

    def check_inputs(self, runs: Path, inputs: dict) -> None:
        """:func:`~.run_folders._check_inputs` of every folder under ``runs``, once: the
        folders trained since record these same ``inputs``."""
        key = ("runs", str(runs), _said(inputs))
        if key not in self._inputs:
            _check_inputs(runs, inputs, self)
            self._inputs.add(key)

    def record_inputs(self, out: Path, inputs: dict, begun: bool) -> None:
        """:func:`~.run_folders._record_inputs` of the folder ``out``, once."""
        key = ("folder", str(out), _said(inputs))
        if key not in self._inputs:
            _record_inputs(out, inputs, begun, self)
            self._inputs.add(key)


def _said(inputs: dict) -> str:
    return json.dumps(inputs, sort_keys=True, default=str)


def _once(cache: dict, path: Path, read):
    """``read(path)``, kept in ``cache`` by the file's identity (read again once it changed)."""
    key = _identity(path)
    if key is None or key not in cache:
        return _keep(cache, key, read(path))
    return cache[key]


def _keep(cache: dict, key, value):
    """``value``, kept in ``cache`` under ``key`` (not where the file has no identity)."""
    if key is not None:
        cache[key] = value
    return value


def _identity(path: Path) -> tuple | None:
    """The path, inode, size and change time of a file (None: it cannot be looked at)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
