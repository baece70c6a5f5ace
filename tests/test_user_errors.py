"""Bad arguments and broken files raise a LoftUpError (one line, exit 2 from the command line)
that is still the ValueError or TypeError they raised before: one case per module that names
such a mistake (see loftup.errors for what stays a plain ValueError)."""

from __future__ import annotations

import pytest
import torch

from loftup.errors import BrokenFileError, LoftUpError, UsageError, UsageTypeError
from loftup.input_checks import ForwardInputError
from loftup.model import LoftUp


def _feature_file(tmp_path):
    from loftup.outputs import FeatureFile

    FeatureFile(tmp_path / "a.pt", "pt", torch.float64, (2, 3, 4))


def _save_features(tmp_path):
    from loftup.outputs import save_features

    save_features(tmp_path / "a.h5", torch.zeros(2, 3, 4), "h5")


def _npy_layout(tmp_path):
    from loftup.npy_stream import upsample_to_npy

    upsample_to_npy(None, torch.zeros(1, 8, 2, 2), torch.zeros(1, 3, 8, 8), tmp_path / "a.npy",
                    layout="hwc")  # fmt: skip


def _npy_dtype(tmp_path):
    from loftup.npy_stream import upsample_to_npy

    # not a NumPy dtype at all: NumPy's own TypeError said "data type 'half precision' ..."
    upsample_to_npy(None, torch.zeros(1, 8, 2, 2), torch.zeros(1, 3, 8, 8), tmp_path / "a.npy",
                    dtype="half precision")  # fmt: skip


def _start_upsample_image(tmp_path):
    from loftup.tiling import start_upsample

    start_upsample(None, torch.zeros(3, 8, 8))  # no batch axis


def _start_upsample_stream(tmp_path):
    from loftup.tiling import start_upsample

    start_upsample(None, torch.zeros(1, 3, 8, 8), stream=object())


def _graph_upsampler(tmp_path):
    from loftup.compiled import graph_upsampler

    graph_upsampler(LoftUp(8).eval(), torch.zeros(1, 8, 2, 2), torch.zeros(1, 3, 8, 8))


def _graph_upsampler_inputs(tmp_path):
    from loftup.compiled import graph_upsampler

    graph_upsampler(LoftUp(8).eval(), torch.zeros(1, 8, 2, 2).numpy(), torch.zeros(1, 3, 8, 8))


def _record(tmp_path):
    from loftup.atomic import read_json_object

    (tmp_path / "record.json").write_text("[1, 2]")
    read_json_object(tmp_path / "record.json")


def _image_limit(tmp_path):
    from loftup.io import set_max_image_pixels

    set_max_image_pixels(0)  # refused before Pillow's limit is touched


def _config_and_keywords(tmp_path):
    from loftup import LoftUp
    from loftup.model_config import LoftUpConfig

    LoftUp(config=LoftUpConfig(dim=8), depth=1)


def _config_and_dim(tmp_path):
    from loftup import LoftUp
    from loftup.model_config import LoftUpConfig

    LoftUp(16, config=LoftUpConfig(dim=8))  # the 16 was ignored without a word


def _probe_shapes(tmp_path):
    from loftup.eval.probe import fit_linear_probe

    fit_linear_probe(torch.zeros(2, 4, 3, 3), torch.zeros(2, 1, 3, 3), 3)  # labels (N, 1, H, W)


def _probe_optimizer(tmp_path):
    from loftup.eval.probe_training import ProbeConfig

    ProbeConfig(optimizer="sgd").check()


def _probe_schedule(tmp_path):
    from loftup.eval.probe_training import lr_factor

    lr_factor(0, 10, 0, "linear")


def _backbone_recipe(tmp_path):
    from loftup.world.backbone import BackboneRecipe, train_backbone

    recipe = BackboneRecipe(size=64)
    recipe.size = 60  # changed after it was checked
    train_backbone(recipe, tmp_path / "backbone", progress=False)


def _mask_noise(tmp_path):
    from loftup.train.noise import MaskNoise

    MaskNoise(erode=2.0)


def _window_stride(tmp_path):
    from loftup.train.downsampler import window_stride

    window_stride(209, 15, 14)  # stage1.image_size=209: dinov2's patch-14 grid of 15


def _image_size_windows(tmp_path):
    from loftup.train import load_config
    from loftup.train.config import check_backbone_fit

    # checked before any weights (it was the step's ValueError above, after the backbone loaded)
    check_backbone_fit(load_config(None, ["stage1.image_size=209"]))


def _texture_family(tmp_path):
    import numpy as np

    from loftup.data.textures import render_texture

    y = x = np.zeros(2)
    render_texture("plaid", y, x, 4.0, np.zeros((2, 3)), np.random.default_rng(0))


def _scene_config_keys(tmp_path):
    from loftup.data.scenes import SceneConfig

    SceneConfig.from_dict({"colour": 1})


def _sa1b_not_json(tmp_path):
    from loftup.data.images import SquareCrop
    from loftup.data.sa1b import read_sa1b_masks

    (tmp_path / "sa_1.json").write_text("{not json")
    read_sa1b_masks(tmp_path / "sa_1.json", SquareCrop.centred(16, 16, 8), 4)


def _masks_of_another_picture(tmp_path):
    import json

    from loftup.data.images import SquareCrop
    from loftup.data.sa1b import read_sa1b_masks

    rle = {"size": [10, 40], "counts": [400]}  # uncompressed RLE: a 10x40 mask, all False
    (tmp_path / "sa_1.json").write_text(json.dumps({"annotations": [{"segmentation": rle}]}))
    read_sa1b_masks(tmp_path / "sa_1.json", SquareCrop.centred(20, 20, 8), 4)


def _featurizer_registered_twice(tmp_path):
    from loftup.featurizers import FeaturizerSpec, register, resolve

    spec = resolve("scenes_vit_p8")
    register(FeaturizerSpec(spec.name, spec.builder, spec.patch_size, spec.dim))


def _featurizer_unbatched(tmp_path):
    from loftup.featurizers.scenes_vit import SceneViT, SceneViTConfig

    model = SceneViT(config=SceneViTConfig(dim=8, depth=1, num_heads=1, stem=(4, 4)))
    model(torch.zeros(3, 16, 16))


#: (what raises it, its class, the builtin it was before, words of its message)
CASES = {
    "outputs.FeatureFile dtype": (_feature_file, UsageError, ValueError, "not torch.float64;"),
    "outputs.save_features format": (_save_features, UsageError, ValueError, "choose one of pt"),
    "npy_stream layout": (_npy_layout, UsageError, ValueError, "'nchw' or 'nhwc', got 'hwc'"),
    "npy_stream dtype": (
        _npy_dtype, UsageError, ValueError, "float32 or float16 (a NumPy dtype name)"
    ),
    "tiling.start_upsample image": (
        _start_upsample_image, UsageError, ValueError, "(B, 3, H, W) tensor, got (3, 8, 8)"
    ),
    "tiling.start_upsample stream": (
        _start_upsample_stream, UsageError, ValueError, "leave it out on the CPU"
    ),
    "compiled.graph_upsampler device": (
        _graph_upsampler, UsageError, ValueError, "move the model and inputs to a GPU"
    ),
    "compiled.graph_upsampler inputs": (
        _graph_upsampler_inputs, ForwardInputError, TypeError, "lr_feats must be a torch.Tensor"
    ),
    "atomic.read_json_object": (
        _record, BrokenFileError, ValueError, "a JSON object was expected, not list"
    ),
    "io.set_max_image_pixels": (_image_limit, UsageError, ValueError, "or None for any size"),
    "model.LoftUp config": (
        _config_and_keywords, UsageTypeError, TypeError, "dataclasses.replace(config, depth="
    ),
    "model.LoftUp config and dim": (
        _config_and_dim, UsageTypeError, TypeError, "not both (got config and dim)"
    ),
    "eval.probe shapes": (_probe_shapes, UsageError, ValueError, "got (2, 4, 3, 3) and (2, 1,"),
    "eval.probe_training optimizer": (
        _probe_optimizer, UsageError, ValueError, "unknown probe optimizer 'sgd'; choose one of"
    ),
    "eval.probe_training schedule": (
        _probe_schedule, UsageError, ValueError, "choose one of constant, cosine, probe3d"
    ),
    "world.backbone size": (_backbone_recipe, UsageError, ValueError, "multiple of the patch"),
    "train.noise MaskNoise": (
        _mask_noise, UsageError, ValueError, "mask_noise.erode must be a level in [0, 1] (0: none)"
    ),
    "train.downsampler window_stride": (
        _window_stride, UsageError, ValueError, "(stage1.image_size, stage2.global_sizes) multiples"
    ),
    "train.config image size": (
        _image_size_windows, UsageError, ValueError, "stage1.image_size 209 does not fit"
    ),
    "data.textures family": (
        _texture_family, UsageError, ValueError, "unknown texture family 'plaid'; use one of"
    ),
    "data.scenes SceneConfig keys": (
        _scene_config_keys, UsageError, ValueError, "keys ['colour']; use only"
    ),
    "data.sa1b not JSON": (
        _sa1b_not_json, BrokenFileError, ValueError, "not SA-1B annotations (extract the file again",
    ),
    "data.images masks of another picture": (
        _masks_of_another_picture, BrokenFileError, ValueError, "sa_1.json: its masks are 40x10 px"
    ),
    "featurizers.register twice": (
        _featurizer_registered_twice, UsageError, ValueError, "register yours under another name"
    ),
    "featurizers forward unbatched": (
        _featurizer_unbatched, UsageError, ValueError, "(3, 16, 16); one image needs its batch axis"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_is_a_loftup_error_and_still_its_builtin(case, tmp_path):
    make, cls, builtin, words = CASES[case]
    with pytest.raises(cls) as e:
        make(tmp_path)
    assert isinstance(e.value, LoftUpError) and isinstance(e.value, builtin)
    message = str(e.value)
    assert words in message and "\n" not in message, message


def test_start_upsample_checks_the_models_settings_first():
    """A negative tile size on the model was a ValueError from inside the tile planner, naming
    no setting; now the setting and where to set it."""
    from loftup.tiling import start_upsample
    from model_helpers import perturbed_loftup

    model = perturbed_loftup(dim=8)
    model.tile_size = -4
    with pytest.raises(UsageError, match=r"^tile_size must be .*\(set model\.tile_size"):
        start_upsample(model, torch.rand(1, 3, 8, 8))


def test_the_grid_experiment_names_a_backbone_whose_grid_does_not_follow_the_size():
    """A backbone that does not give one cell per patch of the grid's images is told in one
    line, with the option to change (it was a bare ValueError)."""
    from loftup.experiments.data import load_backbone
    from loftup.experiments.grid import held_out_views
    from loftup.experiments.settings import ExperimentSettings

    s = ExperimentSettings("grid", eval_count=2).resolved()
    featurizer = load_backbone(s)
    with pytest.raises(UsageError, match=r"gave a 2-cell grid for 16 px images, not 4 cells") as e:
        held_out_views(s, [(4, 2)], 4, featurizer)  # a patch of 4: 16 px, 2 cells of 8
    assert "choose another --backbone" in str(e.value)


def test_a_graph_s_finish_without_its_start_says_the_order():
    """finish() without a start() was a bare RuntimeError ("its tokens are used up"); the check
    comes before any CUDA work, so it is read here on the CPU."""
    from types import SimpleNamespace

    from loftup.compiled import GraphOrderError, GraphUpsampler

    fn = GraphUpsampler(SimpleNamespace(memo={}), None, None, None, None, None)
    with pytest.raises(GraphOrderError, match=r"call fn.start\(image\) again") as e:
        fn.finish(torch.zeros(1, 8, 2, 2))
    assert isinstance(e.value, (LoftUpError, RuntimeError)) and "\n" not in str(e.value)
