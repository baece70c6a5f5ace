"""DAVIS 2017 (semi-supervised video object segmentation), the 480p release.

Layout (as unpacked from DAVIS-2017-trainval-480p.zip)::

    ROOT/JPEGImages/480p/SEQ/00000.jpg ...
    ROOT/Annotations/480p/SEQ/00000.png ...   palette PNGs: 0 background, k = object k
    ROOT/ImageSets/2017/val.txt               sequence names, one a line

As in the DAVIS benchmark code (davis2017-evaluation, semi-supervised), 255 in an annotation
(void) is read as background, and the prediction is scored there as anywhere else: the
scorer's void mask is computed from the masks after they were made boolean, so it is always
empty. The objects of a sequence are 1..max id of its first frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...paths import there
from .common import (
    FIX,
    DatasetError,
    check_label_mode,
    check_same_size,
    home_expanded,
    limited,
    listed,
    open_image,
    open_label,
    read_lines,
    require,
)

#: Fewest frames a sequence needs to be scored: the benchmark leaves out the first and the last.
MIN_FRAMES = 3

DAVIS_HINT = (
    "Expected ROOT/JPEGImages/480p/<seq>/*.jpg, ROOT/Annotations/480p/<seq>/*.png and "
    "ROOT/ImageSets/2017/<split>.txt (DAVIS-2017-trainval-480p.zip)."
)


@dataclass(frozen=True)
class DavisSequence:
    """One video: its frames and their annotations, in frame order."""

    name: str
    frames: tuple[Path, ...]
    annotations: tuple[Path, ...]

    def annotation(self, t: int) -> torch.Tensor:
        """Object ids (H, W) long of frame ``t`` (255 read as background)."""
        raw = open_label(self.annotations[t]).astype(np.int64)
        raw[raw == 255] = 0
        return torch.from_numpy(raw)

    def palette(self) -> list[int] | None:
        """The first annotation's palette (to write predictions in the DAVIS format)."""
        with open_image(self.annotations[0]) as img:
            return img.getpalette()

    def check(self) -> None:
        """DatasetError, naming the sequence and the file, unless it can be scored: at least
        :data:`MIN_FRAMES` frames, every frame and annotation readable (headers), annotations
        single-channel and of their frame's size, and objects in the first frame's annotation."""
        if len(self.frames) < MIN_FRAMES:
            raise DatasetError(
                f"DAVIS sequence {self.name} has {len(self.frames)} frame(s); it needs at least "
                f"{MIN_FRAMES} to be scored (the benchmark scores neither the first nor the last)"
            )
        for frame, anno in zip(self.frames, self.annotations):
            with open_image(frame) as image, open_image(anno) as label:
                check_label_mode(anno, label)
                check_same_size(frame, image.size, anno, label.size)  # else scored, then failed
        if int(self.annotation(0).max()) < 1:
            raise DatasetError(
                f"DAVIS sequence {self.name}: its first-frame annotation {self.annotations[0]} "
                f"has no objects (all background), so there is nothing to propagate; objects "
                f"are the ids 1..K of that frame. Take the sequence out of the split list or {FIX}"
            )


def davis_sequences(
    root: str | Path,
    split: str = "val",
    limit: int | None = None,
    max_frames: int | None = None,
    *,
    check: bool = False,
) -> list[DavisSequence]:
    """The sequences of ``split`` (ImageSets/2017/<split>.txt), each with all its frames.

    Arguments:
      limit: only the first ``limit`` sequences.
      max_frames: only the first ``max_frames`` frames of each (quick runs).
      check: :meth:`DavisSequence.check` each one (what a scored run needs), before any work.
    """
    root = home_expanded(root, "dataset root")
    # os.path: pathlib's raises where a folder is not searchable (the split list names it);
    # the folder above, its DAVIS/ not searchable, was told its split list "does not exist"
    if not os.path.isdir(root / "JPEGImages"):
        if there(root / "DAVIS" / "JPEGImages", "dataset root", test=os.path.isdir):
            root = root / "DAVIS"
    listing = root / "ImageSets" / "2017" / f"{split}.txt"
    names = limited(read_lines(listing, "DAVIS split", DAVIS_HINT), limit)
    if not names:  # else a run ends with J&F null
        raise DatasetError(f"{listing} lists no sequence; {FIX}")
    out = []
    for name in names:
        frames = listed(
            require(root / "JPEGImages" / "480p" / name, "DAVIS frames", DAVIS_HINT), "*.jpg"
        )
        annos = [root / "Annotations" / "480p" / name / f"{f.stem}.png" for f in frames]
        frames, annos = limited(frames, max_frames), limited(annos, max_frames)
        missing = [a for a in annos if not there(a, "DAVIS annotation")]
        if not frames or missing:
            what = "no frames" if not frames else f"missing annotation {missing[0]}"
            raise DatasetError(f"DAVIS sequence {name}: {what}. {DAVIS_HINT}")
        seq = DavisSequence(name, tuple(frames), tuple(annos))
        if check:
            seq.check()
        out.append(seq)
    return out
