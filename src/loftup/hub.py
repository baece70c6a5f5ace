"""Released checkpoints, safe loading, layout conversion and ``save_pretrained``.

One registry (:data:`RELEASED`) drives :func:`load_upsampler`, ``loftup info``, ``loftup download``
and the pairing of each upsampler with its backbone. Weights are found in this order: a local
path, the Hugging Face cache, a download (``HF_HUB_OFFLINE=1`` is honoured). Nothing is ever
unpickled beyond plain tensors and containers (``torch.load(..., weights_only=True)`` or
safetensors).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .atomic import atomic_write, write_json
from .convert import (  # noqa: F401  (re-exported: the layout functions are part of hub's API)
    build_from_state,
    infer_config,
    native_to_reference,
    reference_to_native,
    to_native,
    training_to_reference,
)
from .errors import CheckpointError, UnknownNameError, UsageError, WeightsNotFoundError
from .model import LoftUp, LoftUpConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "loftup"


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A checkpoint published with the paper."""

    name: str
    backbone: str
    dim: int
    grid: int
    repo_id: str
    filename: str = "pytorch_model.bin"
    description: str = ""


RELEASED: dict[str, ReleasedCheckpoint] = {
    c.name: c
    for c in [
        ReleasedCheckpoint(
            "loftup_dinov2s",
            "dinov2_vits14",
            384,
            16,
            "haiwen/loftup-dinov2s",
            description="DINOv2 ViT-S/14",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2s_reg",
            "dinov2_vits14_reg",
            384,
            16,
            "haiwen/loftup-dinov2s_reg",
            description="DINOv2 ViT-S/14 + registers",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2b",
            "dinov2_vitb14",
            768,
            16,
            "haiwen/loftup-dinov2b",
            description="DINOv2 ViT-B/14",
        ),
        ReleasedCheckpoint(
            "loftup_dinov2b_reg",
            "dinov2_vitb14_reg",
            768,
            16,
            "haiwen/loftup-dinov2b_reg",
            description="DINOv2 ViT-B/14 + registers",
        ),
        ReleasedCheckpoint(
            "loftup_clip",
            "clip_vitb16",
            512,
            14,
            "haiwen/loftup-clip",
            description="CLIP ViT-B/16 (OpenAI), MaskCLIP-style tokens",
        ),
        ReleasedCheckpoint(
            "loftup_siglip",
            "siglip_vitb16",
            768,
            14,
            "haiwen/loftup-siglip",
            description="SigLIP ViT-B/16",
        ),
        ReleasedCheckpoint(
            "loftup_siglip2",
            "siglip2_vitb16",
            768,
            14,
            "haiwen/loftup-siglip2",
            description="SigLIP2 ViT-B/16",
        ),
    ]
}

#: Other spellings users type, mapped to the registry's names (kept forever).
ALIASES = {name.replace("_", "-"): name for name in RELEASED}


def resolve_name(name: str) -> ReleasedCheckpoint:
    """The registry entry for ``name`` (or an alias); UnknownNameError lists the known ones."""
    key = ALIASES.get(name, name)
    if key not in RELEASED:
        raise UnknownNameError(
            f"unknown upsampler {name!r}; released names are: {', '.join(RELEASED)} "
            "(or pass a path to a weights file or a save_pretrained folder)"
        )
    return RELEASED[key]


# -- reading files safely ---------------------------------------------------------------------


def read_weights(path: str | os.PathLike) -> dict:
    """Read a .safetensors file or a torch pickle of plain tensors, never running code."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"no such file: {path}")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return read_safetensors(path, "re-download it or pass the file save_pretrained wrote")
    return torch_load(path, fix="re-download it or pass the file save_pretrained wrote")


def read_safetensors(path: str | os.PathLike, fix: str) -> dict:
    """A safetensors file's tensors; a truncated or corrupt file is a CheckpointError naming it
    and ``fix`` (how to get it again)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e}); {fix}") from None


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file under another suffix: an 8-byte little-endian header length, then the
    JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


#: What torch's safe unpickler says when a pickle names something other than tensors and
#: containers (a class, a function such as os.system): code that would run on loading.
_UNSAFE_MARKS = ("GLOBAL", "Unsupported global", "is blocked", "Unsupported class")


def torch_load(path: str | os.PathLike, *, fix: str, what: str = "") -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors (CheckpointError) in place of
    torch's own text, which suggests ``weights_only=False`` (running the file's code):

    - a file that is neither a zip archive (torch.save) nor a pickle: corrupt or not a PyTorch
      file at all;
    - a pickle that names objects other than tensors and containers: refused, not loaded, as it
      could run code;
    - a zip archive whose stored checksums do not match its bytes (torch.load does not check
      them, and would return the damaged tensors as weights): corrupt;
    - anything else: corrupt or truncated.

    ``what``: the kind of file, for the message (``"training checkpoint "``); ``fix``: what to do.
    """
    import pickle
    import warnings

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{what}{path} is empty (0 bytes): an interrupted copy; {fix}")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{what}{path} is corrupt or not a PyTorch or safetensors file (it is neither a "
            f"zip archive nor a pickle); {fix}"
        )
    if head == b"PK\x03\x04":
        _check_zip(path, f"{what}{path}", fix)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for bad files
        text = str(e)
        if any(mark in text for mark in _UNSAFE_MARKS):
            raise CheckpointError(
                f"refusing to load {what}{path}: it holds pickled objects that are not plain "
                "tensors or weights, which could run code when loaded; it was not loaded. "
                "Use weights saved as a plain state dict or as safetensors"
            ) from None
        if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in text:
            raise CheckpointError(
                f"refusing to load {what}{path}: its pickle holds instructions beyond plain "
                "tensors and containers (objects that could run code, or a corrupt file); it "
                f"was not loaded; {fix}"
            ) from None
        raise CheckpointError(
            f"{what}{path} is corrupt or truncated and cannot be read ({type(e).__name__}); {fix}"
        ) from None


def _check_zip(path: Path, name: str, fix: str) -> None:
    """A CheckpointError when a member of the zip archive ``path`` fails its CRC-32 (bytes
    changed after torch.save wrote it); a truncated archive is left to torch.load's error.
    Members stored with a CRC of 0 are not checked: ``torch.save`` writes 0 when told not to
    compute them (``torch.utils.serialization.config.save.compute_crc32 = False``)."""
    import zipfile

    bad = None
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with z.open(info) as f:
                        while f.read(1 << 24):
                            pass
                except zipfile.BadZipFile:  # "Bad CRC-32 for file ..."
                    bad = info.filename
                    break
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return
    if bad is not None:
        raise CheckpointError(
            f"{name} is corrupt: its member {bad!r} does not match the checksum written with it "
            f"(damaged bytes); {fix}"
        )


def save_pretrained(
    model: LoftUp,
    directory: str | os.PathLike,
    *,
    backbone: str | None = None,
    backbone_norm: str | None = None,
    metadata: dict | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (hyper-parameters, backbone and what it
    is given, its ``input_norm``) to a folder."""
    from safetensors.torch import save_file

    from . import __version__

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(
        directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"})
    )
    info = {
        "format": FORMAT_TAG,
        "loftup_version": __version__,
        "config": model.config.to_dict(),
        "backbone": backbone if backbone is not None else getattr(model, "backbone", None),
        "backbone_norm": backbone_norm or getattr(model, "backbone_norm", None),
    }
    if metadata:
        info["metadata"] = metadata
    write_json(directory / CONFIG_NAME, info)
    return directory


# -- the hub ----------------------------------------------------------------------------------


def _offline() -> str | None:
    """Why the hub may not be contacted (offline mode is on), or None.

    Read from the environment now and from what huggingface_hub read when it was imported
    (``constants.HF_HUB_OFFLINE``: in every release since 0.24, unlike ``is_offline_mode``)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "0").upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}=1 is set"
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE=1 was set when huggingface_hub was imported"
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick check that the hub endpoint answers at all (avoids minutes of retries)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_file(
    repo_id: str,
    filename: str,
    *,
    what: str,
    local_hint: str,
    download_name: str | None = None,
    downloading: bool = False,
) -> Path:
    """Path of ``filename`` from ``repo_id``: the cache first, then a download.

    Offline (``HF_HUB_OFFLINE=1`` or no network) with nothing cached raises WeightsNotFoundError
    naming the repo, the file and how to pass a local path instead; a gated repo (DINOv3) that
    this login may not read names where to accept its terms and how to log in. ``downloading``:
    called by ``loftup download``, whose fix for an offline switch is to unset it, not to run
    itself.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return Path(cached)
    reason = _offline()
    if reason is None and not _hub_reachable():
        reason = "the Hugging Face hub cannot be reached"
    if reason is None:
        from huggingface_hub.utils import GatedRepoError

        try:
            return Path(hf_hub_download(repo_id, filename))
        except GatedRepoError:  # its own text is only "401 Client Error."
            from huggingface_hub import constants

            raise WeightsNotFoundError(
                f"{what}: hub repo {repo_id!r} is gated: accept its terms at "
                f"{constants.ENDPOINT}/{repo_id} with your Hugging Face account, log in here "
                f"(set HF_TOKEN to an access token, or `hf auth login`) and run again; or pass "
                f"a local path instead: {local_hint}"
            ) from None
        except Exception as e:  # noqa: BLE001 - network, missing repo
            reason = f"the download failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    name = download_name or what
    offline_switch = reason.startswith(("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"))
    if downloading and offline_switch:  # the download was never tried
        var = reason.split("=")[0]
        raise WeightsNotFoundError(
            f"{what}: cannot download file {filename!r} of hub repo {repo_id!r}: {reason}, "
            f"which forbids downloads. Unset it to download (`env -u {var} loftup download "
            f"{name}`), or copy in a ~/.cache/huggingface that holds it from a machine with "
            f"network, or pass a local path instead: {local_hint}"
        )
    if downloading:
        raise WeightsNotFoundError(
            f"{what}: file {filename!r} of hub repo {repo_id!r} could not be downloaded: "
            f"{reason}. Run `loftup download {name}` on a machine with network and copy its "
            f"~/.cache/huggingface, or pass a local path instead: {local_hint}"
        )
    raise WeightsNotFoundError(
        f"{what}: file {filename!r} of hub repo {repo_id!r} is not in the Hugging Face cache and "
        f"{reason}. Run `loftup download {name}` on a machine with network and copy its "
        f"~/.cache/huggingface, or pass a local path instead: {local_hint}"
    )


def looks_like_path(text: str) -> bool:
    """Whether ``text`` names a local path rather than a hub repo: hub ids are ``name`` or
    ``org/name``; anything else is meant as a local path."""
    return (
        text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text
    )


def hub_folder(repo_id: str, groups, **kw) -> Path:
    """The local folder of hub repo ``repo_id`` holding one file of each group of ``groups``
    (alternative names of a file, the first that the repo has; a plain name is a group of one),
    each found as :func:`hub_file` finds it (``kw``: its keywords). When no name of a group can
    be had, the error is the first name's."""
    found = []
    for group in groups:
        first, *others = (group,) if isinstance(group, str) else group
        try:
            found.append(hub_file(repo_id, first, **kw))
        except WeightsNotFoundError as e:  # the repo may hold the file under another name
            for other in others:
                try:
                    found.append(hub_file(repo_id, other, **kw))
                    break
                except WeightsNotFoundError:
                    continue
            else:
                raise e from None
    return found[0].parent


def download(name: str) -> Path:
    """Fill the Hugging Face cache with a released checkpoint; returns its local path."""
    return released_file(name, downloading=True)


def released_file(name: str, *, downloading: bool = False) -> Path:
    """Local path of a released checkpoint: the cache first, then a download; offline with
    nothing cached, a WeightsNotFoundError naming the file and how to provide it
    (``downloading``: for ``loftup download``, see :func:`hub_file`)."""
    ckpt = resolve_name(name)
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
    """Local path of a released checkpoint if it is already cached, else None."""
    from huggingface_hub import try_to_load_from_cache

    ckpt = resolve_name(name)
    found = try_to_load_from_cache(ckpt.repo_id, ckpt.filename)
    return Path(found) if isinstance(found, str) else None


# -- the one loader ---------------------------------------------------------------------------


def check_source(source, name: str = "source", also: tuple[str, ...] = ()) -> None:
    """A :class:`UsageError` unless ``source`` is a name or a path (``str`` or ``os.PathLike``):
    os.fspath's TypeError said nothing of what may be given. ``name``: the argument's name;
    ``also``: what else the caller takes ("a LoftUp", say)."""
    if not isinstance(source, (str, os.PathLike)):
        kinds = ["a released upsampler's name (e.g. loftup_dinov2s)", "a weights file or folder"]
        kinds += also
        raise UsageError(
            f"{name} is {', '.join(kinds[:-1])} or {kinds[-1]}, got {source!r} "
            f"({type(source).__name__})"
        )


def load_upsampler(source: str | os.PathLike, device=None, dtype=None) -> LoftUp:
    """A ready LoftUp (channel norm included, eval mode) from any known source.

    Arguments:
      source: one of
        - a released name (``loftup_dinov2s``, ... see :data:`RELEASED`), from the cache or hub;
        - a folder written by :func:`save_pretrained` (or a hub snapshot with pytorch_model.bin);
        - a ``.safetensors`` file;
        - a ``.bin/.pt/.pth`` state dict in the hub layout, a reference training checkpoint
          (``{"state_dict": ...}``) or a checkpoint written by ``loftup train``.
      device, dtype: where and in which floating dtype to put the parameters (``dtype``: a
        torch dtype or a name, as :func:`loftup.api.as_dtype` reads it: "bfloat16", "fp16"...).

    Returns the module; ``model.backbone`` names the backbone it expects when known, and
    ``model.backbone_norm`` what that backbone is given (``input_norm``): "imagenet" for the
    released checkpoints, what the run used for ``loftup train``'s.
    """
    from .api import as_dtype, resolve_device

    check_source(source)
    if dtype is not None:
        dtype = as_dtype(dtype)  # a name, or a dtype loftup runs in: a UsageError otherwise
    if device is not None:  # before loading: "cuda" on a machine without one, in a line
        device = resolve_device(device)
    path = Path(os.fspath(source)).expanduser()
    backbone = backbone_norm = None
    config = None
    if path.is_dir():
        state, config, backbone, backbone_norm = _read_folder(path)
        origin = str(path)
    elif path.is_file():
        origin = str(path)
        obj = read_weights(path)
        state, config = to_native(obj, origin)
        config = _config_from(config, f"{origin}'s model_config") if config else None
        if isinstance(obj.get("backbone"), str):  # training checkpoints record their backbone
            backbone = obj["backbone"]
            backbone_norm = _backbone_norm(obj, origin)
    else:
        text = os.fspath(source)
        path_like = os.sep in text or Path(text).suffix in {
            ".bin",
            ".pt",
            ".pth",
            ".safetensors",
        }
        if path_like and ALIASES.get(text, text) not in RELEASED:
            raise WeightsNotFoundError(f"no such file or folder: {text}")
        ckpt = resolve_name(text)
        origin = ckpt.name
        state, config = to_native(read_weights(released_file(ckpt.name)), origin)
        backbone, backbone_norm = ckpt.backbone, "imagenet"  # the paper's code: the image as is
    _check_finite(state, origin)
    model = build_from_state(state, config, origin)
    model.backbone = backbone
    model.backbone_norm = backbone_norm
    model.source = origin
    return model.to(device=device, dtype=dtype).eval()


def _check_finite(state: dict, origin: str) -> None:
    """Refuse weights that hold NaN or infinities (a training run that diverged): every output
    would be NaN, written without a word."""
    bad = [
        k
        for k, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        raise CheckpointError(
            f"{origin}: {len(bad)} of its {len(state)} weight tensors hold NaN or infinite values "
            f"(first: {bad[0]}), so every feature would be NaN: a training run that diverged? "
            "Use an earlier checkpoint"
        )


def _config_from(d, where: str, fix: str = "") -> LoftUpConfig:
    """``LoftUpConfig.from_dict(d)``, with a bad key or value a CheckpointError naming ``where``."""
    try:
        return LoftUpConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}{fix}") from None


def _backbone_norm(info: dict, where: str, fix: str = "") -> str | None:
    """A record's "backbone_norm" (None where it has none), or a CheckpointError."""
    from .featurizers import INPUT_NORMS

    value = info.get("backbone_norm")
    if value is not None and value not in INPUT_NORMS:
        raise CheckpointError(
            f'{where}: "backbone_norm" must be one of {", ".join(INPUT_NORMS)} or null, got '
            f"{value!r}{fix}"
        )
    return value


def _read_folder(path: Path) -> tuple[dict, LoftUpConfig | None, str | None, str | None]:
    cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if weights.exists():
        if not cfg_file.exists():
            raise WeightsNotFoundError(f"{path} has {WEIGHTS_NAME} but no {CONFIG_NAME}")
        try:
            info = json.loads(cfg_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cfg_file} is corrupt ({e})") from None
        fix = "; write the folder again with save_pretrained (or loftup train)"
        if not isinstance(info, dict):
            raise CheckpointError(
                f"{cfg_file} holds a JSON {type(info).__name__}, but a loftup config is an "
                f'object {{"format": "loftup", "config": {{...}}, "backbone": ...}}{fix}'
            )
        if info.get("format") != FORMAT_TAG:
            raise CheckpointError(f'{cfg_file} is not a loftup config (no "format": "loftup")')
        if not isinstance(info.get("config"), dict):
            raise CheckpointError(
                f'{cfg_file}: "config" must be an object of the upsampler\'s hyper-parameters '
                f'({{"dim": 384, "num_heads": 4, ...}}), got {info.get("config")!r}{fix}'
            )
        backbone = info.get("backbone")
        if backbone is not None and not isinstance(backbone, str):
            raise CheckpointError(
                f'{cfg_file}: "backbone" must be a backbone name or null, got {backbone!r}{fix}'
            )
        norm = _backbone_norm(info, str(cfg_file), fix)
        config = _config_from(info["config"], str(cfg_file), fix)
        state, _ = to_native(read_weights(weights), str(weights))
        return state, config, backbone, norm
    for name in ("pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).exists():
            state, cfg = to_native(read_weights(path / name), str(path / name))
            return state, (_config_from(cfg, str(path / name)) if cfg else None), None, None
    run = [
        p
        for p in (path / "final", path / "checkpoint.pt")
        if (p / WEIGHTS_NAME).exists() or p.is_file()
    ]
    hint = f"; it is a training run's folder: give {run[0]}" if run else ""
    raise WeightsNotFoundError(
        f"{path} holds no weights: expected {WEIGHTS_NAME} + {CONFIG_NAME} (save_pretrained) "
        f"or pytorch_model.bin{hint}"
    )
