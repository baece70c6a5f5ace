"""The Triton kernels of loftup.kernels against the PyTorch path they replace.

Where a GPU is present they run on it; elsewhere under Triton's CPU interpreter
(``TRITON_INTERPRET=1``), which executes the same kernel code with numpy. Skipped, with the
reason, where Triton is not installed (it comes with ``pip install -e ".[dev]"`` on Linux).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from loftup import LoftUp, kernels
from loftup.fastpath import encode_region, mean_pad
from loftup.layers import image_minmax
from loftup.tiling import upsample
from model_helpers import perturbed_loftup
from processes import REPO, pip_install_into

triton = pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")


@pytest.fixture(scope="module", autouse=True)
def _verdicts_for_this_module_only():
    """The self-test's verdicts (kernels._checked) are kept from test to test here (the
    interpreter's seconds, once), and put back as they were after the module: left, a later
    test's bench report on CPU said the Triton kernels passed."""
    had = dict(kernels._checked)
    yield
    kernels._checked.clear()
    kernels._checked.update(had)


@pytest.fixture(scope="module")
def device():
    """ "cuda" where a GPU is present, else "cpu" with the kernels switched on for CPU tensors
    under the interpreter (tests/conftest.py chooses it before Triton is imported)."""
    if torch.cuda.is_available():
        yield "cuda"
        return
    if not kernels.interpreted():
        pytest.skip("no GPU, and TRITON_INTERPRET=1 was not set before Triton was imported")
    if tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 4):
        pytest.skip(
            f"Triton {triton.__version__}'s CPU interpreter cannot run these kernels (3.0 and 3.1"
            " lack features of it that they use, 3.2 and 3.3 want a GPU driver to declare them);"
            " 3.4 or newer can. Its compiler can: the slow tests compile them with Triton 3.0"
        )
    kernels._switch["cpu"] = True
    try:
        assert kernels.available(), "the kernels did not load under the interpreter"
        yield "cpu"
    finally:
        kernels._switch["cpu"] = False


@pytest.fixture(scope="module")
def model():
    return perturbed_loftup()


@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm_rows_matches_pytorch_in_float32(device, affine):
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(37, 408, generator=g) + 1).to(device)  # 37: a partial block of rows
    w, b = (torch.randn(408, generator=g).to(device) for _ in range(2))
    args = (w, b) if affine else ()
    got = kernels.layer_norm_rows(x, 1e-5, *args)
    ref = F.layer_norm(x, (408,), *(args or (None, None)), eps=1e-5)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert (got - ref).abs().max().item() <= 4e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_layer_norm_rows_writes_the_mean_padding_first(device, dtype):
    g = torch.Generator().manual_seed(1)
    x = (3 * torch.randn(50, 408, generator=g)).to(device, dtype)
    x[:, 404:] = 7.0  # stale padding: must be replaced by the mean of the first 404 channels
    expect = x.clone()
    mean_pad(expect, 404)
    got = kernels.layer_norm_rows(x, 1e-5 * 404 / 408, real=404)
    assert torch.equal(x[:, :404], expect[:, :404])
    assert (x[:, 404:].float() - expect[:, 404:].float()).abs().max().item() <= (
        1e-6 if dtype == torch.float32 else 4e-3
    )
    ref = F.layer_norm(expect.float(), (408,), eps=1e-5 * 404 / 408)
    assert got.dtype == dtype
    assert (got.float() - ref).abs().max().item() <= (4e-6 if dtype == torch.float32 else 4e-3)


@pytest.mark.parametrize("align", [1, 8])
@torch.no_grad()
def test_encoding_kernel_matches_the_pytorch_encoding(device, model, align):
    """Float32 weights, a region off the image's origin, a strided view, batch 2."""
    m = model.to(device)
    fw = m.fused(torch.float32, "direct", align)
    g = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, 30, 26, generator=g).to(device)
    lo, hi = image_minmax(image)
    region = image[:, :, 3:20, 5:24]
    with kernels.enabled(False):
        ref = encode_region(fw, region, lo, hi, (3, 5), (30, 26))
    e = fw.enc_width
    n, j = fw.image_phases.shape[1:]
    from loftup.fast_stem import _coordinate_features

    rows, cols = _coordinate_features(fw, (3, 5), (30, 26), region.shape[-2:], image.device)
    got = kernels.encode_pixels(
        region, lo, hi, rows, cols, fw.image_freqs, fw.image_phases[:, :, j - 3 :],
        fw.stem_norm, fw.enc_padded, torch.float32,
    )  # fmt: skip
    assert got.shape == ref.shape == (2, 17, 19, fw.enc_padded) and e <= fw.enc_padded
    assert (got - ref).abs().max().item() <= 2e-6
    model.to("cpu")


def _count_kernel_calls(monkeypatch) -> dict[str, int]:
    """Calls from now on of each Triton kernel's launcher (the real one runs): {name: count}."""
    from loftup import _triton_kernels as tk

    calls = dict.fromkeys(("encode", "bias_relu_", "layer_norm"), 0)
    for name in calls:

        def counted(*args, _real=getattr(tk, name), _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(tk, name, counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kernels_pass_their_self_test_here_leaving_the_random_generators(
    device, dtype, monkeypatch
):
    """The self-test seeds the tiny model it runs: the CPU's generator is restored after it,
    and no GPU's is reseeded (torch.manual_seed reseeds every GPU's, which fork_rng(devices=[])
    does not restore: a process's CUDA random numbers restarted at its first half forward)."""
    gpu = device != "cpu"
    torch.manual_seed(123)
    reseeded = []
    if not gpu:  # no GPU generator to read here: whether one would have been reseeded
        monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    cpu, cuda = torch.get_rng_state(), torch.cuda.get_rng_state() if gpu else None
    # run now, not found from an earlier test; its verdict is kept for the forward below (the
    # interpreter's seconds, once)
    for key in [k for k in kernels._checked if k[1] == dtype]:
        del kernels._checked[key]
    assert kernels.working(device, dtype)
    assert torch.equal(torch.get_rng_state(), cpu) and not reseeded, reseeded
    if gpu:
        assert torch.equal(torch.cuda.get_rng_state(), cuda)


# the second configuration: slow (5 s); the released one stays in the default suite
@pytest.mark.parametrize(
    "config",
    [{}, pytest.param({"dim": 32, "n_freqs": 6, "coords": False}, marks=pytest.mark.slow)],
)
def test_half_precision_forward_with_kernels_matches_without(device, model, config, monkeypatch):
    """The whole forward (tiles, mean padding, every LayerNorm) in float16; the released
    shape, and a small one without coordinate features. Each kernel does run in it (a forward
    that never called them would match trivially), and none with them switched off."""
    if config:
        torch.manual_seed(5)
        m = LoftUp(**config).eval()
    else:
        m = LoftUp(dim=384).eval()
        m.load_state_dict(model.state_dict())
    m = m.to(device, torch.float16)
    m.align = 8
    dim = m.config.dim
    g = torch.Generator().manual_seed(3)
    # one image: the tiles are each of one image anyway (each kernel's batches and views:
    # the tests above), and a second doubled the interpreter's launches
    lr = torch.randn(1, dim, 4, 4, generator=g).to(device, torch.float16)
    image = torch.randn(1, 3, 22, 18, generator=g).to(device)  # guidance images stay float32
    with torch.inference_mode():
        assert kernels.active(image, torch.float16)  # self-tested by now
        calls = _count_kernel_calls(monkeypatch)
        got = upsample(m, lr, image, tile_size=12)
        used = dict(calls)
        with kernels.enabled(False):
            assert not kernels.active(image, torch.float16)
            ref = upsample(m, lr, image, tile_size=12)
    # 22 x 18 in tiles of 12: 4 tiles, each with its encoding, the stem's two bias + ReLU, and
    # 6 LayerNorms (each block's query and FFN ones, the last, the head's)
    tiles, norms = 4, 2 * m.config.depth + 2
    assert used == {"encode": tiles, "bias_relu_": 2 * tiles, "layer_norm": norms * tiles}, used
    assert calls == used  # none with the kernels off
    d = (got.float() - ref.float()).abs()
    assert d.max().item() <= 2e-2 and d.mean().item() <= 1e-3


def test_float32_forward_keeps_pytorch_kernels(device, model):
    m = model.to(device)
    g = torch.Generator().manual_seed(4)
    lr, image = torch.randn(1, 384, 4, 4, generator=g), torch.randn(1, 3, 16, 16, generator=g)
    lr, image = lr.to(device), image.to(device)
    with torch.inference_mode():
        assert not kernels.active(image, torch.float32)
        a = m(lr, image)
        with kernels.enabled(False):
            b = m(lr, image)
    model.to("cpu")
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "window",
    [
        (slice(None), slice(2, 5), slice(3, 8)),  # (2, 3, 5, 24): strided rows and images
        (slice(0, 1), slice(2, 3), slice(3, 8)),  # (1, 1, 5, 24): one run of rows (stored flat)
    ],
)
def test_layer_norm_rows_writes_into_a_tile_of_a_larger_output(device, window):
    g = torch.Generator().manual_seed(6)
    big = torch.full((2, 7, 9, 24), 9.0, device=device)
    tile = big[window]
    x = torch.randn(tile.numel() // 24, 24, generator=g).to(device)
    w, b = (torch.randn(24, generator=g).to(device) for _ in range(2))
    got = kernels.layer_norm_rows(x, 1e-5, w, b, out=tile)
    ref = F.layer_norm(x, (24,), w, b, 1e-5).view(tile.shape)
    assert got.data_ptr() == tile.data_ptr()
    assert (big[window] - ref).abs().max().item() <= 4e-6
    untouched = torch.ones_like(big, dtype=torch.bool)
    untouched[window] = False
    assert (big[untouched] == 9.0).all()
    with pytest.raises(ValueError, match="contiguous channels"):
        kernels.layer_norm_rows(x, 1e-5, out=big.permute(0, 3, 1, 2)[:, :, :3, :5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bias_relu_in_place_matches_pytorch(device, dtype):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 20, 5, 7, generator=g).to(device, dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(20, generator=g).to(device, dtype)
    ref = (x + b.view(-1, 1, 1)).relu()
    got = kernels.bias_relu_(x, b)
    assert got is x and x.is_contiguous(memory_format=torch.channels_last)
    assert (got.float() - ref.float()).abs().max().item() == 0.0
    with pytest.raises(ValueError, match="channels-last"):
        kernels.bias_relu_(torch.randn(1, 20, 5, 7).to(device, dtype), b)


def test_bias_relu_zeroes_the_pixels_outside_its_window(device):
    """The stem's first convolution: a tile's rows and columns outside the image are zeroed
    in the same pass (the second convolution's zero padding)."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 24, 6, 9, generator=g).to(device, torch.float16)
    x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(24, generator=g).to(device, torch.float16)
    ref = (x + b.view(-1, 1, 1)).relu()
    ref[:, :, :1] = 0
    ref[:, :, 5:] = 0
    ref[:, :, :, 8:] = 0
    got = kernels.bias_relu_(x, b, (1, 5, 0, 8))
    assert (got.float() - ref.float()).abs().max().item() == 0.0
    assert got[:, :, 1:5, :8].ne(0).any()  # not all zeroed


def test_autotuned_in_place_kernels_restore_their_input(device):
    """The autotuner times every candidate on the real arguments: a kernel that writes its
    input in place must have it restored in between, or the first call is wrong (it was, on
    a GPU: ReLU(x + k * bias))."""
    from loftup import _triton_kernels as tk

    for kernel in (tk._bias_relu_kernel, tk._layer_norm_kernel):
        assert "X" in kernel.restore_value, kernel


@pytest.mark.parametrize("fault", ["raises", "wrong numbers"])
def test_a_broken_kernel_is_reported_once_and_the_pytorch_path_runs(device, monkeypatch, fault):
    """A Triton that fails to compile or miscompiles (say, a version that does not fit this
    torch) must cost a warning, not the forward."""
    from loftup import _triton_kernels as tk

    def broken(x, bias, keep):  # tk.bias_relu_'s signature: a wrong one fails as a TypeError
        if fault == "raises":
            raise RuntimeError("PTX assembly failed")
        x.mul_(2)  # runs, but computes something else

    monkeypatch.setattr(tk, "bias_relu_", broken)
    monkeypatch.setattr(kernels, "_checked", {})
    # each fault is caught for its own reason: the exception, or the outputs' deviation
    why = "PTX assembly failed" if fault == "raises" else r"outputs differ by [0-9.]+ \(bound"
    image = _first_forward_falls_back(device, torch.float16, f"failed their self-test .*{why}")
    assert not kernels.working(device) and not kernels.active(image, torch.float16)


def _first_forward_falls_back(device, dtype: torch.dtype, warning: str) -> torch.Tensor:
    """A small LoftUp's first forward in ``dtype`` warns (matching ``warning``) and computes
    what PyTorch's kernels compute; returns its guidance image."""
    torch.manual_seed(6)
    m = LoftUp(dim=16, num_heads=2).eval().to(device, dtype)
    lr = torch.randn(1, 16, 3, 3).to(device, dtype)
    image = torch.randn(1, 3, 12, 12).to(device)
    with torch.inference_mode():
        with pytest.warns(RuntimeWarning, match=warning):
            got = m(lr, image)
        with kernels.enabled(False):
            ref = m(lr, image)
    assert torch.equal(got, ref)
    return image


def test_a_kernel_broken_in_one_precision_costs_only_that_precisions_kernels(device, monkeypatch):
    """The precisions compile apart, and one can fail where the other works: Triton 3.0 to 3.2
    cannot assemble bfloat16 kernels for GPUs before Ampere (T4, V100), whose float16 kernels
    compile (tests/triton_aot.py). A bfloat16 failure then costs bfloat16's kernels, with a
    warning naming the precision, and a bfloat16 forward runs PyTorch's; float16 keeps its."""
    from loftup import _triton_kernels as tk

    real = tk.layer_norm

    def bf16_broken(x, *args):
        if x.dtype == torch.bfloat16:
            raise RuntimeError("Feature '.bf16' requires .target sm_80 or higher")
        return real(x, *args)

    monkeypatch.setattr(tk, "layer_norm", bf16_broken)
    fp16 = (torch.device(device) if device == "cpu" else torch.device("cuda", 0), torch.float16)
    monkeypatch.setattr(kernels, "_checked", {fp16: True})
    image = _first_forward_falls_back(device, torch.bfloat16, "on .* in bfloat16 .*sm_80")
    assert not kernels.active(image, torch.bfloat16)
    assert kernels.active(image, torch.float16)


def _run_aot(*args: str, triton_from=None) -> subprocess.CompletedProcess:
    """tests/triton_aot.py in a process of its own (Triton's interpreter off there), with the
    Triton installed in the folder ``triton_from`` if given."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    first = [str(triton_from)] if triton_from else []
    env["PYTHONPATH"] = os.pathsep.join([*first, str(REPO / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "triton_aot.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if done.returncode == 3:
        pytest.skip(done.stdout.strip())
    return done


def _compile_for_gpus(*args: str, triton_from=None) -> list[dict]:
    """tests/triton_aot.py's rows: the kernels, as one forward launches them, compiled for
    NVIDIA GPUs ahead of time (no GPU needed)."""
    done = _run_aot(*args, triton_from=triton_from)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    names = {r["kernel"] for r in rows}
    assert names == {"_layer_norm_kernel", "_encode_kernel", "_bias_relu_kernel"}, names
    variants = {
        (r["constants"]["AFFINE"], r["constants"]["PAD"]) for r in rows if "PAD" in r["constants"]
    }
    assert variants == {(False, True), (False, False), (True, False)}  # first, inner, head norm
    return rows


def _check_compiled(rows: list[dict]) -> None:
    for r in rows:
        where = f"{r['kernel']} {r['dtype']} {r['arch']} {r['config']}"
        # a word or two is ptxas's choice (Triton 3.9, sm_80); the dropped candidates spilled
        # from 88 bytes to 5 kB a thread
        assert r["spill_bytes"] <= 16, f"{where} spills {r['spill_bytes']} bytes a thread"
        assert r["registers"] is not None and r["registers"] <= 255, where
        # enable_fp_fusion=False reached the compiler: no multiply-add contracted (those would
        # move the e^10-scale Fourier arguments of the encoding away from PyTorch's values)
        assert r["contracted_fma"] == 0, f"{where}: {r['contracted_fma']} contracted fma"
        if r["kernel"] in ("_layer_norm_kernel", "_bias_relu_kernel"):
            # rows of 408 or 384 half-precision channels: 4 or 8 channels per access (as many
            # as the candidate gives a thread), not one (what a run-time row width that is no
            # multiple of 16 compiled to)
            scalar = {k: n for k, n in r["accesses"].items() if k.endswith(".b16")}
            assert not scalar, f"{where}: one channel per access: {scalar}"
            vector = [k for k in r["accesses"] if k.startswith("ld.v")]  # 8 or 16 bytes
            assert vector, f"{where}: no vector loads: {r['accesses']}"


def test_kernels_compile_for_hopper_as_the_self_test_launches_them():
    """What a lent H100/H200 compiles first (the self-test's untuned candidates, for the
    shapes of a C = 384 model), checked here so that a compile error costs no GPU time."""
    rows = _compile_for_gpus("90", "--fixed")
    # encoding, 3 LayerNorms, and the two stem convolutions' bias + ReLU, which differ in an
    # integer that Triton's launcher marks as a multiple of 16 (so compile separately)
    assert {r["arch"] for r in rows} == {"sm_90a"} and len(rows) == 6
    _check_compiled(rows)


@pytest.mark.slow
def test_every_autotuning_candidate_compiles_for_ampere_and_hopper_without_spills():
    rows = _compile_for_gpus("80", "90", "--dtypes", "float16", "bfloat16")
    assert {r["arch"] for r in rows} == {"sm_80", "sm_90a"}
    _check_compiled(rows)


#: the GPU generations our users run: V100, T4, A100, A10/RTX 30, L4/L40/RTX 40, H100/H200,
#: B200, RTX 50
GENERATIONS = ("70", "75", "80", "86", "89", "90", "100", "120")


@pytest.mark.slow
def test_the_kernels_compile_for_every_gpu_generation_from_volta_to_blackwell():
    """As the self-test launches them, in both half precisions (bfloat16 too before Ampere:
    Triton from 3.3 on converts it in software there)."""
    rows = _compile_for_gpus(*GENERATIONS, "--fixed", "--dtypes", "float16", "bfloat16")
    archs = {r["arch"].removesuffix("a") for r in rows}
    assert archs == {f"sm_{a}" for a in GENERATIONS}, archs
    assert len(rows) == 6 * len(GENERATIONS) * 2
    _check_compiled(rows)


@pytest.mark.slow
def test_the_kernels_compile_for_amd_instinct_and_radeon_gpus():
    """ROCm builds of torch run the same forward (their tensors are "cuda" ones) and their
    Triton compiles the kernels through its AMD backend, every autotuning candidate, for
    MI200 (gfx90a), MI300 (gfx942) and the Radeon RX 7900 (gfx1100, waves of 32) in both half
    precisions. On the Instinct GPUs none spills; on the Radeon the autotuner has a candidate
    without spills for every kernel (Triton 3.9 spills 76 bytes a lane in one of the four
    encoding candidates there, which is also the self-test's: slower, not wrong)."""
    archs = ("gfx90a", "gfx942", "gfx1100")
    rows = _compile_for_gpus(*archs, "--dtypes", "float16", "bfloat16")
    assert sorted({r["arch"] for r in rows}) == sorted(archs)
    candidates: dict[tuple, list[int]] = {}
    for r in rows:
        where = f"{r['kernel']} {r['dtype']} {r['arch']} {r['config']}"
        assert r["registers"] is not None, where
        if r["arch"] != "gfx1100":
            assert r["spill_bytes"] == 0, where
        shape = {k: v for k, v in r["constants"].items() if k not in r["config"]}
        key = (r["kernel"], r["dtype"], r["arch"], json.dumps(shape, sort_keys=True))
        candidates.setdefault(key, []).append(r["spill_bytes"])
    # each kernel shape of a forward (its two bias+ReLU launches differ only in an argument's
    # alignment), in each precision, for each GPU
    assert len(candidates) == 5 * 2 * 3
    assert all(min(spills) == 0 for spills in candidates.values()), candidates


@pytest.mark.slow
def test_the_kernels_compile_with_the_oldest_triton_a_supported_torch_brings(tmp_path):
    """torch 2.4, our lower bound, brings Triton 3.0 (which pyproject's gpu extra allows, so as
    not to fight torch's pin). Every kernel, each autotuning candidate, compiles with it for
    Volta to Hopper in float16 and for Ampere and Hopper in bfloat16. bfloat16 before Ampere
    does not assemble with it (ptxas wants sm_80): the self-test, run per precision, finds that
    on such a GPU and leaves bfloat16 to PyTorch's kernels (as
    test_a_kernel_broken_in_one_precision_costs_only_that_precisions_kernels shows)."""
    site = pip_install_into(tmp_path / "site", ["triton==3.0.0"])
    fp16 = _compile_for_gpus(*GENERATIONS[:6], triton_from=site)
    bf16 = _compile_for_gpus("80", "90", "--dtypes", "bfloat16", triton_from=site)
    assert {r["triton"] for r in fp16 + bf16} == {"3.0.0"}
    assert {r["arch"] for r in fp16} == {"sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90a"}
    _check_compiled(fp16 + bf16)
    old = _run_aot("75", "--fixed", "--dtypes", "bfloat16", triton_from=site)
    assert old.returncode != 0 and "requires .target sm_80" in old.stderr, old.stderr[-2000:]
