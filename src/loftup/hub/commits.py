"""Which commit's folder of a hub repo's copy in the Hugging Face cache a set of its files is
to come from, where they came from more than one."""

from __future__ import annotations

from pathlib import Path


def newest_folder(repo_id: str, found: list[Path], revision: str | None) -> Path:
    """The snapshot folder of the commit that hub repo ``repo_id``'s ``revision`` (None: main)
    names in the cache now, of those holding ``found`` (its files, as the cache or a download
    gave them): some cached at an older commit, others downloaded at the one the branch has
    moved to (the download moved the cache's ref there). Where the ref names none of them, the
    last file's folder."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folders = {path.parent for path in found}
    if len(folders) == 1:
        return found[0].parent
    repo = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    ref = repo / "refs" / (revision or "main")
    now = ref.read_text().strip() if ref.is_file() else None
    return next((f for f in folders if f.name == now), found[-1].parent)
