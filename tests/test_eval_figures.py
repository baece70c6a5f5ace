"""The figures of ``loftup eval``: each written as a PNG, and its pyplot figure closed however
the writing ends (pyplot keeps every figure it made until it is closed: a process that draws
many, a notebook or a sweep, leaked one per failed write)."""

import pytest
import torch

from loftup.eval.figures import davis_figure, depth_figure, normals_figure, seg_figure

S = 8


def _examples(kind: str) -> list[dict]:
    image = torch.rand(3, S, S, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(S, S, dtype=torch.long)
    ids[2:5, 2:5] = 1
    unit = torch.zeros(3, S, S)
    unit[2] = 1.0
    valid = torch.ones(S, S, dtype=torch.bool)
    return {
        "seg": [{"image": image, "label": ids, "pred": ids, "pca": image}],
        "depth": [{"image": image, "depth": torch.full((S, S), 2.0), "pred": torch.ones(S, S)}],
        "normals": [{"image": image, "normals": unit, "pred": unit, "valid": valid}],
        "davis": [{"image": image, "gt": ids, "pred": ids, "name": "bear #1"}],
    }[kind]


DRAW = {
    "seg": lambda examples, path: seg_figure(examples, 3, path, title="t"),
    "depth": lambda examples, path: depth_figure(examples, path, title="t"),
    "normals": lambda examples, path: normals_figure(examples, path, title="t"),
    "davis": lambda examples, path: davis_figure(examples, path, title="t"),
}


@pytest.mark.parametrize("kind", sorted(DRAW))
def test_a_figure_is_closed_whether_it_is_written_or_not(tmp_path, kind):
    import matplotlib.pyplot as plt

    plt.close("all")
    draw, examples = DRAW[kind], _examples(kind)
    out = draw(examples, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plt.get_fignums() == []
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError):  # its folder is a file: the write fails
        draw(examples, blocker / "f.png")
    assert plt.get_fignums() == []
    with pytest.raises(KeyError):  # drawing fails: an example without its image
        draw([{k: v for k, v in examples[0].items() if k != "image"}], tmp_path / "g.png")
    assert plt.get_fignums() == [] and not (tmp_path / "g.png").exists()


def test_a_figure_given_as_a_link_is_written_where_it_points(tmp_path):
    """--figure is a file the user names, as --json is: a link to a figure kept elsewhere
    stays one and the figure is drawn there (the rename replaced the link with a plain file)."""
    kept = tmp_path / "kept" / "fig.png"
    kept.parent.mkdir()
    kept.write_bytes(b"old")
    link = tmp_path / "fig.png"
    link.symlink_to(kept)
    DRAW["seg"](_examples("seg"), link)
    assert link.is_symlink() and kept.read_bytes().startswith(b"\x89PNG")
