"""The upsampler itself: parity with the paper's outputs, shapes, batch independence, errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from loftup import LoftUp, load_upsampler
from loftup.hub import native_to_reference, reference_to_native
from model_helpers import perturb
from processes import REPO
from reference_files import CASE_NAMES, REFERENCE, REFERENCE_STATE


@pytest.fixture(scope="module")
def reference_model(reference_dir):
    return load_upsampler(REFERENCE_STATE)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_parity_with_reference_outputs(reference_model, reference_cases, case):
    lr, image = reference_cases[f"{case}.lr_feats"], reference_cases[f"{case}.image"]
    with torch.no_grad():
        out = reference_model(lr, image)
    expected = reference_cases[f"{case}.output"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "h,w,H,W",
    [(7, 9, 37, 29), (13, 11, 5, 9), (3, 5, 1, 17), (1, 1, 3, 3)],
    ids=["odd-up", "odd-down", "one-row", "one-cell"],
)
def test_parity_with_the_papers_code_at_odd_sizes(reference_model, reference_state, h, w, H, W):
    """The fixtures' sizes are all even (64 x 64, 48 x 80, 8 x 8); the stand-in of the paper's
    code (which reproduces them, tests/test_bench_reference.py) gives the numbers at odd grids and outputs,
    an output of one row and a one-cell grid, with the fixtures' weights: tile edges, the
    coordinate grid and the Fourier encoding are placed alike at every size."""
    from loftup.bench import load_reference_class

    paper = load_reference_class(REPO / "benchmarks" / "reference_impl.py")
    paper = paper.from_state_dict(reference_state).eval()
    g = torch.Generator().manual_seed(h * 100 + H)
    lr, image = torch.randn(1, 384, h, w, generator=g), torch.randn(1, 3, H, W, generator=g)
    with torch.no_grad():
        ours, theirs = reference_model(lr, image), paper(lr, image)
    assert ours.shape == theirs.shape == (1, 384, H, W)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_released_defaults_match_parameter_count():
    model = LoftUp()
    assert sum(p.numel() for p in model.parameters()) == 4_303_894
    assert model.config.width == 404


@pytest.mark.parametrize(
    "name", ["loftup_dinov2s", "loftup_dinov2b", "loftup_clip", "loftup_siglip2"]
)
def test_every_released_layout_loads_with_width_from_weights(tmp_path, name, reference_dir):
    layout = json.loads((REFERENCE / "checkpoint_layouts.json").read_text())[name]
    state = {
        k: torch.full(shape, 0.5) if shape else torch.tensor(3)
        for k, shape in layout["state_dict"].items()
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    model = load_upsampler(path)
    assert model.dim == layout["dim"]
    assert sum(p.numel() for p in model.parameters()) == layout["parameters"]
    assert not model.training
    # the file's values, every one of them, not the initial weights of that shape
    loaded = model.state_dict()
    assert len(loaded) == len(state)
    assert all(bool((t == 0.5).all()) for t in loaded.values() if t.is_floating_point())


@pytest.mark.parametrize(
    "h,w,H,W",
    [
        (16, 16, 64, 64),
        (12, 20, 37, 61),
        (7, 5, 30, 11),
        (16, 16, 8, 8),
        (16, 16, 5, 9),
        (1, 1, 4, 4),
    ],
)
def test_any_grid_and_output_size(h, w, H, W):
    """Up, down, one axis each way, a 1 x 1 grid: the folded, tiled path (no gradients) gives
    the differentiable steps' numbers at every such size, not only the right shape."""
    torch.manual_seed(0)
    model = perturb(LoftUp(dim=32, num_heads=4, n_freqs=6), 0.1)
    lr, image = torch.randn(1, 32, h, w), torch.randn(1, 3, H, W)
    with torch.no_grad():
        fast = model(lr, image)
    with torch.enable_grad():
        steps = model(lr.clone().requires_grad_(), image).detach()
    assert fast.shape == steps.shape == (1, 32, H, W)
    assert torch.isfinite(fast).all() and steps.std() > 0.1
    assert (fast - steps).abs().max().item() <= 1e-4  # Winograd rounds to ~5e-5


def test_batch_companions_do_not_change_an_image(reference_model, reference_cases):
    lr = reference_cases["square.lr_feats"]
    image = reference_cases["square.image"]
    bright = image * 0.3 + 2.0  # a companion with a very different colour range
    dark = image * 0.1 - 1.5
    with torch.no_grad():
        alone = reference_model(lr, image)
        batched = reference_model(lr.repeat(3, 1, 1, 1), torch.cat([bright, image, dark]))
    assert (batched[1:2] - alone).abs().max().item() <= 1e-5
    assert (batched[1:2] - reference_cases["square.output"]).abs().max().item() <= 1e-4


def test_chunked_decoding_is_exact(reference_model, reference_cases, monkeypatch):
    """The folded path decodes in chunks of ``model.chunk_size`` pixels (whole rows of the
    tile: 12 rows of 80 for 997), with the numbers of the one chunk of the default."""
    import loftup.tiling as tiling

    decoded = []
    real = tiling.decode

    def counted(fw, tokens, *args, **kwargs):
        decoded.append(tokens.shape[1])  # pixels in this chunk
        return real(fw, tokens, *args, **kwargs)

    monkeypatch.setattr(tiling, "decode", counted)
    lr, image = reference_cases["nonsquare.lr_feats"], reference_cases["nonsquare.image"]
    with torch.no_grad():
        whole = reference_model(lr, image)
        reference_model.chunk_size = 997  # does not divide 48 * 80
        try:
            chunked = reference_model(lr, image)
        finally:
            reference_model.chunk_size = None  # the device's default, as loaded
    assert decoded == [48 * 80] + [12 * 80] * 4
    assert (whole - chunked).abs().max().item() <= 1e-6


@pytest.mark.parametrize("window", [None, 3], ids=["global", "local"])
def test_differentiable_path_in_chunks_is_exact(window):
    """Training's path decodes pixels in chunks of ``chunk_size`` (its memory bound): chunks
    that do not divide the output, each with its own pixels' attention windows, give the
    output and the gradients of the whole. (A chunk given the first pixels' windows passed
    every test while the output fitted in one chunk.)"""
    torch.manual_seed(0)
    model = perturb(LoftUp(dim=16, num_heads=2, n_freqs=4, attention_window=window), 0.1)
    lr, image = torch.randn(1, 16, 5, 6, requires_grad=True), torch.randn(1, 3, 23, 19)
    assert not model.uses_fast_path(lr, image)
    outs = []
    for chunk in (None, 97):  # 437 pixels: one chunk, then 5 (the last of 49)
        model.chunk_size = chunk
        out = model(lr, image)
        outs.append((out.detach(), torch.autograd.grad(out.square().sum(), lr)[0]))
    (whole, g_whole), (chunked, g_chunked) = outs
    assert (chunked - whole).abs().max().item() <= 1e-5  # rounding: a chunk may take
    # the other form of local attention (masked dense or gathered)
    assert (g_chunked - g_whole).abs().max().item() <= 1e-5 * g_whole.abs().max().item()


def test_local_attention_covering_the_grid_equals_global():
    torch.manual_seed(0)
    glob = LoftUp(dim=16, num_heads=2).eval()
    local = LoftUp(dim=16, num_heads=2, attention_window=7).eval()
    local.load_state_dict(glob.state_dict())
    lr, image = torch.randn(1, 16, 5, 6), torch.randn(1, 3, 20, 17)
    with torch.no_grad():
        assert (glob(lr, image) - local(lr, image)).abs().max().item() <= 1e-5
        local.config.attention_window = 3  # a smaller window must change the result
        assert (glob(lr, image) - local(lr, image)).abs().max().item() > 1e-3


def test_without_coordinates_the_encoding_is_colour_only():
    """coords=False: a pixel's query depends on the colours around it only (the stem's two
    3 x 3 convolutions), not on where it is. Where the colour is the same, away from the
    image's edge, the output is the same; with coordinates it moves across the image."""
    model = LoftUp(dim=16, num_heads=2, coords=False).eval()
    assert model.image_encoder.phases.shape == (2, 3, 20)
    torch.manual_seed(0)
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 14, 15)
    image[:, :, 2:12, 2:13] = torch.tensor([0.3, -0.2, 0.9]).view(1, 3, 1, 1)  # one colour
    inner = (slice(None), slice(None), slice(4, 10), slice(4, 11))  # 2 pixels inside it
    for coords in (False, True):
        model = perturb(LoftUp(dim=16, num_heads=2, n_freqs=6, coords=coords), 0.1)
        with torch.no_grad():
            out = model(lr, image)[inner]
        spread = (out - out[..., :1, :1]).abs().max().item()
        assert spread <= 1e-5 if not coords else spread > 1e-2, (coords, spread)


def test_key_conversion_round_trips(reference_state):
    native = reference_to_native(reference_state)
    assert "stem.conv1.weight" in native and "channel_norm.weight" in native
    back = native_to_reference(native)
    assert back.keys() == reference_state.keys()
    assert all(torch.equal(back[k], reference_state[k]) for k in back)


@pytest.mark.parametrize(
    "lr_shape,img_shape,dtype,exc,words",
    [
        ((384, 16, 16), (1, 3, 32, 32), torch.float32, ValueError, "4-D"),
        (
            (2, 384, 16, 16),
            (1, 3, 32, 32),
            torch.float32,
            ValueError,
            "batch sizes differ.*one guidance image per",
        ),
        ((1, 100, 16, 16), (1, 3, 32, 32), torch.float32, ValueError, "C=384"),
        ((1, 384, 16, 16), (1, 4, 32, 32), torch.float32, ValueError, "3 channels"),
        ((1, 384, 16, 16), (1, 3, 32, 32), torch.uint8, TypeError, "floating point"),
        ((1, 384, 0, 16), (1, 3, 32, 32), torch.float32, ValueError, "lr_feats has an empty"),
        ((1, 384, 16, 16), (1, 3, 32, 0), torch.float32, ValueError, "image has an empty"),
    ],
)
def test_bad_input_is_named(lr_shape, img_shape, dtype, exc, words):
    model = LoftUp().eval()
    lr = torch.randn(lr_shape)
    image = (
        torch.randn(img_shape).to(dtype)
        if dtype.is_floating_point
        else torch.zeros(img_shape, dtype=dtype)
    )
    with pytest.raises(exc, match=words):
        model(lr, image)


def test_inputs_on_another_device_than_the_model_are_named_with_the_move():
    """lr_feats or an image on another device than the upsampler failed inside a layer with
    torch's "Expected all tensors to be on the same device", naming neither; and a bad input
    was a bare ValueError or TypeError, not the LoftUpError the command line prints as one
    line."""
    from loftup import LoftUpError

    model = LoftUp(dim=8, depth=1, num_heads=1).eval()
    lr, image = torch.randn(1, 8, 2, 2), torch.randn(1, 3, 4, 4)
    for args, name in (((lr.to("meta"), image), "lr_feats"), ((lr, image.to("meta")), "image")):
        with pytest.raises(LoftUpError, match=rf"^{name} is on meta, the upsampler on cpu; move "
                           rf"it there with {name}.to\('cpu'\)"):  # fmt: skip
            model(*args)
    with pytest.raises(LoftUpError) as told:
        model(lr.to(torch.uint8), image)
    assert isinstance(told.value, TypeError) and isinstance(told.value, ValueError)
    assert model(lr, image).shape == (1, 8, 4, 4)


def test_heads_that_do_not_divide_the_width_are_named_with_the_choices():
    """LoftUp(dim=16, num_heads=5) failed inside a layer ("width 36 is not divisible by
    num_heads=5"): not a LoftUpError, no word of the config or of the heads that fit."""
    from loftup import LoftUpError

    with pytest.raises(LoftUpError, match=r"num_heads=5 does not divide the token width 36 "
                       r"\(dim 16 \+ 4 x grid_freqs 5\); use one of 1, 2, 3, 4, 6, 9, 12$"):  # fmt: skip
        LoftUp(dim=16, num_heads=5)
    assert LoftUp(dim=16, num_heads=6).config.width == 36


@pytest.mark.parametrize("grad", [False, True])
def test_an_empty_batch_gives_an_empty_output(grad):
    """Batch 0 (the last slice of a loop, say) is (0, C, H, W), on either path."""
    model = LoftUp(dim=8, num_heads=2).eval()
    with torch.set_grad_enabled(grad):
        out = model(torch.randn(0, 8, 4, 4), torch.randn(0, 3, 10, 12))
    assert out.shape == (0, 8, 10, 12) and out.dtype == torch.float32


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_refused(bad):
    model = LoftUp(dim=8, num_heads=2).eval()
    lr = torch.randn(1, 8, 4, 4)
    lr[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="lr_feats contains NaN or Inf values; check the backbo"):
        model(lr, torch.randn(1, 3, 8, 8))
    image = torch.randn(1, 3, 8, 8)
    image[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="image contains NaN or Inf values; check how it was"):
        model(torch.randn(1, 8, 4, 4), image)


@pytest.mark.filterwarnings("ignore:the guidance image is bfloat16")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_finite_check_finds_any_bad_value_without_copying_the_image(bad, dtype):
    """The check of a forward's inputs made copies of the image (isfinite's absolute values
    and masks: 721 MB and 0.8 s for a 6000 x 6000 guidance image, the peak of an output
    streamed tile by tile); now its min and max, which any NaN or infinity reaches, in one
    pass. Every position is found, in a contiguous image and a strided one."""
    from torch.profiler import ProfilerActivity, profile

    from loftup.input_checks import check_inputs

    lr, image = torch.randn(1, 8, 4, 4), torch.randn(1, 3, 50, 40).to(dtype)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        check_inputs(lr, image, 8)
    assert max(e.cpu_memory_usage for e in prof.events()) <= 64  # scalars: no copy of it
    flat = image.clone().view(-1)
    for at in (0, 1, 17, flat.numel() // 2, flat.numel() - 1):
        spoilt = flat.clone()
        spoilt[at] = bad
        for shown in (spoilt.view_as(image), spoilt.view(1, 50, 40, 3).permute(0, 3, 1, 2)):
            with pytest.raises(ValueError, match="image contains NaN or Inf values"):
                check_inputs(lr, shown, 8)


@pytest.mark.parametrize("dtype", [torch.float8_e5m2, torch.float8_e4m3fn])
def test_float8_inputs_are_checked_and_run(dtype):
    """float8 features (a quantised backbone's) ran, in float32; the min/max check then raised
    torch's "aminmax_cpu not implemented for 'Float8_e5m2'" (isfinite lacks e4m3fn too): they
    are checked in float32, and a NaN in them is still found."""
    model = LoftUp(dim=8, num_heads=2).eval()
    lr = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        out = model(lr.to(dtype), torch.randn(1, 3, 8, 8))
    assert out.shape == (1, 8, 8, 8) and out.dtype == torch.float32 and out.isfinite().all()
    lr[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="lr_feats contains NaN or Inf values"):
        model(lr.to(dtype), torch.randn(1, 3, 8, 8))


def test_a_half_precision_guidance_image_is_warned_about(monkeypatch):
    """The model may run in half precision, the image must not: its rounding, times the
    encoding's e^10 frequencies, is phase noise (see the warning)."""
    import copy
    import warnings

    from loftup import cpu

    # a CPU that emulates bfloat16 says so once per process, whichever test runs first: taken
    # as said here, so that only the guidance image's warning is tested
    monkeypatch.setattr(cpu, "_WARNED_EMULATED", {torch.bfloat16})
    torch.manual_seed(0)
    model = LoftUp(dim=8, num_heads=2).eval()
    lr, image = torch.randn(1, 8, 4, 4), torch.randn(1, 3, 32, 32)
    half = copy.deepcopy(model).to(torch.bfloat16)
    with torch.inference_mode():
        want = model(lr, image)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            good = half(lr.bfloat16(), image)  # float32 image: no warning
        with pytest.warns(UserWarning, match="pass the image in float32") as said:
            bad = half(lr.bfloat16(), image.bfloat16())
    # told at the line that passed the image, not at model.py's (nor torch's module.py)
    assert [w.filename for w in said if "image in float32" in str(w.message)] == [__file__]
    good_err, bad_err = ((y.float() - want).abs().max().item() for y in (good, bad))
    assert bad_err > 5 * good_err, (good_err, bad_err)


def test_an_emulated_cpu_precision_is_warned_about_once(monkeypatch):
    """bfloat16 on a CPU without bfloat16 instructions (AVX2 only) runs several times slower
    than float32: the forward says so once per process, whether the weights or CPU autocast
    ask for it, and says nothing where the CPU has them."""
    from loftup import cpu

    monkeypatch.setattr(cpu, "_WARNED_EMULATED", set())
    model = LoftUp(16).eval()
    lr, image = torch.randn(1, 16, 3, 3), torch.randn(1, 3, 12, 12)
    with warnings.catch_warnings(record=True) as seen, torch.no_grad():
        warnings.simplefilter("always")
        for _ in range(2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(lr, image)
        model.to(torch.bfloat16)(lr.bfloat16(), image)
        model.float()(lr, image)  # float32: never
    said = [str(w.message) for w in seen if "emulates" in str(w.message)]
    if cpu.cpu_emulates(torch.bfloat16):
        assert len(said) == 1 and "no bfloat16 instructions (AVX-512 BF16 or AMX)" in said[0]
        # told at the line that asked for it, not at a line of the library's (or torch's)
        assert [w.filename for w in seen if "emulates" in str(w.message)] == [__file__]
        assert "compute in float32 on this machine" in said[0]
    else:
        assert said == []


def test_the_started_upsample_warns_of_an_emulated_precision_too(monkeypatch):
    """loftup.upsample and ``loftup upsample`` run through start_upsample, which computes on
    the folded weights without calling the model: it warns as the forward does."""
    from loftup import cpu
    from loftup.tiling import start_upsample

    monkeypatch.setattr(cpu, "_WARNED_EMULATED", set())
    model = LoftUp(16).eval().to(torch.bfloat16)
    lr, image = torch.randn(1, 16, 3, 3, dtype=torch.bfloat16), torch.randn(1, 3, 12, 12)
    with warnings.catch_warnings(record=True) as seen, torch.no_grad():
        warnings.simplefilter("always")
        pending = start_upsample(model, image)
        assert pending.queries is not None  # the folded path, not a call of the model
        pending.finish(lr)
    said = [w for w in seen if "emulates" in str(w.message)]
    assert len(said) == int(cpu.cpu_emulates(torch.bfloat16)), said
    assert all(w.filename == __file__ for w in said)  # this file's line, not early_start's


def test_the_emulated_precision_warning_points_at_the_callers_line(monkeypatch):
    """The warning names the user's line that asked for the work, not model.py's or
    early_start.py's (the tests above check it only on a CPU that emulates bfloat16; here the
    CPU is taken to emulate it, so that the place is checked on any machine)."""
    from loftup import cpu
    from loftup.early_start import start_upsample

    monkeypatch.setattr(cpu, "_WARNED_EMULATED", set())
    monkeypatch.setattr(cpu, "cpu_emulates", lambda dtype: dtype == torch.bfloat16)
    model = LoftUp(16).eval().to(torch.bfloat16)
    lr, image = torch.randn(1, 16, 3, 3, dtype=torch.bfloat16), torch.randn(1, 3, 12, 12)
    with warnings.catch_warnings(record=True) as seen, torch.no_grad():
        warnings.simplefilter("always")
        model(lr, image)
        cpu._WARNED_EMULATED.clear()  # once per process: said again for the started one
        start_upsample(model, image).finish(lr)
    said = [w for w in seen if "emulates bfloat16" in str(w.message)]
    assert [w.filename for w in said] == [__file__, __file__], [w.filename for w in said]
