"""What ``loftup download NAME...`` fetches into the Hugging Face cache, for a machine without
network: released upsamplers with their backbones, backbones alone, upsamplers of one's own by
hub id, and SAM for training's ``data.masks=sam``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from .escaping import printable, quoted


def download_names(names: list[str], *, backbones: bool = True) -> Iterator[tuple[str, Path]]:
    """Fetch each of ``names`` in turn, yielding ``(name, its local path)`` as each arrives.

    Arguments:
      names: released upsampler names (or their aliases), backbone names, the hub ids of
        either (``facebook/dinov2-small`` is ``dinov2_vits14``), SAM weights (``sam_vit_base``,
        ...), another hub id ``ORG/NAME`` (an upsampler save_pretrained wrote, a backbone's
        weights of the user's own, or SAM's: its config.json says which; an upsampler's as
        ``ORG/NAME@REVISION`` too), or ``["all"]`` for every released upsampler (``"all"``
        goes alone: with other names it is a :class:`~loftup.errors.UsageError`, before any
        fetch).
      backbones: also fetch each upsampler's backbone (yielded after it): a released one's,
        or the one an upsampler of one's own records in its config.json, where that backbone's
        weights are on the hub.

    A backbone that needs no files (seeded, or shipped with the package) is passed over with a
    warning. A local path raises :class:`~loftup.errors.UsageError` and a name that is none of these
    :class:`~loftup.errors.UnknownNameError`, when its turn comes (the names before it are
    fetched).
    """
    from .data.sam import SAM_WEIGHTS, resolve_sam
    from .errors import UnknownNameError, UsageError, did_you_mean
    from .featurizers import FEATURIZERS, hf, resolve
    from .hub import ALIASES, RELEASED, download
    from .hub.registry import revision_refusal
    from .hub.user_repos import hub_id

    if "all" in names and set(names) != {"all"}:
        others = ", ".join(quoted(n) for n in names if n != "all")
        raise UsageError(
            f"'all' goes on its own (it fetches every released upsampler), not with {others}: "
            "run 'loftup download all', then 'loftup download' with the other names"
        )
    by_repo = {s.default_weights: n for n, s in FEATURIZERS.items() if s.default_weights}
    by_repo.update({c.repo_id: c.name for c in RELEASED.values()})
    by_repo.update({repo: n for n, repo in SAM_WEIGHTS.items()})
    for name in list(RELEASED) if "all" in names else names:
        if not name.strip():  # not "unknown name ''", listing every name
            raise UsageError(
                "a name to download is empty or blank (an unset variable, as in loftup download "
                '"$NAME"?): pass a released upsampler\'s name (e.g. loftup_dinov2s), a '
                "backbone's, SAM's or a hub id ORG/NAME"
            )
        repo, at, _ = name.partition("@")
        if at and repo in by_repo:  # loaded from its main branch, by name
            raise UsageError(
                f"{name}: {repo} is the hub repo of {by_repo[repo]}, which is loaded from its main "
                f"branch; download it as `loftup download {by_repo[repo]}` (a revision is for an "
                "upsampler's repo of your own)"
            )
        # a registered name is fetched whatever folder of its name is here (an -o folder named
        # after the model): so is its cache's copy; a released upsampler's name, though, is
        # read from such a folder by a load run there, which is said
        registered = name in by_repo or name in FEATURIZERS or name in SAM_WEIGHTS
        released = ALIASES.get(name, name) in RELEASED
        here = os.path.exists(os.path.expanduser(name))
        if here and released:
            warnings.warn(
                printable(
                    f"a folder named {name} is here: a load of {name} run here reads that folder, "
                    f"not this download (pass {name} from another folder, or rename it)"
                ),
                stacklevel=2,
            )
        here = here and not (registered or released)  # a path: refused below
        name = by_repo.get(name, name)  # a released or backbone hub id: as its name
        repo = hub_id(name) if "/" in name else None  # ORG/NAME, or ORG/NAME@REVISION
        if here or (repo is None and (name.startswith((".", "/", "~")) or name.count("/") > 1)):
            raise UsageError(
                f"{quoted(name)} is a local path: it needs no download (pass it where the weights "
                "are "
                "asked for); download takes released upsamplers, backbones, SAM and hub ids ORG/NAME"
            )
        if repo is None and "/" in name:  # huggingface_hub's HFValidationError, a traceback
            raise _not_a_hub_id(name)
        if name in SAM_WEIGHTS or name in SAM_WEIGHTS.values():  # training's data.masks=sam
            yield name, resolve_sam(name, downloading=True)
            continue
        if repo is not None:  # another hub id: an upsampler or a backbone of one's own, or SAM's
            folder = _hub_repo(*repo)
            yield name, folder
            backbone = _recorded_backbone(folder) if backbones else None
            if backbone is not None:  # an upsampler's, as a released one brings its own
                yield backbone, hf.download(backbone)
            continue
        try:
            resolve(name)
        except UnknownNameError:
            refusal = revision_refusal(name, (*FEATURIZERS, *SAM_WEIGHTS))
            if refusal is not None:
                raise refusal from None
            if ALIASES.get(name, name) not in RELEASED:
                # a backbone that needs no download (scenes_vit_p8) is neither offered here
                fetched = sorted(n for n, s in FEATURIZERS.items() if s.default_weights)
                close = did_you_mean(name, [*RELEASED, *fetched, *SAM_WEIGHTS])
                raise UnknownNameError(
                    f"unknown name {quoted(name)}{close}: neither a released upsampler "
                    f"({', '.join(RELEASED)}), a backbone ({', '.join(fetched)}), "
                    f"SAM ({', '.join(SAM_WEIGHTS)}) nor a hub id ORG/NAME (an upsampler's or a "
                    "backbone's of your own, or SAM's)"
                ) from None
        if ALIASES.get(name, name) in RELEASED:
            ckpt = RELEASED[ALIASES.get(name, name)]
            yield ckpt.name, download(ckpt.name)
            if not backbones:
                continue
            name = ckpt.backbone
        spec = resolve(name)
        if spec.default_weights is None:  # it said "has no hub weights to download", exit 2
            warnings.warn(
                f"backbone {spec.name} needs no download ({spec.description}): it runs offline "
                "as it is",
                stacklevel=2,
            )
            continue
        yield name, hf.download(name)


def _recorded_backbone(folder: Path) -> str | None:
    """The backbone that the upsampler in ``folder`` (a hub repo's snapshot) records, where it
    is one with weights on the hub; None for a repo of another kind, an upsampler that records
    none, or a backbone that needs no files (shipped or seeded) or that loftup does not know."""
    import json

    from .errors import UnknownNameError
    from .featurizers import resolve
    from .hub import CONFIG_NAME, FORMAT_TAG

    try:
        info = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FORMAT_TAG:
        return None
    try:
        spec = resolve(info.get("backbone"))
    except (UnknownNameError, TypeError):
        return None
    return spec.name if spec.default_weights is not None else None


def _not_a_hub_id(name: str):
    """The UsageError for ``name``, written as ``ORG/NAME`` but no hub id: why, in the words
    the command line gives huggingface_hub's own refusal of one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .errors import UsageError, one_line
    from .hub.files import WEIGHT_SUFFIXES

    repo, at, revision = name.partition("@")
    if at and not revision:
        why = "no revision after '@'"
    elif "/" not in repo:
        why = "no ORG/ before the name"
    else:
        try:
            validate_repo_id(repo)
            suffix = Path(repo).suffix in WEIGHT_SUFFIXES
            why = "a weights file's name" if suffix else "not of the form ORG/NAME[@REVISION]"
        except HFValidationError as e:
            why = printable(one_line(e, None).replace(f": '{repo}'", "").rstrip("."))
    return UsageError(
        f"no hub id ORG/NAME: {why}: {quoted(name)} (nor a file or folder here); check the name "
        "or the path"
    )


def _hub_repo(repo: str, revision: str | None = None) -> Path:
    """Fill the Hugging Face cache with hub repo ``repo``, read by its config.json: an
    upsampler's files (save_pretrained's, at ``revision``), SAM's (with its processor's
    settings), or a backbone's (config.json and its weights: one file, or the index of its
    shards and each shard); returns the folder. All or nothing (:func:`all_or_nothing`): a
    newer commit whose config.json came but whose weights did not leaves the cache reading
    the commit it had."""
    from .hub.remote import all_or_nothing

    with all_or_nothing(repo, revision):
        return _fetch_repo(repo, revision)


def _fetch_repo(repo: str, revision: str | None) -> Path:
    """:func:`_hub_repo`'s download, file by file."""
    import json

    from .data.sam import resolve_sam
    from .errors import UsageError
    from .featurizers.hf_weights import CONFIG_FILE, HUB_FILES
    from .hub import FORMAT_TAG, hub_file, hub_folder_beside
    from .hub.commits import full_commit
    from .hub.failures import spelled as spell
    from .hub.user_repos import upsampler_repo

    spelled = spell(repo, revision)
    kw = {
        "what": f"hub repo {spelled}",
        "local_hint": "a folder in the Hugging Face layout (get_featurizer(name, "
        "weights='/path/to/folder'), --backbone-weights /path/to/folder)",
        "download_name": spelled,
        "downloading": True,
    }
    # a hash's start: the cached commit, in full (another machine's cache lacks the start, and
    # the hub looks a commit up by its whole hash: the command to run names it whole)
    commit = full_commit(repo, revision)
    # what the repo holds is not known before its config.json: either kind's folder is said
    either = (
        "the folder save_pretrained wrote, for an upsampler (load_upsampler('/path/to/folder'), "
        f"-m /path/to/folder), or, for a backbone, {kw['local_hint']}"
    )
    # asked of the hub, not read from the cache: the owner may have pushed again; asked once,
    # and what came passed on
    config = hub_file(
        repo,
        CONFIG_FILE,
        revision=commit,
        refresh=True,
        **{**kw, "local_hint": either, "download_name": spell(repo, commit)},
    )
    try:
        info = json.loads(config.read_text())
        kind, loftup = info.get("model_type"), info.get("format") == FORMAT_TAG
    except (ValueError, AttributeError):  # not JSON, or not an object: named by the load
        kind, loftup = None, False
    if loftup:
        return upsampler_repo(repo, revision, downloading=True, config=config)
    if revision is not None:  # a backbone's or SAM's weights are loaded from the main branch
        raise UsageError(
            f"{spelled}: a revision is for an upsampler's hub repo (save_pretrained's files), "
            f"and {repo} holds {f'a {kind!r} model' if kind else 'no upsampler'}; download it "
            f"as `loftup download {repo}`"
        )
    if kind == "sam":
        return resolve_sam(repo, downloading=True)
    return hub_folder_beside(
        repo, config, [g for g in HUB_FILES if CONFIG_FILE not in g], refresh=True, **kw
    )
