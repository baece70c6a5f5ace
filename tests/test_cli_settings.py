"""What a command sets for the whole process (warning filters, Pillow's pixel limit) is put
back when it ends: ``main([...])`` called in Python leaves its caller's as they were."""

from __future__ import annotations

import warnings

from PIL import Image

from loftup.cli import main


def test_a_filter_the_command_adds_before_its_pixel_limit_does_not_outlive_it(
    tmp_path, monkeypatch
):
    """main's own catch_warnings was closed first, then the pixel limit's, which put back the
    filters as the command had them when the limit was set: a filter the command had added
    by then stayed in the caller's process."""
    import loftup.extract.folder as folder

    checked = folder.check_run_options

    def check_and_add_a_filter(*args, **kwargs):  # the command adds one before the limit
        warnings.filterwarnings("ignore", message="added by the command")
        return checked(*args, **kwargs)

    monkeypatch.setattr(folder, "check_run_options", check_and_add_a_filter)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    before, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    argv = ["upsample", str(tmp_path / "a.png"), "-m", "x", "-o", str(tmp_path / "out"),
            "--max-image-pixels", "1000", "--stream-above", "-1"]  # fmt: skip
    assert main(argv) != 0  # refused (--stream-above) after the limit was set
    assert warnings.filters == before and Image.MAX_IMAGE_PIXELS == limit
