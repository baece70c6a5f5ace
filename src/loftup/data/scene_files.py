"""Synthetic scenes on disk, in the SA-1B layout, plus label maps for evaluation.

A world folder::

    OUT/
      world.json          scene config, seed, first index, count, class names, JPEG settings
      sa1b/sa_1.jpg       the image (JPEG, quality 95, no chroma subsampling)
      sa1b/sa_1.json      SA-1B annotations: {"image": {...}, "annotations": [...]}
      labels/sa_1.png     semantic labels: 8-bit palette PNG whose pixel values are class ids

``sa1b/`` is exactly an extracted SA-1B shard: one ``sa_N.jpg`` + ``sa_N.json`` per image, each
annotation a class-agnostic mask as COCO RLE (``pycocotools.mask.encode``) with ``bbox`` (XYWH),
``area``, ``predicted_iou``, ``stability_score``, ``crop_box`` and ``point_coords``, so a reader of
SA-1B reads it unchanged. Masks are exact (they come from the generator), hence predicted_iou and
stability_score are 1.0.

JPEG because SA-1B is JPEG and training must read what it reads on SA-1B; quality 95 with 4:4:4
chroma (``subsampling=0``) because Pillow's default 4:2:0 halves the colour resolution, which on
these random-colour textures costs a mean absolute error of 16/255 and smears every colour edge,
while 4:4:4 at quality 95 stays near 3/255, below the scenes' own pixel noise (5/255). Labels are
PNG (lossless) and computed by the generator, never read back from the JPEG.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LoftUpError, one_line
from ..escaping import printable
from ..paths import there
from ..read_refusal import read_refused
from .scene_codec import JPEG_QUALITY, decode_jpeg, encode_jpeg, encode_labels  # noqa: F401  (decode_jpeg: importable from here)
from .scenes import Scene, SceneConfig, generate_scene
from .world_record import FORMAT, PARTIAL, check_scene_range, check_world  # noqa: F401  (check_scene_range: importable from here)


def scene_annotations(scene: Scene, image_id: int) -> dict:
    """The SA-1B JSON of ``scene`` as image ``sa_{image_id}.jpg`` (masks in painting order)."""
    from pycocotools import mask as mask_utils

    h, w = scene.labels.shape
    rng = np.random.default_rng(image_id)
    annotations = []
    for n, k in enumerate(scene.masks):
        mask = scene.mask(k)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ys, xs = np.nonzero(mask)
        j = int(rng.integers(ys.size))
        annotations.append(
            {
                "id": image_id * 1000 + n,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "bbox": [int(v) for v in mask_utils.toBbox(rle)],
                "area": int(mask_utils.area(rle)),
                "predicted_iou": 1.0,
                "stability_score": 1.0,
                "crop_box": [0, 0, w, h],
                "point_coords": [[float(xs[j]) + 0.5, float(ys[j]) + 0.5]],
            }
        )
    image = {"image_id": image_id, "width": w, "height": h, "file_name": f"sa_{image_id}.jpg"}
    return {"image": image, "annotations": annotations}


def write_scenes(
    out: str | Path,
    config: SceneConfig,
    count: int,
    *,
    seed: int = 0,
    start: int = 0,
    quality: int = JPEG_QUALITY,
    progress: bool = True,
    said_as: dict | None = None,
    recorded: tuple[dict | None, dict | None] | None = None,
) -> Path:
    """Write scenes ``start .. start + count - 1`` of the world ``(config, seed)`` to ``out``.

    Scene ``i`` becomes ``sa_{i + 1}`` (SA-1B numbers from 1). Every file is written atomically;
    ``world.json`` last, so a folder with a ``world.json`` is complete. Until then
    ``world.partial.json`` records the options, so that a run cut short is gone on with only
    with the same ones. ``said_as``: how errors call the arguments and the config's fields
    (a command line's options, e.g. {"num_classes": "--classes"}), by default by their names.
    ``recorded``: the folder's record, where the caller read it already
    (:func:`~loftup.data.world_record.read_record`).
    """
    from tqdm.auto import tqdm

    from ..atomic import atomic_write_bytes, write_json
    from ..bars import bar_settings

    out, info = check_world(
        out,
        config,
        count,
        seed=seed,
        start=start,
        quality=quality,
        said_as=said_as,
        recorded=recorded,
    )
    (out / "sa1b").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    if not (out / "world.json").exists():
        write_json(out / PARTIAL, info)
    names = []
    for i in tqdm(range(start, start + count), desc="scenes", **bar_settings(shown=progress)):
        scene = generate_scene(config, seed, i)
        name = f"sa_{i + 1}"
        meta = scene_annotations(scene, i + 1)
        atomic_write_bytes(out / "sa1b" / f"{name}.jpg", encode_jpeg(scene.image, quality))
        atomic_write_bytes(out / "sa1b" / f"{name}.json", json.dumps(meta).encode())
        atomic_write_bytes(out / "labels" / f"{name}.png", encode_labels(scene.labels))
        names.append(name)
    write_json(out / "world.json", {**info, "images": names})
    (out / PARTIAL).unlink(missing_ok=True)
    return out


@dataclass
class World:
    """A world folder as read back: its config, seed and image names (``sa_N``); ``another``:
    the option that chose its folder where it is the command's own output (a demo's or an
    experiment's scenes: "--out"), offered beside the chmod of a file this user may not read
    ("" for a world given to read, which only its fix mends)."""

    root: Path
    config: SceneConfig
    seed: int
    names: list[str]
    another: str = ""

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8, labels (H, W) uint8, masks (N, H, W) bool of image ``name``;
        a :class:`LoftUpError` names a scene file that cannot be read (a
        :class:`~loftup.errors.PathPermissionError` one this user may not read, or a folder of
        the world they may not search)."""
        from PIL import Image

        from .images import READ_ERRORS
        from .rle import decode_rle

        path = self.root / "sa1b" / f"{name}.jpg"
        try:
            with Image.open(path) as im:
                image = np.array(im.convert("RGB"))
            path = self.root / "labels" / f"{name}.png"
            with Image.open(path) as im:
                labels = np.array(im)  # palette indices: the class ids
            path = self.root / "sa1b" / f"{name}.json"
            meta = json.loads(path.read_text())
            masks = [decode_rle(a["segmentation"]) for a in meta["annotations"]]
        except READ_ERRORS as e:  # one this user may not read: its fix, not "damaged"
            raise read_refused(path, e, "scene file", another=self.another) or LoftUpError(
                f"{path} cannot be read ({printable(one_line(e))}): the world {self.root} is "
                "damaged; "
                f"{_WRITE_AGAIN}"
            ) from None
        h, w = labels.shape[:2]
        wrong = [m.shape for m in masks if m.shape != (h, w)]
        if image.shape[:2] != (h, w) or labels.ndim != 2 or wrong:  # a file of another scene
            raise LoftUpError(
                f"scene {name} of the world {self.root} is damaged: its image is "
                f"{image.shape[1]}x{image.shape[0]}, its labels {labels.shape[::-1]}"
                f"{f', a mask {wrong[0][::-1]}' if wrong else ''}; {_WRITE_AGAIN}"
            )
        return image, labels, np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)


_WRITE_AGAIN = "delete the folder and write the world again (`loftup world scenes --out DIR`)"


def read_world(root: str | Path, another: str = "") -> World:
    """Open a folder written by :func:`write_scenes` (checks that it is complete); a leading
    ``~`` is the home folder, as :func:`write_scenes` reads its ``out``. ``another``: the
    option that chose the folder where it is the command's own output (:class:`World`)."""
    from ..atomic import read_json_object
    from .paths import home_expanded

    root = home_expanded(root, "world folder")
    path = root / "world.json"
    # pathlib's is_file raises where a folder is not searchable
    if not there(path, "world", test=os.path.isfile):
        raise LoftUpError(
            f"{root} is not a scene folder (no world.json); write one with "
            "`loftup world scenes --out DIR`"
        )
    try:  # one this user may not read: a PathPermissionError with its fix, no ValueError
        info = read_json_object(path, "world record", another=another)
    except ValueError as e:  # BrokenFileError
        raise LoftUpError(f"{printable(str(e))}; {_WRITE_AGAIN}") from None
    if info.get("format") != FORMAT:
        raise LoftUpError(f"{path} is not a {FORMAT} file (format={info.get('format')!r})")
    missing = [k for k in ("config", "seed", "images") if k not in info]
    if missing:
        raise LoftUpError(f"{path} lacks {', '.join(map(repr, missing))}; {_WRITE_AGAIN}")
    names = info["images"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LoftUpError(f"{path}: 'images' is not a list of scene names; {_WRITE_AGAIN}")
    try:
        config = SceneConfig.from_dict(info["config"])
    except (TypeError, ValueError) as e:
        raise LoftUpError(
            f"{path} has no valid scene config ({printable(one_line(e))}); {_WRITE_AGAIN}"
        ) from None
    return World(root, config, info["seed"], names, another)


def check_kept(*kept) -> None:
    """A LoftUpError where a scene folder kept as it is (the demo's and the experiments' on a
    rerun) lacks a file of its scenes, deleted since: training read the others without a
    word, and the held-out set failed with the fix of a world of ``loftup world scenes``,
    which the command refused. ``kept``: ``(root, names)`` pairs (``names``: ``world.json``'s
    images), each folder that lacks a file named in one error (one a rerun, the training and
    held-out scenes took two). One listing of each of a folder's two folders, no file looked
    at."""
    said = []
    for root, names in kept:
        gone = _gone(Path(root), names if isinstance(names, list) else [])
        if gone:
            more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
            said.append((str(root), f"{root} lacks {gone[0]}{more}"))
    if len(said) == 1:
        ((root, lacks),) = said
        raise LoftUpError(f"{lacks} of its scenes; delete {root} and run the same command "
                          "again, which writes its scenes again")  # fmt: skip
    if said:
        raise LoftUpError(f"{', and '.join(s for _, s in said)} of their scenes; delete "
                          f"{' and '.join(r for r, _ in said)} and run the same command again, "
                          "which writes their scenes again")  # fmt: skip


def _gone(root: Path, names: list) -> list[str]:
    """The files of the scenes ``names`` missing in the scene folder ``root``."""
    gone = []
    for folder, suffixes in (("sa1b", (".jpg", ".json")), ("labels", (".png",))):
        try:
            there = set(os.listdir(root / folder))
        except OSError:
            there = set()
        gone += [f"{folder}/{n}{s}" for n in names for s in suffixes if f"{n}{s}" not in there]
    return gone
