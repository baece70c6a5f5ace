"""`loftup experiment grid`: its cells, and the held-out views rendered for them."""

from __future__ import annotations

import pytest
import torch

from loftup.experiments import ExperimentSettings
from loftup.experiments.grid_views import (
    cell_views,
    grid_cells,
    render_scenes,
    render_side,
)


def test_grid_cells_and_views_are_the_sizes_they_claim():
    cells = grid_cells((4, 8, 16, 32), (2, 4, 8, 16, 32), 256)
    assert len(cells) == 17 and (8, 32) in cells and (16, 32) not in cells
    assert render_side(4, 2, 8) == 32 and render_side(4, 32, 8) == 128
    images, labels = render_scenes(_scene_config(), 1, 2, 128, 4.0)
    v = cell_views(images, labels, 4, 32, 8)
    assert v["backbone"].shape == (2, 3, 32, 32) and v["guidance"].shape == (2, 3, 128, 128)
    assert torch.equal(v["labels"], labels)  # O = R: the render's own labels
    small = cell_views(images[:, :, :32, :32].contiguous(), labels[:, :32, :32], 4, 2, 8)
    assert small["labels"].shape == (2, 8, 8) and small["guidance"].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="needs renders of 128 px"):
        cell_views(images[:, :, :64, :64], labels[:, :64, :64], 4, 32, 8)


def test_a_scene_rendered_larger_at_a_larger_texture_scale_is_the_same_scene():
    small_img, small_lab = render_scenes(_scene_config(), 1, 4, 32, 1.0)
    big_img, big_lab = render_scenes(_scene_config(), 1, 4, 128, 4.0)
    down = torch.nn.functional.interpolate(big_lab[:, None].float(), size=(32, 32),
                                           mode="nearest-exact")[:, 0].long()  # fmt: skip
    assert (down == small_lab).float().mean() > 0.9  # same layout, 4x the pixels
    other = render_scenes(_scene_config(), 2, 4, 32, 1.0)[1]
    assert (other == small_lab).float().mean() < 0.6


def test_grid_held_out_views_name_the_dataset_they_come_from(tmp_path):
    """With --eval-dataset the grid's held-out images are the dataset's, and the report's
    held-out line (taken from the views) says so, not "rendered held-out scenes"."""
    from eval_data import write_voc
    from loftup.experiments.data import load_backbone
    from loftup.experiments.grid import held_out_views

    root = write_voc(tmp_path)
    s = ExperimentSettings("grid", eval_root=str(root), eval_dataset="voc", eval_count=4)
    s = s.resolved()
    featurizer = load_backbone(s)
    views = held_out_views(s, [(4, 2)], featurizer.patch_size, featurizer)
    evalset = views[(4, 2)]["evalset"]
    assert evalset.source == f"voc at {root}" and evalset.images.shape[-1] == 8
    rendered = held_out_views(ExperimentSettings("grid", eval_count=2).resolved(), [(4, 2)], 8,
                              featurizer)  # fmt: skip
    assert rendered[(4, 2)]["evalset"].source == "rendered held-out scenes"


def _scene_config():
    from loftup.data.scenes import SceneConfig

    return SceneConfig()
