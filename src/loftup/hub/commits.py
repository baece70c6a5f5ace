"""A hub repo's files from one commit (:func:`hub_folder`): which commit's folder of its copy
in the Hugging Face cache a set of its files is to come from, where they came from more than
one, and the others fetched again at it."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, WeightsNotFoundError


def full_commit(repo_id: str, revision: str | None) -> str | None:
    """``revision`` of hub repo ``repo_id`` (None: main) as the cache holds it: where it is the
    start of a commit's hash (7 to 39 hex digits, as the hub's web page shows them), the one
    commit of the cache's snapshots that begins with it, so that it is found offline and
    said as that commit (the hub's answer to a download at it was kept as ``refs/<start>``:
    that commit too); a start that several cached commits begin with is a UsageError naming
    them. Anything else as given: a branch or tag (one the cache knows by that name wins, as
    in git), a whole hash (nothing read), or a start that no cached commit has (asked of the
    hub so, which looks commits up by their whole hash: its refusal says to give it)."""
    return pinned(repo_id, revision)[0]


def pinned(repo_id: str, revision: str | None) -> tuple[str | None, str | None]:
    """(:func:`full_commit`'s revision, the commit whose snapshot of the cache the files of
    ``revision`` are looked for in), the cache's ref file (``refs/<revision>``) read once: the
    commit it names now for a branch or tag (None: main), the commit itself for a hash, None
    where the cache knows none. A load passes that commit on (:func:`hub_folder`'s and
    :func:`~.remote.hub_file`'s ``commit``), so that no lookup reads the ref file again."""
    from .failures import hash_start, is_commit
    from .refresh import cached_ref, repo_folder

    if revision is not None and is_commit(revision.lower()):  # copied in capitals: the same
        return revision.lower(), revision.lower()
    known = cached_ref(repo_id, revision)  # a damaged ref file: named, not a UnicodeDecodeError
    if revision is None or not hash_start(revision):
        return revision, known
    start = revision.lower()
    if known is not None:  # a branch or tag named so, or the hub's answer for this start
        return (known, known) if known.startswith(start) else (revision, known)
    try:  # a cache this user may not read: the file's lookup says so
        names = [s.name for s in (repo_folder(repo_id) / "snapshots").iterdir()]
    except OSError:
        return revision, None
    found = sorted(n for n in names if is_commit(n) and n.startswith(start))
    if len(found) > 1:
        raise UsageError(
            f"revision {revision!r} of hub repo {repo_id!r} is ambiguous: the Hugging Face cache "
            f"holds {len(found)} commits that begin with it ({', '.join(found)}); give more of "
            f"the hash ({repo_id}@{found[0]}, say)"
        )
    return (found[0], found[0]) if found else (revision, None)


def newest_folder(repo_id: str, found: list[Path], revision: str | None) -> Path:
    """The snapshot folder of the commit that hub repo ``repo_id``'s ``revision`` (None: main)
    names in the cache now, of those holding ``found`` (its files, as the cache or a download
    gave them): some cached at an older commit, others downloaded at the one the branch has
    moved to (the download moved the cache's ref there). Where the ref names none of them, the
    last file's folder."""
    from .refresh import cached_ref

    folders = {path.parent for path in found}
    if len(folders) == 1:
        return found[0].parent
    now = cached_ref(repo_id, revision)
    return next((f for f in folders if f.name == now), found[-1].parent)


def hub_folder(repo_id: str, groups, **kw) -> Path:
    """The local folder of hub repo ``repo_id`` holding one file of each group of ``groups``
    (alternative names of a file, the first that the repo has; a plain name is a group of one),
    each found as :func:`hub_file` finds it (``kw``: its keywords). When no name of a group can
    be had, the error is the first name's, naming the other groups not cached either.

    A weights file (``.safetensors``, ``.bin``) may be stored in shards, as transformers'
    save_pretrained splits a large model: its index (``model.safetensors.index.json``...) is
    tried right after it, before the group's next name, as transformers prefers them (a repo
    of safetensors shards and a pytorch_model.bin gives the shards, not the pickle), and the
    shards the index names are fetched too."""
    from huggingface_hub import try_to_load_from_cache

    from .remote import hub_file
    from .shards import INDEX_SUFFIX, shard_names

    # a commit's hash given by its start: the cached commit's, in full, everywhere below (its
    # files trust it); a whole hash, as upsampler_repo passes one, is taken as it is. The
    # files are looked for at the commit the cache's ref names (read once, here or by the
    # caller that passes ``commit``), not at the branch: each lookup read the ref file again
    if kw.get("commit") is None:
        revision, commit = pinned(repo_id, kw.get("revision"))
        kw = {**kw, "revision": revision, "commit": commit}
    look_at = kw["commit"] or kw.get("revision")
    groups = [(group,) if isinstance(group, str) else tuple(group) for group in groups]
    # each weights file's name followed by its shard index's
    alternatives = {
        g: tuple(
            m
            for n in g
            for m in ((n, n + INDEX_SUFFIX) if n.endswith((".safetensors", ".bin")) else (n,))
        )
        for g in groups
    }
    # per group, a name the cache holds (None: none): online, each name tried before it is a
    # request to the hub (a 404 for a repo without it), at every load
    cached = {
        g: next(
            (
                n
                for n in alternatives[g]
                if isinstance(try_to_load_from_cache(repo_id, n, revision=look_at), str)
            ),
            None,
        )
        for g in groups
    }
    uncached = [g for g in groups if cached[g] is None]
    found = []
    for group in groups:
        names, here = alternatives[group], cached[group]
        first, *others = names if here is None else (here, *(n for n in names if n != here))
        also = tuple(g for g in uncached if g != group)
        try:
            found.append(hub_file(repo_id, first, also=also, **kw))
        except WeightsNotFoundError as e:  # the repo may hold the file under another name
            for other in others:
                try:
                    found.append(hub_file(repo_id, other, **kw))
                    break
                except WeightsNotFoundError:
                    continue
            else:
                raise e from None
    folder = newest_folder(repo_id, found, kw.get("revision"))  # one commit's: the others'
    for path in found:  # fetched again at its commit (cached at an older one, main moved)
        if path.parent != folder:
            _refetch(repo_id, path.name, folder, kw)
    for path in found:
        if path.name.endswith(INDEX_SUFFIX):
            # the shards the folder's own index names (fetched again there above, where it was
            # cached at an older commit: the owner may have resharded since), at its commit
            # (said of the repo as the user named it, not of repo@<commit>)
            for shard in shard_names(folder / path.name):
                hub_file(repo_id, shard, **_at(folder, kw))
    return folder


def hub_folder_beside(repo_id: str, fetched: Path, groups, **kw) -> Path:
    """:func:`hub_folder` of ``groups`` for hub repo ``repo_id`` whose file ``fetched`` (its
    config.json, read to tell what the repo holds) came already: it is not asked for again.
    The folder holds it beside the others, of one commit: where the owner pushed between the
    requests, the file is fetched again at the commit the others came from."""
    folder = hub_folder(repo_id, groups, **kw)
    if folder != fetched.parent:
        _refetch(repo_id, fetched.name, folder, kw)
    return folder


def cached_elsewhere(repo_id: str, filename: str, commit: str) -> bool:
    """Whether the Hugging Face cache holds ``filename`` of hub repo ``repo_id`` at a commit
    other than ``commit``."""
    from .refresh import repo_folder

    snapshots = repo_folder(repo_id) / "snapshots"
    others = (s for s in snapshots.iterdir() if s.name != commit) if snapshots.is_dir() else ()
    return any((s / filename).is_file() for s in others)


def _refetch(repo_id: str, filename: str, folder: Path, kw: dict) -> Path:
    """``filename`` of hub repo ``repo_id`` fetched again at the commit of snapshot ``folder``,
    which the repo's other files are of (``kw``: :func:`~.remote.hub_file`'s keywords, the
    revision the user gave among them): where it cannot be, said as that, not as a file
    missing at a commit the user never named."""
    from .remote import hub_file

    return hub_file(repo_id, filename, **{**_at(folder, kw), "refresh": False})


def _at(folder: Path, kw: dict) -> dict:
    """:func:`~.remote.hub_file`'s keywords ``kw`` (the revision the user gave among them) for
    a file at the commit of snapshot ``folder``: that commit, and the branch or tag that names
    it (``matching``), where the user named it by branch or tag (None: main). A commit the
    user named is theirs: said as they gave it, not as what it names now."""
    named = kw.get("revision")
    matching = None if named == folder.name else named or "main"
    return {**kw, "revision": folder.name, "commit": folder.name, "matching": matching}
