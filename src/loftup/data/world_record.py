"""What a world folder records of the world it holds, and whether a new world may be written there.

:func:`~loftup.data.scene_files.write_scenes` writes ``world.json`` last, so a folder with one
holds a complete world; until then ``world.partial.json`` records the options of the run that
began it. Before writing, :func:`check_world` checks the arguments and that the folder holds no
other world, finished or cut short, naming each value that differs: its scenes beyond the new
ones (or of another seed) would be left mixed in with a ``world.json`` that does not describe
them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..words import said
from .scene_codec import JPEG_QUALITY
from .scenes import SceneConfig

FORMAT = "loftup-scenes"
FORMAT_VERSION = 1

#: What :func:`~loftup.data.scene_files.write_scenes` records of a world it has begun and not
#: finished.
PARTIAL = "world.partial.json"


def check_scene_range(
    count: int,
    *,
    seed: int = 0,
    start: int = 0,
    quality: int = JPEG_QUALITY,
    said_as: dict | None = None,
) -> None:
    """A :class:`loftup.errors.UsageError` (a ValueError) naming the first of ``count`` scenes,
    world ``seed``, first index ``start`` and JPEG ``quality`` outside its range (each by its
    name, or as ``said_as`` calls it: a command line's option), so that a caller can check
    them before any work (:func:`~loftup.data.scene_files.write_scenes` checks them first)."""
    from ..errors import UsageError, is_int

    if not is_int(count) or count < 1:
        raise UsageError(
            f"{said('count', said_as)} (number of scenes) must be at least 1, got {count}"
        )
    if not is_int(seed) or seed < 0:
        raise UsageError(
            f"{said('seed', said_as)} must be an integer >= 0 (it seeds NumPy), got {seed}"
        )
    if not is_int(start) or start < 0:
        raise UsageError(
            f"{said('start', said_as)} (index of the first scene) must be >= 0, got {start}"
        )
    if not is_int(quality) or not 1 <= quality <= 100:
        raise UsageError(
            f"{said('quality', said_as)} (JPEG) must be between 1 and 100, got {quality}"
        )


def check_world(
    out,
    config: SceneConfig,
    count: int,
    *,
    seed=0,
    start=0,
    quality=JPEG_QUALITY,
    said_as=None,
    recorded: tuple[dict | None, dict | None] | None = None,
) -> tuple[Path, dict]:
    """What :func:`~loftup.data.scene_files.write_scenes` checks before it writes (its
    arguments, and that ``out`` holds no other world: a :class:`~loftup.errors.UsageError`
    naming each value that differs); returns ``out`` (``~`` expanded) and the world's record.
    A complete world of these very options passes, so a caller may keep it as it is.
    ``recorded``: what :func:`read_record` read of ``out`` already (by default read here)."""
    from ..paths import check_folder_output
    from .paths import home_expanded

    check_scene_range(count, seed=seed, start=start, quality=quality, said_as=said_as)
    out = home_expanded(out, "--out")  # ~nobody: one line, not expanduser's RuntimeError
    check_folder_output(str(out), "--out")  # a file, under one, or in a folder taking no files
    info = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "seed": seed,
        "start": start,
        "count": count,
        "jpeg_quality": quality,
        "classes": list(config.class_names),
        "config": config.to_dict(),
    }
    old, partial = read_record(out) if recorded is None else recorded
    _check_other_world(out, info, old, partial, said_as)
    return out, info


def read_record(out: Path) -> tuple[dict | None, dict | None]:
    """The record of the world in ``out``: ``world.json``'s when it is finished, else
    ``world.partial.json``'s when one was begun (each None where there is no such file); a
    :class:`~loftup.errors.UsageError` naming a record that cannot be read (a
    :class:`~loftup.errors.PathPermissionError` the one of them read, the partial one where
    there is no world.json, that this user may not read: its fix, not a record to delete)."""
    from ..atomic import read_json_object
    from ..errors import UsageError

    try:  # one this user may not read: its fix, or another --out (the folder is the user's)
        old = read_json_object(out / "world.json", "world record", another="--out")
        if old is not None:
            return old, None
        return None, read_json_object(out / PARTIAL, "world record", another="--out")
    except ValueError as e:
        raise UsageError(f"{e}; choose another --out or delete it") from None


def _check_other_world(
    out: Path, info: dict, old: dict | None, partial: dict | None, said_as: dict | None = None
) -> None:
    """A UsageError if ``out`` holds a world of other options, finished (``world.json``) or cut
    short (``world.partial.json``), or scenes of no recorded world: writing over it would leave
    its scenes beyond the new ones (or of another seed) mixed in with a world.json that does not
    describe them; it names each value that differs (as ``said_as`` calls it). The same world
    again is rewritten (the same bytes), and so is a run cut short before its first scene file
    (out of memory at the first scene, say): nothing of it would be mixed in. ``old`` and
    ``partial``: its records, as :func:`read_record` reads them."""
    from ..errors import UsageError

    written = (  # every file of a scene, the first one written (its JPEG) or a later one
        []
        if old is not None  # a finished world: its scenes are its own (not listed: thousands)
        else [p for folder in ("sa1b", "labels") for p in (out / folder).glob("sa_*.*")]
    )
    if old is None and (partial is None or not written):
        if partial is None and written:  # scenes of an unrecorded world
            raise UsageError(
                f"{out} holds scenes but no world.json (a run cut short by an earlier version, "
                "or other files); choose another --out or delete it"
            )
        return  # nothing, or a run cut short before any scene: started afresh
    new = json.loads(json.dumps(info))  # tuples as the file holds them, as lists
    diff = _differences(old or partial, new, said_as)
    if diff:
        fix = "; choose another --out or delete it"
        if old is None:  # the partial record's: going on with it is a way out too
            scenes = len({p.name.split(".")[0] for p in written})
            fix = (
                f", cut short after {scenes} scene(s): run again with its options to finish "
                "it, or choose another --out or delete it"
            )
        raise UsageError(
            f"{out} holds another world ({'; '.join(diff)}){fix}: its scenes would be left "
            "mixed in with the new ones"
        )


def _differences(old: dict, new: dict, said_as: dict | None) -> list[str]:
    """What differs between the world ``old`` (a world.json's) and ``new``, each as "NAME OLD ->
    NEW": the scene config's fields one by one (height and width as one size), the class
    names only where the config does not differ (they follow from it)."""
    names = {"jpeg_quality": "quality"}
    diff = []
    for key in new:
        if old.get(key) == new[key] or key == "config" or key == "classes":
            continue
        diff.append(f"{said(names.get(key, key), said_as)} {old.get(key)!r} -> {new[key]!r}")
    before, after = old.get("config"), new["config"]
    if not isinstance(before, dict):
        return [*diff, f"scene config {before!r} -> {after!r}"]
    if (before.get("height"), before.get("width")) != (after["height"], after["width"]):
        size = f"{before.get('height')}x{before.get('width')} -> {after['height']}x{after['width']}"
        diff.append(f"{said('size', said_as)} {size}")
    for key in sorted((set(before) | set(after)) - {"height", "width"}):
        if before.get(key) != after.get(key):
            diff.append(f"{said(key, said_as)} {before.get(key)!r} -> {after.get(key)!r}")
    if not diff and old.get("classes") != new["classes"]:
        diff.append(f"classes {old.get('classes')!r} -> {new['classes']!r}")
    return diff
