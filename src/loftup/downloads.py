"""What ``loftup download NAME...`` fetches into the Hugging Face cache, for a machine without
network: released upsamplers with their backbones, backbones alone, and SAM for training's
``data.masks=sam``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def download_names(names: list[str], *, backbones: bool = True) -> Iterator[tuple[str, Path]]:
    """Fetch each of ``names`` in turn, yielding ``(name, its local path)`` as each arrives.

    Arguments:
      names: released upsampler names (or their aliases), backbone names, the hub ids of
        either (``facebook/dinov2-small`` is ``dinov2_vits14``), SAM weights (``sam_vit_base``,
        ...), another hub id ``ORG/NAME`` (a backbone's weights of the user's own, or SAM's:
        its config.json says which), or ``["all"]`` for every released upsampler.
      backbones: also fetch each released upsampler's backbone (yielded after it).

    A local path raises :class:`~loftup.errors.UsageError` and a name that is none of these
    :class:`~loftup.errors.UnknownNameError`, when its turn comes (the names before it are
    fetched).
    """
    from .data.sam import SAM_WEIGHTS, resolve_sam
    from .errors import UnknownNameError, UsageError
    from .featurizers import FEATURIZERS, hf, resolve
    from .hub import ALIASES, RELEASED, download

    by_repo = {s.default_weights: n for n, s in FEATURIZERS.items() if s.default_weights}
    by_repo.update({c.repo_id: c.name for c in RELEASED.values()})
    for name in list(RELEASED) if names == ["all"] else names:
        name = by_repo.get(name, name)  # a released or backbone hub id: as its name
        if name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub ids are ORG/NAME
            raise UsageError(
                f"{name!r} is a local path: it needs no download (pass it where the weights are "
                "asked for); download takes released upsamplers, backbones, SAM and hub ids ORG/NAME"
            )
        if name in SAM_WEIGHTS or name in SAM_WEIGHTS.values():  # training's data.masks=sam
            yield name, resolve_sam(name, downloading=True)
            continue
        if "/" in name:  # another hub id: a backbone's of the user's own, or SAM's
            yield name, _hub_repo(name)
            continue
        try:
            resolve(name)
        except UnknownNameError:
            if ALIASES.get(name, name) not in RELEASED:
                raise UnknownNameError(
                    f"unknown name {name!r}: neither a released upsampler "
                    f"({', '.join(RELEASED)}), a backbone ({', '.join(sorted(FEATURIZERS))}), "
                    f"SAM ({', '.join(SAM_WEIGHTS)}) nor a hub id ORG/NAME (a backbone's of your "
                    "own or SAM's)"
                ) from None
        if ALIASES.get(name, name) in RELEASED:
            ckpt = RELEASED[ALIASES.get(name, name)]
            yield ckpt.name, download(ckpt.name)
            if not backbones:
                continue
            name = ckpt.backbone
        yield name, hf.download(name)


def _hub_repo(repo: str) -> Path:
    """Fill the Hugging Face cache with hub repo ``repo``, read by its config.json's model_type:
    SAM's files (with its processor's settings), or a backbone's (config.json and its weights:
    one file, or the index of its shards and each shard); returns the folder."""
    import json

    from .data.sam import resolve_sam
    from .featurizers.hf_weights import CONFIG_FILE, HUB_FILES
    from .hub import hub_file, hub_folder

    kw = {
        "what": f"hub repo {repo}",
        "local_hint": "a folder in the Hugging Face layout (get_featurizer(name, "
        "weights='/path/to/folder'), --backbone-weights /path/to/folder)",
        "download_name": repo,
        "downloading": True,
    }
    try:
        kind = json.loads(hub_file(repo, CONFIG_FILE, **kw).read_text()).get("model_type")
    except (ValueError, AttributeError):  # not JSON, or not an object: fetched again below
        kind = None
    if kind == "sam":
        return resolve_sam(repo, downloading=True)
    return hub_folder(repo, HUB_FILES, **kw)
