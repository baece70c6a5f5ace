"""A zip archive with a compressed member is refused before torch.load: torch.save stores every
member as it is, and torch.load inflated a crafted data.pkl whole (1 MB on disk, gigabytes in
memory) before its pickle was refused."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from loftup import CheckpointError, LoftUp, load_upsampler
from loftup.hub.files import check_torch_file, torch_load

#: A pickle calling os.system: refused by torch's weights-only loader were it read
_RUNS_CODE = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


def _repacked(obj, path, pkl: bytes | None = None) -> None:
    """torch.save's archive of ``obj`` written again at ``path`` with its members deflated,
    its data.pkl replaced by ``pkl`` where given."""
    saved = io.BytesIO()
    torch.save(obj, saved)
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            z.writestr(info.filename, pkl if pkl and info.filename.endswith("/data.pkl") else data)


@pytest.mark.parametrize(
    "pkl", [_RUNS_CODE + b"\0" * (4 << 20), None], ids=["inflating-pickle", "repacked-weights"]
)
@pytest.mark.parametrize(
    "load",
    [
        load_upsampler,
        lambda p: torch_load(p, fix="get it again"),
        lambda p: check_torch_file(p, fix="x"),
    ],
    ids=["load_upsampler", "torch_load", "check_torch_file"],
)
def test_a_compressed_member_is_refused_before_it_is_inflated(tmp_path, pkl, load):
    """The refusal is the archive's, not the pickle's (whose "pickled objects" said torch.load
    had inflated it): it names the file, the member and its compression, and what to do."""
    path = tmp_path / "w.pth"
    _repacked(LoftUp(dim=8, n_freqs=2).state_dict(), path, pkl)
    assert path.stat().st_size < 1 << 20  # 4 MB of pickle deflated
    with pytest.raises(CheckpointError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} was not written by torch.save: its member ")
    assert "/data.pkl' is compressed (deflate)" in msg
    assert "save its weights again with torch.save or as safetensors" in msg
    assert "pickled objects" not in msg and "\n" not in msg
