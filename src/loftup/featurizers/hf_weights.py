"""Where a transformers backbone's weights are, and what its folder holds.

Weights are found in this order: a local folder in the Hugging Face layout (``config.json`` +
``model.safetensors``, as ``save_pretrained`` writes it), the Hugging Face cache, a download.
``HF_HUB_OFFLINE=1`` is honoured; without the weights the error names the hub repo and how to
pass a local folder instead (:func:`loftup.hub.hub_folder` does the cache/download part).
:func:`check_model_type` says which model a folder holds where it is not the backbone asked for.

Loading the weights is :mod:`loftup.featurizers.hf_loading`'s, and the featurizer built on them
:mod:`loftup.featurizers.hf`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError, UsageError, WeightsNotFoundError, one_line
from ..escaping import printable, quoted
from ..paths import check_visible
from ..read_refusal import read_refused
from . import FEATURIZERS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: What a backbone's hub repo holds, one file of each group (the first name the repo has): some
#: repos uploaded before safetensors keep only a .bin, which transformers reads without
#: unpickling code.
HUB_FILES = ((CONFIG_FILE,), (WEIGHTS_FILE, "pytorch_model.bin"))


def _a_hub_id(weights) -> bool:
    """Whether ``weights`` (a str; a Path is a local path) reads as a hub id ``ORG/NAME``."""
    from ..hub import hub_id

    return not isinstance(weights, os.PathLike) and hub_id(os.fspath(weights)) is not None


def resolve_weights(
    weights: str | os.PathLike | None, default: str, name: str, *, downloading: bool = False
) -> Path:
    """Folder holding ``config.json`` and the weights of backbone ``name``.

    Arguments:
      weights: a local folder in the Hugging Face layout (always, given as a Path), or a hub
        id; None: ``default``.
      default: the official hub id of the backbone.
      name: the registry name, used in error messages.
      downloading: for ``loftup download`` (its message when offline says how to go online).
    """
    source = os.fspath(weights) if weights is not None else default
    layout = f"a folder in the Hugging Face layout ({CONFIG_FILE} + {WEIGHTS_FILE})"
    if not source.strip():  # Path("") is the current folder: whatever it holds was loaded
        raise UsageError(
            f"backbone weights for {name} are empty or blank; pass {layout} or a hub id, or "
            "leave them out (no --backbone-weights) for the official weights"
        )
    path = Path(source).expanduser()
    if weights is not None and not _a_hub_id(weights):  # a hub id is looked for here first,
        check_visible(path, f"backbone weights for {name}:")  # but is no path to check
    if os.path.isdir(path):  # os.path: pathlib's raises where the folder is not searchable
        from ..hub.damaged import check_links

        check_links(path, (CONFIG_FILE, WEIGHTS_FILE, "pytorch_model.bin"))
        if not (path / CONFIG_FILE).exists():
            raise WeightsNotFoundError(
                f"{path} has no {CONFIG_FILE}: backbone weights must be {layout}, e.g. written "
                f"by save_pretrained{_cache_folder_hint(path)}"
            )
        return path
    if os.path.exists(path):
        raise WeightsNotFoundError(
            f"backbone weights for {name}: {source} is a file, but they must be {layout} or a "
            f"hub id (if it is one of those two files, pass its folder, {path.parent})"
        )
    from ..hub import hub_folder, looks_like_path

    _refuse_upsampler(source, name)
    _refuse_backbone_name(source, name)
    if not isinstance(weights, os.PathLike):  # ORG/NAME@refs/pr/1 would read as a path
        refuse_revision(source, name, layout)
    # a Path object is a local path, whatever its text: Path("models/dinov2") is no hub repo
    if looks_like_path(source) or isinstance(weights, os.PathLike):
        raise WeightsNotFoundError(
            f"backbone weights for {name}: {source} does not exist; pass {layout} or a hub id"
        )
    _check_hub_id(source, name, layout)
    hint = (
        f"get_featurizer({name!r}, weights='/path/to/folder'), `--backbone-weights "
        "/path/to/folder` (loftup upsample, eval, experiment) or `loftup train "
        "backbone_weights=/path/to/folder`, "
        f"a folder with {CONFIG_FILE} and {WEIGHTS_FILE} (or pytorch_model.bin)"
    )
    what = f"backbone {name}"
    kw = {"what": what, "local_hint": hint, "download_name": name, "downloading": downloading}
    spec = FEATURIZERS.get(name)
    kw["gated"] = source == default and spec is not None and spec.gated
    if source != default:  # `loftup download NAME` fetches the default repo, not this one;
        # the repo's own id fetches its config and weights (a snapshot_download, the whole repo:
        # its weights in every format it holds)
        kw["fetch"] = f"loftup download {source}"
    return hub_folder(source, HUB_FILES, **kw)


def _cache_folder_hint(path: Path) -> str:
    """Where ``path`` is the Hugging Face cache's folder of a hub repo (``models--ORG--NAME``,
    or its ``snapshots``) rather than one of its snapshots, which hold the files: the two ways
    to pass it; else ""."""
    from ..hub.damaged import cached_repo

    repo = cached_repo(path)
    if repo is None or path.name not in ("snapshots", f"models--{repo.replace('/', '--')}"):
        return ""
    return (
        f"; it is the Hugging Face cache's folder of hub repo {repo}, whose files are in its "
        f"snapshots/COMMIT folders: pass the hub id {repo} (read from the cache), or one of them"
    )


def refuse_revision(source: str, name: str, layout: str) -> None:
    """A UsageError where ``source`` is a hub id with a revision, ``ORG/NAME@REVISION``."""
    repo, at, _ = source.partition("@")
    if at and repo.count("/") == 1:
        raise UsageError(
            f"backbone weights for {name}: {source} names a revision, but a backbone's weights "
            f"are read from its hub repo's main branch; pass {repo}, or {layout} of that "
            "revision"
        )


def _check_hub_id(source: str, name: str, layout: str) -> None:
    """A one-line error where ``source``, no path here, is no hub id either: huggingface_hub's
    HFValidationError (a ValueError naming neither the backbone nor a fix) came out of
    get_featurizer. (``ORG/NAME@REVISION`` is refused before, by :func:`refuse_revision`.)"""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if "/" not in source:  # a mistyped folder or name: no hub id (its advice could not work)
        raise WeightsNotFoundError(
            f"backbone weights for {name}: {quoted(source)} is neither a folder here nor a hub id "
            f"ORG/NAME; pass {layout} or a hub id ORG/NAME"
        )
    try:
        validate_repo_id(source)
    except HFValidationError as e:
        raise WeightsNotFoundError(
            f"backbone weights for {name}: {quoted(source)} is neither a folder here nor a hub id "
            f"({printable(one_line(e).rstrip('.'))}); pass {layout} or a hub id ORG/NAME"
        ) from None


def _refuse_backbone_name(source: str, name: str) -> None:
    """A UsageError where the backbone's weights ``source`` are a registered backbone's name:
    looked up as hub repo ``dinov2_vitb14``, it was "not in the Hugging Face cache, run `loftup
    download dinov2_vitb14`", which fetches that backbone's official repo, not such a one."""
    from . import ALIASES

    other = ALIASES.get(source, source)
    if other not in FEATURIZERS:
        return
    repo = FEATURIZERS[other].default_weights
    official = f" for the official ones ({repo})" if repo else ""
    fix = (
        f"leave them out{official}"
        if other == name
        else f"pass it as the backbone (backbone=, CLI --backbone), without weights{official}"
    )
    raise UsageError(
        f"backbone weights for {name}: {source} is a backbone's name, not its weights; {fix}, "
        "or pass a folder in the Hugging Face layout or a hub id"
    )


def _refuse_upsampler(source: str, name: str) -> None:
    """A UsageError where the backbone's weights ``source`` name a released upsampler or its hub
    repo (looked up as a backbone's repo, it was "not in the cache" or "could not be
    downloaded", which said nothing of the mix-up)."""
    from ..errors import UsageError
    from ..hub import ALIASES, RELEASED

    by_repo = {c.repo_id: c.name for c in RELEASED.values()}
    upsampler = by_repo.get(source) or ALIASES.get(source, source)
    if upsampler not in RELEASED:
        return
    what = f"upsampler {upsampler}'s hub repo" if source in by_repo else "an upsampler"
    spec = FEATURIZERS.get(name)
    official = f" ({spec.default_weights})" if spec is not None and spec.default_weights else ""
    raise UsageError(
        f"backbone weights for {name}: {source} is {what}, not a backbone's weights: pass it "
        f"as the upsampler (model=, CLI -m) and leave out the backbone weights for the "
        f"official ones{official}, or pass a backbone folder in the Hugging Face layout"
    )


def find_weights(name: str, weights: str | os.PathLike | None = None) -> None:
    """The error :func:`loftup.get_featurizer` would raise for backbone ``name``'s weights
    (``weights``: a folder or hub id; None: the official ones) that cannot be found, raised
    without loading them; nothing for a backbone that needs no files (seeded or shipped)."""
    from . import resolve

    spec = resolve(name)
    if spec.default_weights is not None:
        resolve_weights(weights, spec.default_weights, spec.name)


def download(name: str) -> Path:
    """Fill the Hugging Face cache with backbone ``name``'s official weights; returns the folder.

    (For ``loftup download`` on a machine with network, so that another without it can run.)
    """
    from . import resolve

    spec = resolve(name)
    if spec.default_weights is None:
        raise WeightsNotFoundError(f"backbone {name} has no hub weights to download")
    return resolve_weights(None, spec.default_weights, spec.name, downloading=True)


def where_from(name: str | None, damaged: Path | None = None) -> str:
    """Where backbone ``name``'s weights come from, for a message on a broken copy (``damaged``:
    the broken file, whose removal the fix starts with where it is in the Hugging Face cache)."""
    cached = backbone_fix(damaged, name) if damaged is not None and name else None
    if cached:
        return cached
    repo = getattr(FEATURIZERS.get(name), "default_weights", None) if name else None
    if repo:
        return (
            f"copy it again from hub repo {repo} (`loftup download {name}` fills the cache), or "
            "write the folder again with save_pretrained"
        )
    return "write the folder again with save_pretrained"


def backbone_fix(damaged: Path, name: str) -> str | None:
    """:func:`~loftup.hub.damaged_in_cache`'s fix for backbone ``name``'s damaged file
    ``damaged``: where it is the cache's copy of another hub repo than the backbone's official
    one (``weights="ORG/NAME"``), ``loftup download ORG/NAME`` fetches it again; ``loftup
    download NAME`` would fetch the official repo and leave the damaged file as it is."""
    from ..hub import damaged_in_cache
    from ..hub.damaged import cached_repo

    repo = cached_repo(damaged)
    official = getattr(FEATURIZERS.get(name), "default_weights", None)
    return damaged_in_cache(damaged, name if repo in (None, official) else repo)


def read_config(folder: Path, name: str | None = None) -> dict:
    """A Hugging Face folder's config.json as a dict (``name``: the backbone it is read for,
    whose fix a damaged file's message gives)."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is corrupt ({printable(str(e))}); {where_from(name, path)}"
        ) from None
    except PermissionError as e:  # another user's, of mode 600: said with its chmod
        raise read_refused(path, e, "backbone config") or e from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(config).__name__}, not the object save_pretrained "
            f"writes; {where_from(name, path)}"
        )
    return config


def check_model_type(
    folder: Path, name: str, allowed: tuple[str, ...], fits: dict[str, str] | None = None
) -> str:
    """The folder's model_type, or a CheckpointError saying which backbone it holds instead
    (``fits``: model_type -> the backbone name that reads such a folder, named as the fix)."""
    from ..hub import FORMAT_TAG

    config = read_config(folder, name)
    kind = config.get("model_type", "")
    if config.get("format") == FORMAT_TAG:  # save_pretrained's upsampler
        raise CheckpointError(
            f"{folder} holds a LoftUp upsampler (written by save_pretrained), not the weights of "
            f"backbone {name}: pass it as the upsampler (the model, CLI -m) and {name}'s folder "
            "in the Hugging Face layout (or nothing, for the official weights) as the backbone's"
        )
    if kind not in allowed:
        from huggingface_hub.file_download import repo_folder_name

        from ..hub import damaged_in_cache

        spec = FEATURIZERS.get(name)
        repo = getattr(spec, "default_weights", None)
        # the cache's copy of the official repo (nobody passed it): damaged, to fetch again
        official = (
            repo is not None and repo_folder_name(repo_id=repo, repo_type="model") in folder.parts
        )
        fix = damaged_in_cache(folder / CONFIG_FILE, name) if official else None
        if fix is None and fits and kind in fits:
            fix = f"pass it as backbone {fits[kind]}, or the folder of {name}"
        raise CheckpointError(
            f"{folder} holds a {kind or 'unknown'!r} model, but backbone {name} needs one of "
            f"{', '.join(repr(a) for a in allowed)}; "
            f"{fix or 'pass the matching folder or backbone name'}"
        )
    return kind
