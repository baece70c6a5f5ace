"""What a pipeline does to the modules it is given: the device they run on when none is named,
and the mode they must be in when it runs (src/loftup/pipeline.py, pipeline_checks.py)."""

from __future__ import annotations

import pytest
import torch

import loftup
from loftup.errors import UsageError
from loftup.featurizers import Featurizer
from loftup.pipeline_checks import run_device


def test_an_upsampler_put_back_in_training_mode_is_refused_not_run(upsampler):
    """A training loop that evaluated with its pipeline and went on training the upsampler:
    the pipeline then ran it in training mode without a word, its output depending on the
    batch and each call changing the BatchNorm running statistics."""
    pipe = loftup.load_pipeline(upsampler, device="cpu", backbone_size=28)
    image = torch.rand(2, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    _, want = pipe(image)
    pipe.upsampler.train()
    stats = pipe.upsampler.stem.bn1.running_mean.clone()
    calls = (
        lambda: pipe(image),
        lambda: pipe(image, callback=lambda tile, feats: None),  # computed whole, as training's
        lambda: loftup.upsample(image, model=pipe),
    )
    for call in calls:
        with pytest.raises(UsageError, match=r"training mode .* pipeline\.upsampler\.eval\(\)"):
            call()
    assert torch.equal(pipe.upsampler.stem.bn1.running_mean, stats)  # nothing ran
    pipe.upsampler.eval()
    assert torch.equal(pipe(image)[1], want)


def test_a_backbone_module_in_training_mode_is_refused_not_run(upsampler):
    """loftup's backbones stay in eval mode whatever .train() is called on them; their inner
    model (or a featurizer of the user's) may not, and dropout would make the features random."""
    pipe = loftup.load_pipeline(upsampler, device="cpu", backbone_size=28)
    image = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    want, _ = pipe(image)
    pipe.featurizer.train()  # kept in eval mode: runs
    assert torch.equal(pipe(image)[0], want)
    pipe.featurizer.model.train()
    with pytest.raises(UsageError, match=r"^a FeaturePipeline .*\(Dropout\) is in training mode, "
                       r"where it drops .* call \.eval\(\) on the backbone"):  # fmt: skip
        pipe(image)
    pipe.featurizer.eval()
    assert torch.equal(pipe(image)[0], want)


def test_a_module_passed_without_a_device_stays_where_it_is():
    """device=None moved a LoftUp passed in to the auto device, in place (cuda:0 wherever CUDA
    exists: a model kept on the CPU, or on cuda:1, was moved). The meta device stands for a
    device other than the auto one (this machine's CPU): the model was copied to the CPU,
    which a meta tensor refuses; the backbone loaded by name goes where the model is."""
    model = loftup.LoftUp(dim=32).to("meta")
    pipe = loftup.load_pipeline(model, backbone="dinov2_tiny", dtype="bfloat16")
    assert pipe.upsampler is model and not model.training  # changed in place, as documented
    assert pipe.device == torch.device("meta") and pipe.dtype == torch.bfloat16
    assert {p.device.type for p in pipe.featurizer.parameters()} == {"meta"}


def test_the_device_of_a_pipeline_is_the_one_named_else_its_modules_else_auto():
    on_meta, on_cpu = loftup.LoftUp(dim=32).to("meta"), loftup.get_featurizer("dinov2_tiny")
    assert run_device(None, on_meta, "dinov2_tiny") == torch.device("meta")
    assert run_device(None, "loftup_dinov2s", on_cpu) == torch.device("cpu")
    with pytest.raises(UsageError, match=r"^the model has weights on the meta device"):
        run_device(torch.device("cpu"), on_meta, None)  # no data to move: refused
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert run_device(None, "loftup_dinov2s", None) == want  # loaded by name: the auto device
    with pytest.raises(UsageError, match=r"^the model has weights on the meta device"):
        run_device(None, on_meta, on_cpu)  # the weights on meta are what to mend, not where
    half = loftup.LoftUp(dim=32)  # a LoftUp built under torch.device("meta") whose computed
    half.channel_norm.to("meta")  # buffers came from a cache on the CPU (the suite's order)
    with pytest.raises(UsageError, match=r"^the model has weights on the meta device"):
        run_device(None, half, None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_kept_on_the_cpu_stays_there_where_cuda_exists():
    model = loftup.LoftUp(dim=32)
    image = torch.rand(3, 30, 40)
    out = loftup.upsample(image, model=model, backbone="dinov2_tiny", backbone_size=28)
    assert out.device.type == "cpu" and next(model.parameters()).device.type == "cpu"


class _Mine(Featurizer):
    """A user's backbone: a patch convolution, and a batch norm or dropout after it if asked."""

    name, patch_size, dim = "mine", 14, 32

    def __init__(self, after=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, 14, 14)
        self.after = after or torch.nn.Identity()

    def forward(self, x):
        return self.after(self.conv(x))


def test_a_backbone_in_training_mode_runs_where_the_mode_changes_nothing():
    """A user's convolutional backbone put back in training mode was refused as if "dropout
    would make its features random": it has none, and computes the same; one with batch norm
    or dropout is refused, naming it."""
    torch.manual_seed(0)
    image = torch.rand(2, 3, 56, 56)
    plain = _Mine()
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone=plain, backbone_size=56)
    want = pipe(image)[1]
    plain.train()
    assert torch.equal(pipe(image)[1], want)
    for after, kind in (
        (torch.nn.BatchNorm2d(32), "BatchNorm2d"),
        (torch.nn.Dropout(0.1), "Dropout"),
    ):
        pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone=_Mine(after), backbone_size=56)
        pipe.featurizer.train()
        with pytest.raises(UsageError, match=rf"after of mine \({kind}\) is in training mode"):
            pipe(image)


def test_upsample_puts_a_backbone_passed_in_back_in_eval_mode_at_each_call(tmp_path):
    """upsample(image, model=PATH, backbone=f) after f.train() refused naming
    pipeline.featurizer.eval() (the caller made no pipeline; the pipeline of the first call was
    cached), while model=LoftUp put f in eval mode: both do now, at each call."""
    torch.manual_seed(0)
    loftup.LoftUp(dim=32).save_pretrained(tmp_path / "m", backbone="dinov2_tiny")
    f, image = _Mine(torch.nn.Dropout(0.5)), torch.rand(3, 56, 56)
    want = loftup.upsample(image, model=tmp_path / "m", backbone=f, backbone_size=56, device="cpu")
    f.train()
    got = loftup.upsample(image, model=tmp_path / "m", backbone=f, backbone_size=56, device="cpu")
    assert torch.equal(got, want) and not f.training


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_module_on_the_meta_device_is_told_to_load_its_weights(device):
    """A LoftUp built on the meta device failed deep inside: moving it ("Cannot copy out of
    meta tensor") or, with no device, built on meta and run there (Tensor.item()). Refused
    before it moves, or as the pipeline runs, naming what to do instead."""
    with torch.device("meta"):
        m = loftup.LoftUp(dim=32)
    with pytest.raises(UsageError, match=r"^the (model|pipeline\.upsampler) has weights on the "
                       r"meta device.*loftup\.load_upsampler\(PATH\)"):  # fmt: skip
        pipe = loftup.load_pipeline(m, backbone="dinov2_tiny", backbone_size=28, device=device)
        pipe(torch.rand(1, 3, 28, 28))


def test_a_model_moved_to_meta_after_it_ran_is_refused():
    """The weights are looked at for the meta device only where a model was moved since the
    last call (not each call: a few hundred µs for a ViT-S): a pipeline that ran, then moved
    or given another upsampler on meta, is refused still."""
    image = torch.rand(1, 3, 28, 28)
    for move in (
        lambda p: (p.upsampler.to("meta"), p.featurizer.to("meta")),
        lambda p: setattr(p, "upsampler", loftup.LoftUp(dim=32).to("meta").eval()),
    ):
        pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
        pipe(image)
        move(pipe)
        for _ in range(2):  # and again: not taken as checked
            with pytest.raises(UsageError, match=r"^the pipeline\.upsampler has weights on the "
                               r"meta device"):  # fmt: skip
                pipe(image)


@pytest.mark.parametrize(
    "which, part",
    [("upsampler", lambda m: [*m.children()][-1]), ("featurizer", lambda m: [*m.modules()][-1])],
)
def test_a_submodule_moved_to_meta_after_it_ran_is_refused(which, part):
    """Its first parameter stays where it was, so the weights are not looked at again before
    the call: the upsampler's last layer on meta was told to move the image to meta (or the
    upsampler to the CPU; neither can run), the backbone's last norm failed with a bare
    RuntimeError. The failed call looks, and refuses it as a model on meta."""
    image = torch.rand(1, 3, 28, 28)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    pipe(image)
    part(getattr(pipe, which)).to("meta")  # (not the first parameter's module)
    for _ in range(2):
        with pytest.raises(UsageError, match=rf"^the pipeline\.{which} has weights on the meta"):
            pipe(image)


def test_a_refused_pairing_leaves_the_modules_passed_in_as_they_were():
    """A backbone of another width refused only after both modules passed in had been converted
    in place to the dtype asked for: the caller's float32 weights were lost to bfloat16's
    rounding, and the backbone's too, by a call that did nothing else."""
    torch.manual_seed(0)
    up = loftup.LoftUp(dim=32)
    wide = loftup.get_featurizer("scenes_vit_p8")  # 64-d features
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (up, wide)]
    calls = (
        lambda: loftup.load_pipeline(up, backbone=wide, dtype="bfloat16"),
        lambda: loftup.upsample(torch.rand(3, 32, 32), model=up, backbone=wide, dtype="float16"),
        lambda: loftup.upsample(
            torch.rand(3, 32, 32), model=up, backbone="scenes_vit_p8", dtype="float16"
        ),
    )
    for call in calls:
        with pytest.raises(loftup.LoftUpError, match=r"gives 64-d features .* expects 32-d"):
            call()
        for module, state in zip((up, wide), before):
            now = module.state_dict()
            assert all(now[k].dtype == v.dtype and torch.equal(now[k], v) for k, v in state.items())


def test_backbone_weights_or_norm_beside_a_backbone_module_are_refused_not_ignored(tmp_path):
    """load_pipeline(up, backbone=clip_featurizer, backbone_norm="own") ran the module on the
    ImageNet-normalised image, and backbone_weights=FOLDER ran it on its own weights, both
    without a word: they say how to build a backbone by name. Refused, naming the argument
    (as upsample refuses them beside a pipeline); its own normalisation is no contradiction."""
    from PIL import Image

    from loftup.extract import upsample_folder

    (tmp_path / "in").mkdir()
    Image.new("RGB", (28, 28)).save(tmp_path / "in" / "a.png")
    backbone = loftup.get_featurizer("dinov2_tiny")
    up = loftup.LoftUp(dim=32, depth=1, num_heads=2, n_freqs=4)
    calls = (
        (loftup.load_pipeline, (up,)),
        (loftup.upsample, (torch.rand(3, 28, 28), up)),
        (upsample_folder, (tmp_path / "in", tmp_path / "out", up)),
    )
    for kw, said in (
        ({"backbone_norm": "own"}, "backbone_norm='own' is for a backbone built by name, but "),
        ({"backbone_weights": "me/dinov2"}, "backbone_weights='me/dinov2' is for a backbone "),
    ):
        for call, args in calls:
            *args, model = args
            with pytest.raises(UsageError) as e:
                call(*args, model=model, backbone=backbone, **kw)
            assert str(e.value).startswith(said) and "dinov2_tiny" in str(e.value)
    assert not (tmp_path / "out").exists()
    loftup.load_pipeline(up, backbone=backbone, backbone_norm="imagenet")  # its own
