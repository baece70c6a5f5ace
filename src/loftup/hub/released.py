"""The released checkpoints' files (:data:`~.registry.RELEASED`) in the Hugging Face cache:
found there or downloaded (:func:`released_file`, ``loftup download``), looked for without a
download (:func:`cached_path`), and listed for ``loftup info`` (:func:`released_table`). Any
hub file's lookup, and what offline says, are :func:`~.remote.hub_file`'s."""

from __future__ import annotations

from pathlib import Path

from ..errors import PathPermissionError
from .damaged import check_cached_blob
from .refresh import cached_ref
from .registry import RELEASED, resolve_name

# :mod:`.remote` imports this module's names (importable from there too): its own are imported
# here inside the functions that use them, which keeps the import one-way


def download(name: str) -> Path:
    """Fill the Hugging Face cache with a released checkpoint; returns its local path."""
    return released_file(name, downloading=True)


def released_file(name: str, *, downloading: bool = False) -> Path:
    """Local path of a released checkpoint: the cache first, then a download; offline with
    nothing cached, a WeightsNotFoundError naming the file and how to provide it
    (``downloading``: for ``loftup download``, see :func:`hub_file`)."""
    from .remote import hub_file

    ckpt = resolve_name(name)
    cached_ref(ckpt.repo_id)  # a damaged ref file: named, not a UnicodeDecodeError
    return hub_file(
        ckpt.repo_id,
        ckpt.filename,
        what=ckpt.name,
        local_hint=(  # a file of the hub layout does not record its backbone: say which
            f"load_upsampler('/path/to/{ckpt.filename}'), load_pipeline('/path/to/"
            f"{ckpt.filename}', backbone={ckpt.backbone!r}) or `loftup upsample -m "
            f"/path/to/{ckpt.filename} --backbone {ckpt.backbone}`"
        ),
        downloading=downloading,
    )


def cached_path(name: str) -> Path | None:
    """Local path of a released checkpoint if it is already cached, else None; a
    PathPermissionError where the cache cannot be searched (:func:`check_cache`)."""
    from huggingface_hub import try_to_load_from_cache

    from .remote import check_cache

    ckpt = resolve_name(name)
    check_cache(ckpt.repo_id)
    cached_ref(ckpt.repo_id)  # a damaged ref file: named, not a UnicodeDecodeError
    found = try_to_load_from_cache(ckpt.repo_id, ckpt.filename)
    if not isinstance(found, str):  # its blob out of this user's sight: not "not cached"
        check_cached_blob(ckpt.repo_id, ckpt.filename, cached_ref(ckpt.repo_id))
    return Path(found) if isinstance(found, str) else None


def released_table() -> list[dict]:
    """Every released checkpoint, as ``loftup info`` lists it: ``name``, ``backbone``, ``dim``
    (C), ``grid`` (the low-res grid at 224 px, "16x16"), ``hub`` ("repo/file"), ``cached``
    (whether the Hugging Face cache holds it; None where that cannot be told), ``path`` (the
    cached file, or None) and ``unchecked`` (why ``cached`` is None: its folder of the cache
    lies where this user may not search, :func:`cache_problem`, or its ref file is damaged,
    :func:`cached_ref`; else None). One other user's folder in a shared cache, a cache that
    cannot be searched, or one repo's damaged ref file leaves the list whole."""
    from ..errors import CheckpointError
    from .remote import cache_problem

    rows = []
    for c in RELEASED.values():
        unchecked, path = None, None
        try:
            path = cached_path(c.name)
        except PathPermissionError as e:  # said of the cache once, by the command: why alone
            unchecked = cache_problem(c.repo_id) or str(e)  # else its blobs/, out of sight
        except CheckpointError as e:  # its message names the file and the fix
            unchecked = str(e)
        rows.append(
            {
                "name": c.name,
                "backbone": c.backbone,
                "dim": c.dim,
                "grid": f"{c.grid}x{c.grid}",
                "hub": f"{c.repo_id}/{c.filename}",
                "cached": None if unchecked else path is not None,
                "path": str(path) if path else None,
                "unchecked": unchecked,
            }
        )
    return rows
