"""The Python API's other inputs that may lie in a folder this user may not search (another
user's, of mode 700; one of their own of mode 644): SAM's weights, the files of a dataset
root, a scene folder, an experiment's training data. Each raised pathlib's bare
PermissionError (Python 3.11's exists, is_file and is_dir), a traceback naming neither the
folder nor the fix; now a PathPermissionError (a PermissionError too) names both. The
``unsearchable`` fixture (conftest) refuses such a folder's contents as root too."""

from __future__ import annotations

import pytest

from loftup.errors import PathPermissionError, WeightsNotFoundError
from test_unsearchable_paths import _says_why


def _refused(call, secret) -> None:
    """``call()`` raises a PathPermissionError naming ``secret`` and the fix."""
    with pytest.raises(PathPermissionError) as caught:
        call()
    _says_why(str(caught.value), secret)


def test_sam_weights_in_a_folder_this_user_may_not_search(tmp_path, unsearchable, monkeypatch):
    """data.sam_weights behind such a folder, or a SAM folder that may be listed and not
    searched (its files unseen), raised a bare PermissionError naming the folder or its
    config.json; a short name or hub id, in a current folder of that kind, is still no path."""
    from hub_helpers import _offline_cache
    from loftup.data.sam import SAM_FILES, SamMaskGenerator, resolve_sam

    secret, own = tmp_path / "secret", tmp_path / "own"
    for folder in (secret / "sam", own):
        folder.mkdir(parents=True)
        for group in SAM_FILES:
            (folder / group[0]).write_text("{}")
    unsearchable(secret)
    unsearchable(own)
    _refused(lambda: resolve_sam(str(secret / "sam")), secret)
    _refused(lambda: SamMaskGenerator(str(secret / "sam")), secret)
    _refused(lambda: resolve_sam(str(own)), own)
    _offline_cache(monkeypatch, tmp_path / "hub")  # an empty cache: nothing downloaded
    monkeypatch.chdir(secret)
    for name in ("sam_vit_base", "facebook/sam-vit-base"):
        with pytest.raises(WeightsNotFoundError, match="'config.json' of hub repo"):
            resolve_sam(name)
