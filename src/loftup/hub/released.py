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


def cached_backbone(name: str) -> tuple[str | None, list[str], list[str]]:
    """(hub repo, files, missing) of backbone ``name``'s official weights in the Hugging Face
    cache, as its load asks for them (:func:`~.commits.hub_folder` of
    :data:`~loftup.featurizers.hf_weights.HUB_FILES`, at the commit the cache's ref of main
    names): ``files``, each file the load reads, of each group the name the cache holds (a shard
    index followed by its shards) or, where it holds none, the name the load asks for first;
    ``missing``, those of ``files`` not cached. Nothing is loaded (a shard index is read for its
    shards' names). (None, [], []) for a backbone that needs no files (seeded or shipped). A
    PathPermissionError or CheckpointError as :func:`cached_path` raises them."""
    from huggingface_hub import try_to_load_from_cache

    from ..featurizers import resolve
    from ..featurizers.hf_weights import CONFIG_FILE, HUB_FILES
    from .remote import check_cache
    from .shards import INDEX_SUFFIX, shard_names

    repo = resolve(name).default_weights
    if repo is None:
        return None, [], []
    check_cache(repo)
    commit = cached_ref(repo)  # a damaged ref file: named
    files, missing = [], []

    def cached(filename: str) -> str | None:
        found = try_to_load_from_cache(repo, filename, revision=commit)
        if not isinstance(found, str) and commit is not None:  # its blob out of sight
            check_cached_blob(repo, filename, commit)
        return found if isinstance(found, str) else None

    for group in HUB_FILES:  # each weights name followed by its shard index's, as hub_folder
        names = [m for n in group for m in ((n, n + INDEX_SUFFIX) if n != CONFIG_FILE else (n,))]
        found = next(((n, p) for n in names for p in [cached(n)] if p), None)
        if found is None:
            files.append(names[0])
            missing.append(names[0])
            continue
        files.append(found[0])
        if found[0].endswith(INDEX_SUFFIX):
            shards = shard_names(found[1])
            files += shards
            missing += [s for s in shards if cached(s) is None]
    return repo, [f"{repo}/{f}" for f in files], [f"{repo}/{f}" for f in missing]


def released_table() -> list[dict]:
    """Every released checkpoint, as ``loftup info`` lists it: ``name``, ``backbone``, ``dim``
    (C), ``grid`` (the low-res grid at 224 px, "16x16"), ``hub`` ("repo/file"), ``cached``
    (whether the Hugging Face cache holds all that its load reads offline: the upsampler and
    its backbone's files; None where that cannot be told), ``upsampler_cached`` and
    ``backbone_cached`` (each part alone), ``path`` (the cached upsampler file, or None),
    ``backbone_hub`` (the backbone's hub repo), ``backbone_files`` (each "repo/file" its load
    reads, :func:`cached_backbone`), ``missing`` (the "repo/file"s of both not cached) and
    ``unchecked`` (why ``cached`` is None: a folder of the cache lies where this user may not
    search, :func:`cache_problem`, or a ref file is damaged, :func:`cached_ref`; else None).
    One other user's folder in a shared cache, a cache that cannot be searched, or one repo's
    damaged ref file leaves the list whole."""
    from ..featurizers import resolve

    rows = []
    for c in RELEASED.values():
        why, path = _checked(lambda: cached_path(c.name), c.repo_id)  # noqa: B023 (called now)
        repo = resolve(c.backbone).default_weights
        why_b, backbone = _checked(lambda: cached_backbone(c.backbone), repo)  # noqa: B023
        up = None if why else path is not None
        _, files, absent = backbone or (repo, [], [])
        down = None if why_b else not absent
        missing = ([] if up is not False else [f"{c.repo_id}/{c.filename}"]) + absent
        rows.append(
            {
                "name": c.name,
                "backbone": c.backbone,
                "dim": c.dim,
                "grid": f"{c.grid}x{c.grid}",
                "hub": f"{c.repo_id}/{c.filename}",
                "cached": None if None in (up, down) else up and down,
                "upsampler_cached": up,
                "backbone_cached": down,
                "path": str(path) if path else None,
                "backbone_hub": repo,
                "backbone_files": files,
                "missing": missing,
                "unchecked": why or why_b,
            }
        )
    return rows


def _checked(look, repo_id: str | None):
    """(None, what ``look()`` returns), or (why it cannot tell, None): a folder of the cache
    this user may not search (said of the cache once, by the command: why alone, of hub repo
    ``repo_id``'s folder; else its blobs/, out of sight) or a damaged file (its message names
    the file and the fix)."""
    from ..errors import CheckpointError
    from .remote import cache_problem

    try:
        return None, look()
    except PathPermissionError as e:
        return (cache_problem(repo_id) if repo_id else None) or str(e), None
    except CheckpointError as e:
        return str(e), None
