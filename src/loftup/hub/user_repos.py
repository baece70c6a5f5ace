"""Upsamplers of one's own on the Hugging Face hub, by id: ``load_upsampler("ORG/NAME")`` reads
what :func:`~loftup.hub.save_pretrained` wrote and the user pushed, from the cache or a
download, as the released checkpoints are read (:mod:`.remote`). Which text is a hub id
(:func:`hub_id`) is decided after a local path and a registered name."""

from __future__ import annotations

import os
from pathlib import Path

from ..listing import unsearchable
from .commits import hub_folder, hub_folder_beside, pinned
from .remote import all_or_nothing, looks_like_path


def hub_id(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` where ``text`` reads as a hub repo, ``ORG/NAME`` or
    ``ORG/NAME@REVISION`` (a branch, tag or commit; None: the main branch); None where it reads
    as a local path (:func:`looks_like_path`, a weights file's suffix, or characters no repo id
    holds). A bare ``NAME`` is no hub id here: names are the registry's."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .files import WEIGHT_SUFFIXES

    repo, at, revision = text.partition("@")
    if looks_like_path(repo) or repo.count("/") != 1 or Path(repo).suffix in WEIGHT_SUFFIXES:
        return None
    if at and not revision:
        return None
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    return repo, revision or None


def upsampler_repo(
    repo_id: str, revision: str | None = None, *, downloading=False, config: Path | None = None
) -> Path:
    """The folder (a snapshot in the Hugging Face cache) of an upsampler of one's own pushed to
    the hub as :func:`~loftup.hub.save_pretrained` wrote it: ``model.safetensors`` (or a
    ``pytorch_model.bin``) and ``config.json``, found as :func:`hub_folder` finds files; offline
    without them, a WeightsNotFoundError naming both and how to provide them
    (``downloading``: for ``loftup download``). Its config.json is fetched and read first: a
    repo of another kind (a backbone's, whose weights may be gigabytes) is refused before its
    weights are downloaded. ``config``: its config.json where the caller fetched it already
    and read it as a loftup record (``loftup download``, to tell the repo's kind): neither
    asked for nor read again."""
    from contextlib import nullcontext

    from ..errors import LoftUpError
    from .failures import is_commit
    from .failures import spelled as as_spelled
    from .record import CONFIG_NAME, WEIGHTS_NAME

    spelled = as_spelled(repo_id, revision)  # as the user gave it
    # a hash's start: the cached commit, in full; and the commit the cache's ref names, read
    # once a load: the files are looked for there (a refresh asks the hub, then reads it again)
    revision, commit = pinned(repo_id, revision)
    weights = (WEIGHTS_NAME, "pytorch_model.bin")
    # both readings said: `init=runs/s1`, a run folder not made yet, reads as a hub id too
    blocked = unsearchable(repo_id)  # where it cannot be seen: it may be there, unread
    unseen = f" that this user may look at ({blocked} cannot be searched)" if blocked else ""
    where = (
        f" (no file or folder {spelled} in the current folder {os.getcwd()}{unseen}, so taken "
        "for a hub repo id)"
    )
    kw = dict(
        what=f"upsampler {spelled}{'' if downloading else where}",
        local_hint=(
            f"the folder save_pretrained wrote ({WEIGHTS_NAME} + {CONFIG_NAME}), "
            "load_upsampler('/path/to/folder') or `loftup upsample -m /path/to/folder`"
        ),
        # a hash's start whole: another machine's cache lacks the commit, and the hub looks a
        # commit up by its whole hash
        download_name=as_spelled(repo_id, revision),
        downloading=downloading,
        revision=revision,
        refresh=downloading and not is_commit(revision),  # the owner may have pushed again
    )
    kw["commit"] = None if kw["refresh"] else commit
    # a refresh whose weights do not come leaves the cache reading the commit it had
    with all_or_nothing(repo_id, revision) if kw["refresh"] else nullcontext():
        if config is None:
            try:
                config = hub_folder(repo_id, [CONFIG_NAME], **kw) / CONFIG_NAME
            except LoftUpError:  # not to be had: the error below names both files
                return hub_folder(repo_id, [weights, CONFIG_NAME], **kw)
            _check_upsampler_config(config, spelled)
            if not kw["refresh"]:  # the commit it came from (downloaded: what the ref names now)
                kw["commit"] = config.parent.name
        return hub_folder_beside(repo_id, config, [weights], **kw)


def _check_upsampler_config(config: Path, spelled: str) -> None:
    """A CheckpointError where hub repo ``spelled``'s ``config`` (its config.json) is readable
    JSON but no save_pretrained record (a backbone's, say); an unreadable one is left to the
    load, which names the damaged file and its fix."""
    import json

    from ..errors import CheckpointError
    from .record import FORMAT_TAG

    try:
        info = json.loads(config.read_text())
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("format") == FORMAT_TAG:
        return
    kind = info.get("model_type") if isinstance(info, dict) else None
    repo = spelled.partition("@")[0]  # a backbone's weights are read from the main branch
    hint = (
        f"it holds a transformers {kind!r} model, a backbone's weights: pass it as the "
        f"backbone's (backbone_weights={repo!r}, CLI --backbone-weights {repo}), and an "
        "upsampler's repo, as save_pretrained writes it, as the upsampler"
        if isinstance(kind, str)
        else "pass an upsampler's repo, as save_pretrained writes it"
    )
    raise CheckpointError(
        f"hub repo {spelled} holds no upsampler: its config.json is not a loftup config (no "
        f'"format": "loftup"), so its weights were not downloaded; {hint}'
    )


def load_repo(text: str, repo_id: str, revision: str | None, num_heads: int | None):
    """``(model, record)`` as :func:`~loftup.hub.load_with_record` gives them, of the upsampler
    at hub id ``text`` (``repo_id`` at ``revision``); a file of it damaged in the cache (cut
    short, a Git LFS pointer) is named with the blob to delete and the download that fetches
    it again, not with advice for a local file. ``model.source_commit``: the commit whose
    snapshot it was read from (a branch names another once it moves: stage 2 records it)."""
    from ..errors import CheckpointError
    from .damaged import blob_as_fetched, damage, damaged_in_cache
    from .loading import load_with_record

    folder = upsampler_repo(repo_id, revision)
    try:
        model, record = load_with_record(folder, num_heads=num_heads)
    except CheckpointError as e:
        damaged = [f for f in sorted(folder.iterdir()) if damage(f) is not None]
        fix = damaged_in_cache(damaged[0], text) if damaged else None
        if damaged and blob_as_fetched(damaged[0]):  # the repo's own bytes: fetched, the same
            fix = (
                f"hub repo {repo_id} holds {damaged[0].name} as it is here (a download fetches the same "
                "bytes): its owner is to write the upsampler again with save_pretrained and "
                "push that folder"
            )
        if fix is None:
            raise
        raise CheckpointError(f"{str(e).split('; ')[0]}; {fix}") from None
    model.source, model.source_commit = text, folder.name
    return model, record
