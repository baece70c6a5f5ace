"""What a search of a folder for images passes over, the same for ``loftup upsample``'s
folders and globs and for training's listings. Imports nothing of loftup."""

from __future__ import annotations

import os


def fsck_folder(parent: str | os.PathLike, name: str) -> bool:
    """Whether ``parent/name`` is the ``lost+found`` folder fsck keeps at the top of a disk:
    no images of anyone's, and readable by root only, so that searching a mounted disk as
    anyone else ended "skipped /mnt/disk/lost+found: a folder that cannot be read", status 1.
    One elsewhere (not directly under a mount point) is searched as any folder."""
    return name == "lost+found" and os.path.ismount(parent)
