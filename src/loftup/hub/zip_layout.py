"""What a zip archive's directory says of it, before any member is read, for
:func:`~.torch_zip.check_zip`: members listed twice or overlapping (:func:`layout_refusal`:
torch.save writes neither, and a check that read each one listed read the same bytes
thousands of times over) or flagged encrypted or as patched data (zipfile's "password
required" and "compressed patched data" came out raw), and a TorchScript archive
(:func:`script_refusal`: torch.jit.save's, whose code loftup does not load)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..escaping import printable
from .file_pickle import folded
from .way_out import copy_folder, new_name

#: The end of every refusal of an archive torch.save did not write (here, in
#: :mod:`.torch_zip` and :mod:`.member_sizes`): said one way, with one fix
NOT_LOADED = (
    "; it was not loaded. Load only the file torch.save wrote, or save its weights again with "
    "torch.save or as safetensors"
)
#: The general purpose flag bits of an encrypted member (zipfile's "password required"; bit 6
#: is strong encryption) and of compressed patched data (bit 5, which zipfile and torch's
#: reader refuse, raw): torch.save sets none, each said as what it is
_FLAGGED = {0x1 | 0x40: ("an encrypted member", "encrypted")}
_FLAGGED |= {0x20: ("a member of patched data", "compressed patched data")}


def layout_refusal(z: zipfile.ZipFile, name: str) -> str | None:
    """The refusal of the archive ``name`` (open as ``z``) whose directory lists a member twice
    (or two whose names are one to torch, :func:`_case_refusal`), or a member flagged
    encrypted or as patched data, or a member whose bytes run past the next one's header (or into the directory):
    each member's local header read for the length of its name and extra field, no member
    read. None where its members lie one after another, as torch.save writes them."""
    infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    seen: dict[bytes, str] = {}  # each name's bytes lower-cased (ASCII) -> the first so
    for info in infos:
        for bits, (kind, flag) in _FLAGGED.items():
            if info.flag_bits & bits:
                return (
                    f"{name} was not written by torch.save ({kind}): its member "
                    f"{info.filename!r} is flagged as {flag}, which torch.save never writes"
                    f"{NOT_LOADED}"
                )
        other = seen.get(name_folded := folded(info))
        if other == info.filename:
            return _refusal(name, f"its member {info.filename!r} is listed twice")
        if other is not None:
            return _case_refusal(name, other, info.filename)
        seen[name_folded] = info.filename
    for info, after in zip(infos, infos[1:] + [None]):
        z.fp.seek(info.header_offset + 26)
        head = z.fp.read(4)
        if len(head) < 4:  # (a local header past the end: cut short, said by torch.load)
            return None
        start = info.header_offset + 30 + int.from_bytes(head[:2], "little")
        end = start + int.from_bytes(head[2:], "little") + info.compress_size
        limit = after.header_offset if after is not None else z.start_dir
        if end > limit:
            into = f"member {after.filename!r}" if after is not None else "the archive's directory"
            return _refusal(name, f"its member {info.filename!r} runs into {into}")
    return None


def _case_refusal(name: str, first: str, second: str) -> str:
    """The refusal of the archive ``name`` whose members ``first`` and ``second`` are one name
    to torch's zip reader (miniz), which finds a member by its name's bytes without regard to
    (ASCII) case: they differ in case alone, or are the same bytes that zipfile read apart (as
    UTF-8 in one, flag bit 11, as cp437 in the other); it could load another member than the
    one loftup checked (its size, its CRC)."""
    how = (
        "differ only in case"
        if folded(first) == folded(second)
        else "are the same bytes, read as UTF-8 in one (its flag bit 11) and cp437 in the other"
    )
    return (
        f"{name} was not written by torch.save: its members {first!r} and {second!r} {how}, "
        "which torch.save never writes (torch's zip reader finds a member by its bytes, "
        f"regardless of case, so it could load another than the one checked){NOT_LOADED}"
    )


def _refusal(name: str, what: str) -> str:
    return (
        f"{name} was not written by torch.save: {what} (members overlapping), which torch.save "
        f"never writes (an archive crafted to be read many times over){NOT_LOADED}"
    )


def script_refusal(z: zipfile.ZipFile, name: str, path: Path | None) -> str | None:
    """The refusal of the archive ``name`` (open as ``z``, at ``path``) that torch.jit.save wrote
    (a ``<folder>/constants.pkl`` or ``<folder>/code/`` in it), with the line that keeps its
    weights for one who trusts it, written in :func:`~.way_out.copy_folder` (as the way out
    for a pickle's objects writes it; a backbone's .bin checked by check_torch_file too); None
    for another archive. The line gives torch.jit.load the file open()ed: it takes a name that
    is UTF-8 alone."""
    inner = {n.partition("/")[2] for n in z.namelist()}
    if "constants.pkl" not in inner and not any(n.startswith("code/") for n in inner):
        return None
    said = (
        f"{printable(name)} is a TorchScript archive (written by torch.jit.save), which loftup "
        "does not load: it holds code, not a checkpoint; it was not loaded. Its state dict loads "
        "where it holds a LoftUp's weights (of loftup's or the paper's layout)"
    )
    if path is None:
        return f"{said}: save it with torch.save(module.state_dict(), ...) and load that"
    out = new_name(path, copy_folder(path))
    return (
        f"{said} (its encoders' frequencies, which TorchScript keeps and loftup computes, left "
        "out); if you trust the file, in Python: torch.save({k: v for k, v in torch.jit.load("
        f'open({str(path)!r}, "rb"), map_location="cpu").state_dict().items() if not k.endswith('
        f'"encoder.freqs")}}, {str(out)!r}), then load {printable(str(out))}'
    )
