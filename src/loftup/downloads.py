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
        ... or a hub id ``ORG/NAME``), or ``["all"]`` for every released upsampler.
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
                "asked for); download takes released upsamplers, backbones and SAM hub ids ORG/NAME"
            )
        if name in SAM_WEIGHTS or "/" in name:  # SAM, for training's data.masks=sam
            yield name, resolve_sam(name, downloading=True)
            continue
        try:
            resolve(name)
        except UnknownNameError:
            if ALIASES.get(name, name) not in RELEASED:
                raise UnknownNameError(
                    f"unknown name {name!r}: neither a released upsampler "
                    f"({', '.join(RELEASED)}), a backbone ({', '.join(sorted(FEATURIZERS))}) nor "
                    f"SAM ({', '.join(SAM_WEIGHTS)} or a hub id ORG/NAME)"
                ) from None
        if ALIASES.get(name, name) in RELEASED:
            ckpt = RELEASED[ALIASES.get(name, name)]
            yield ckpt.name, download(ckpt.name)
            if not backbones:
                continue
            name = ckpt.backbone
        yield name, hf.download(name)
