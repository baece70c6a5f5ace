"""The mark of loftup's figures (loftup.figure_mark): set by its writer, read back; a PNG
without it, or whose Software is another program, and anything not a PNG, are not loftup's."""

from __future__ import annotations

import os

from loftup.figure_mark import is_loftup_png, save_figure


def test_a_figure_loftup_saves_bears_its_mark_and_others_do_not(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    save_figure(fig, tmp_path / "ours.png", 20)
    assert is_loftup_png(tmp_path / "ours.png")
    fig.savefig(tmp_path / "plain.png", format="png")  # matplotlib's own Software entry
    assert not is_loftup_png(tmp_path / "plain.png")
    fig.savefig(tmp_path / "other.png", format="png", metadata={"Software": "loftupish 1"})
    assert not is_loftup_png(tmp_path / "other.png")
    data = (tmp_path / "ours.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:20])  # cut short before its text chunk
    assert not is_loftup_png(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("Software\0loftup")
    assert not is_loftup_png(tmp_path / "text.png")
    assert not is_loftup_png(tmp_path)  # a folder
    os.mkfifo(tmp_path / "pipe.png")  # never opened: its read would wait for a writer
    assert not is_loftup_png(tmp_path / "pipe.png")
    assert not is_loftup_png(tmp_path / "missing.png")
