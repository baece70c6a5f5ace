"""The way out for an upsampler's file of one's own refused for its pickled objects: the line of
Python that keeps its weights alone, for one who trusts the file (:func:`way_out`). What the
file's top-level object is comes from its pickle's opcodes (:mod:`.pickle_walk`), nothing
unpickled, the pickle torch reads, walked once a load (:mod:`.file_pickle`; the old format's fifth pickle too): one not walked
(larger than :data:`~.pickle_walk.PICKLE_CAP`, compressed), past the walk's caps, or anything
the walk cannot follow is told in general words."""

from __future__ import annotations

import keyword
import os
from pathlib import Path

from ..escaping import printable
from ..holders import holds_loftup, label
from ..paths import name_max
from .file_pickle import FilePickle
from .pickle_plain import is_numpy, is_tensor, plain
from .pickle_walk import OTHER, Thing

#: The class of loftup's upsampler, as a pickle names it
_LOFTUP = ("loftup.model", "LoftUp")
#: The class of its config, as a pickle names it
_CONFIG = ("loftup.model_config", "LoftUpConfig")
#: torch's modules that wrap one module (its keys under a prefix loftup strips)
_WRAPPERS = {"DataParallel", "DistributedDataParallel", "OptimizedModule"}
#: What a LoftUp records of the backbone it was trained on, kept beside its weights in the
#: layout loftup's loaders read (a module's attributes; ``loftup train``'s top-level keys):
#: dropped, a reloaded file fed its backbone ImageNet-normalised images, silently
_RECORD = ("backbone", "backbone_norm")


def way_out(pickled: FilePickle, path: Path, resave: bool = False) -> str:
    """The end of the refusal of the file ``path`` (whose pickle is ``pickled``): how to keep its
    weights alone if its user trusts it, written under a new name (``<stem>.weights.pt``) in
    :func:`copy_folder`. A Lightning checkpoint keeps ``{"state_dict": ...}`` (read as a
    training checkpoint, its modules other than the upsampler's are left out), or its state
    dict alone where that is
    of loftup's layout; a LoftUp saved whole (torch.save(model)), alone, in a module or under
    ``{"model": ...}``, its state dict, its config (``{"model": ..., "model_config": ...}``,
    its heads and window kept) and the backbone it records; a DataParallel's or compiled
    module's its ``.state_dict()``; ``{"model": ...}`` (``loftup train``'s) its model and
    record (a LoftUpConfig object as its dict); weights held as numpy arrays are made tensors.
    ``resave``: a file refused for its pickle protocol, of tensors and containers alone, is
    saved again as it is. Any other file, or one whose pickle cannot be followed, is told in
    general words: prose, not a line of Python (its placeholder was a SyntaxError to one who
    ran it)."""
    walked = pickled.walked()
    load, keep = _load(path, True), None
    if walked.error is None:
        top = walked.top if walked.nested else None  # (no folder: torch reads no data.pkl)
        try:
            load = _load(path, walked.torch_file)
            weights = walked.allowed and plain(top, tensors=True)  # nothing else named, called
            keep = _keep(top, load) or (load if resave and weights else None)
        except Exception:  # noqa: BLE001 - an object the opcodes do not say: the general words
            load, keep = _load(path, True), None
    out = new_name(path, copy_folder(path))
    if keep is None:
        return (
            f"; if you trust the file (unpickling it runs its code), load it in Python with "
            f"{load}, take the dict of tensors it holds (or its .state_dict()), torch.save that "
            f"to {str(out)!r}, then load {printable(str(out))}"
        )
    return (
        f"; if you trust the file (unpickling it runs its code), in Python: "
        f"torch.save({keep}, {str(out)!r}), then load {printable(str(out))}"
    )


def pickle_protocol(pickled: FilePickle) -> tuple[int | None, bool]:
    """The pickle protocol of the file whose pickle is ``pickled`` (the highest its pickles that
    torch reads declare or use), and whether its object holds tensors and containers alone and
    its pickles name and call nothing else, an object thrown away too (no object a class or
    function makes: nothing that could run code, :meth:`~.pickle_walk.Walk.only_allowed`);
    (None, False) where the walk cannot read them."""
    walked = pickled.walked()
    if walked.error is not None or not walked.nested:
        return None, False
    top = walked.top
    return walked.protocol, top is not None and walked.allowed and plain(top, tensors=True)


def _load(path: Path, torch_file: bool) -> str:
    """The expression that loads the file ``path``, trusted: torch.load for torch.save's, or
    pickle.load for a pickle of pickle.dump's (torch.load reads its first object as torch's
    magic number, and fails)."""
    if torch_file:
        return f'torch.load({str(path)!r}, map_location="cpu", weights_only=False)'
    return f'__import__("pickle").load(open({str(path)!r}, "rb"))'


def keep_one_line(
    origin: str, key: str | None, prefix: str | None, record=(), under: str | None = None
) -> str:
    """The line of Python that writes the LoftUp under ``prefix`` of the file ``origin``, one of
    several it holds (a model and its EMA copy), alone: the keys of ``c[key]`` (its dict's
    holder; None for the top, ``c``) under ``prefix``, or (``prefix`` None) that holder's dict whole
    under its key, with those of the file's ``record`` (loftup train's model_config and
    backbone beside its "model": dropped, it was read with 4 heads), or (``under``) under that
    key, to be read as the dict under it is (a copy beside the one loaded), to a name no file has
    (:func:`new_name`) in :func:`copy_folder`. A safetensors file is read with safetensors
    (torch 2.4's torch.load cannot read one), its bytes read by open() (safetensors' load_file
    refuses a name that is no UTF-8), a torch file with torch.load's weights alone."""
    from .file_heads import safetensors_head

    path = Path(origin)
    try:
        with open(path, "rb") as f:  # its own kind, whatever its suffix
            safetensors = safetensors_head(f.read(9))
    except OSError:
        safetensors = path.suffix == ".safetensors"
    where = "" if key is None else f"[{key!r}]"  # the holder's dict: c['model'], or c itself
    if prefix is None:  # ema, model...: which of the LoftUps
        name = label(key)
    else:
        name = prefix.rstrip(".").replace(".", "_")
    out = new_name(Path(f"{path.stem}.{name}.pt"), copy_folder(path))  # <stem>.<name>.weights.pt
    load = f'torch.load({origin!r}, map_location="cpu", weights_only=True)'
    if safetensors:  # its bytes through open(): load_file takes UTF-8 names alone
        load = f'__import__("safetensors.torch").torch.load(open({origin!r}, "rb").read())'
    # a key that is no name (a number) among them is left out, as the load leaves it out: its
    # k.startswith was an AttributeError in the line run as told
    kept = f"c{where}.items() if isinstance(k, str) and k.startswith({prefix!r})"
    kept = (
        f"c{where}" if prefix is None else f"{{k.removeprefix({prefix!r}): v for k, v in {kept}}}"
    )
    if record:
        kept = f"{{'model': {kept}, {', '.join(f'{k!r}: c[{k!r}]' for k in record)}}}"
    elif prefix is None:  # under its key, read as it was (a training checkpoint's state_dict)
        kept = f"{{{under or key!r}: {kept}}}"
    return f"c = {load}; torch.save({kept}, {str(out)!r})"


def copy_folder(path: Path) -> Path:
    """Where a refusal's line of Python writes its copy of the weights of the file ``path``:
    beside it, or in the current folder for a file of the Hugging Face cache (no place to
    write in: a file there is a blob the hub's copy names) or of a folder this user cannot
    write in (a read-only mount of shared checkpoints: the line pasted was a PermissionError)."""
    from .damaged import cached_repo

    if cached_repo(path) is not None or not os.access(path.parent, os.W_OK):
        return Path.cwd()
    return path.parent


def new_name(path: Path, folder: Path) -> Path:
    """A path in ``folder`` that names no file: ``<stem>.weights.pt``, else numbered, its stem
    cut to fit the longest name ``folder``'s file system takes (:func:`~loftup.paths.name_max`:
    a file named with 250 bytes: the look for its copy's name raised ENAMETOOLONG, and its
    refusal was that OSError's traceback; 143 on eCryptfs)."""
    stem, longest = path.stem, name_max(folder)
    while len(os.fsencode(f"{stem}.weights-new.pt")) > longest:
        stem = stem[:-1]
    for i in range(1, 1000):
        out = folder / f"{stem}.weights{'' if i == 1 else f'-{i}'}.pt"
        if not out.exists():
            return out
    return folder / f"{stem}.weights-new.pt"


def _keep(top: Thing | None, load: str) -> str | None:
    """The expression that keeps the weights of ``top`` (the pickle's object, loaded by
    ``load``), or None where the opcodes do not say it surely."""
    if top is None:
        return None
    if _is_module(top):
        return _module_keep(top, load)
    if top.kind != "dict":
        return None
    state, model, record = (top.items.get(k) for k in ("state_dict", "model", "model_config"))
    if model is not None and model.kind == "dict" and holds_loftup(model.items):
        state = None  # "model" holds the LoftUp, as the load reads it, not "state_dict" beside
    if state is not None and state.kind == "dict":
        from ..convert import _is_native, strip_wrappers

        keys = strip_wrappers(dict.fromkeys(state.items))
        weights = _tensors(state, 'c["state_dict"]')
        if weights is None:
            return None
        if _is_native(keys):  # loftup's own layout kept alone; any other (the paper's, a
            return weights.replace("c[", f"{load}[", 1)  # LightningModule's model.*) wrapped,
        return _display({"state_dict": weights}, load)  # as to_native reads it there
    if model is not None and _is_module(model):
        return _module_keep(model, f'{load}["model"]')
    if model is not None and model.kind == "dict":
        kept = {"model": _tensors(model, 'c["model"]')}
        if kept["model"] is None:
            return None
        if record is not None and record.kind == "dict" and plain(record):
            kept["model_config"] = 'c["model_config"]'
        elif record is not None and record.kind == "made" and record.value == _CONFIG:
            kept["model_config"] = 'c["model_config"].to_dict()'  # (loftup's, as a module's)
        elif record is not None:
            return None
        kept |= {k: f'c["{k}"]' for k in _RECORD if top.items.get(k, OTHER).kind == "str"}
        return _display(kept, load)
    return None


def _tensors(weights: Thing, expr: str) -> str | None:
    """``expr``, of the dict ``weights``, where its values are all tensors; made tensors, where
    some are numpy arrays (a file of them kept as they are is refused again: a loop); None
    where it holds anything else."""
    values = list(weights.items.values())
    if weights.extra or not all(is_tensor(v) or is_numpy(v) for v in values):
        return None
    if all(map(is_tensor, values)):
        return expr
    return f"{{k: torch.as_tensor(v) for k, v in {expr}.items()}}"


def _display(kept: dict[str, str], load: str) -> str:
    """The dict display of ``kept``'s keys and expressions, each of the checkpoint ``c`` (loaded
    by ``load``): loaded once, in the first of them that reads it plainly (``c[...]``), or in
    place of ``c`` where there is one expression alone."""
    if len(kept) == 1:
        key, expr = next(iter(kept.items()))
        return f'{{"{key}": {expr.replace("c[", f"{load}[", 1)}}}'
    entries = sorted(kept.items(), key=lambda kv: not kv[1].startswith("c["))  # (stable)
    items = [f'"{k}": {e}' for k, e in entries]
    items[0] = items[0].replace("c[", f"(c := {load})[", 1)
    return "{" + ", ".join(items) + "}"


def _module_keep(module: Thing, expr: str) -> str | None:
    """The expression that keeps the weights of ``module`` (a module, loaded by ``expr``): a
    LoftUp's, or the one LoftUp among its own modules', with its config; a torch wrapper's
    ``.state_dict()``; None for another module (its keys are no LoftUp's)."""
    if module.value == _LOFTUP:
        record = ", ".join(f'"{k}": getattr(m, "{k}", None)' for k in _RECORD)
        return (
            f'{{"model": (m := {expr}).state_dict(), "model_config": m.config.to_dict(), {record}}}'
        )
    modules = module.state.items["_modules"]
    found = [k for k, v in modules.items.items() if _is_module(v) and v.value == _LOFTUP]
    if len(found) == 1 and found[0].isidentifier() and not keyword.iskeyword(found[0]):
        return _module_keep(modules.items[found[0]], f"{expr}.{found[0]}")
    if module.value is not None and module.value[0].startswith("torch"):
        if module.value[1] in _WRAPPERS:
            return f"{expr}.state_dict()"
    return None


def _is_module(thing: Thing) -> bool:
    """Whether ``thing`` was pickled as a torch.nn.Module is: an object of a class, its state
    a dict holding ``_parameters`` and a dict ``_modules``."""
    state = thing.state
    return (
        thing.kind == "made"
        and state is not None
        and state.kind == "dict"
        and "_parameters" in state.items
        and state.items.get("_modules", Thing("none")).kind == "dict"
    )
