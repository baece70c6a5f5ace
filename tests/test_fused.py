"""The folded inference path computes the same function as the differentiable one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from loftup import LoftUp
from loftup.fastpath import encode_region
from loftup.fused import fold_batchnorm, fold_layernorm, fuse, winograd_available
from loftup.layers import image_minmax
from model_helpers import perturb

CONVS = ["direct"] + (["winograd"] if winograd_available("cpu") else [])
#: Direct convolutions agree to float32 rounding; Winograd's F(6x6, 3x3) rounds differently
#: (about 2e-5 here, well inside the 1e-4 parity bound with the paper's outputs).
TOL = {"direct": 1e-5, "winograd": 5e-5, "auto": 5e-5}

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturbed(model: LoftUp, seed: int = 0) -> LoftUp:
    """Every parameter and BatchNorm statistic moved away from its default."""
    return perturb(model, 0.1, seed)


def _differentiable(model, lr, image):
    """The plain path: what training runs (gradients on)."""
    with torch.enable_grad():
        lr = lr.clone().requires_grad_(True)
        assert not model.uses_fast_path(lr, image)
        return model(lr, image).detach()


def test_fold_batchnorm_equals_conv_then_batchnorm():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(5, 7, 3, padding=1), torch.nn.BatchNorm2d(7)
    with torch.no_grad():
        bn.running_mean.normal_(3.0, 2.0)
        bn.running_var.uniform_(0.1, 4.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(2, 5, 9, 11)
    w, b = fold_batchnorm(conv.weight, conv.bias, bn)
    with torch.no_grad():
        assert (F.conv2d(x, w, b, padding=1) - bn(conv(x))).abs().max() <= 1e-5


def test_fold_layernorm_equals_layernorm_then_linear():
    torch.manual_seed(0)
    norm, lin = torch.nn.LayerNorm(6), torch.nn.Linear(6, 4)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(10, 6)
    w, b = fold_layernorm(norm, lin.weight, lin.bias)
    with torch.no_grad():
        assert (F.linear(F.layer_norm(x, (6,)), w, b) - lin(norm(x))).abs().max() <= 1e-5


@pytest.mark.parametrize("coords", [True, False])
def test_fast_encoding_is_the_models_encoding_reordered(coords):
    model = _perturbed(LoftUp(dim=16, num_heads=2, coords=coords))
    image = torch.randn(1, 3, 12, 9)
    with torch.no_grad():
        raw = model.image_encoder  # the model's own encoding, then its stem's LayerNorm
        lo, hi = image_minmax(image)
        colour = (image - lo) / (hi - lo).clamp_min(1e-4) - 0.5
        x = colour
        if coords:
            ys, xs = torch.meshgrid(
                torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 9), indexing="ij"
            )
            x = torch.cat([torch.stack([ys, xs])[None], colour], dim=1)
        expected = model.stem.norm(torch.cat([raw(x), colour], dim=1))
        from loftup.fused import encoding_order

        order = encoding_order(raw.in_channels, raw.n_freqs, coords)
        fw = fuse(model, conv="direct")
        got = encode_region(fw, image, lo, hi, (0, 0), (12, 9))
    assert (got.permute(0, 3, 1, 2) - expected[:, order]).abs().max() <= 1e-5


@pytest.mark.parametrize("conv,align", [(c, None) for c in CONVS] + [("direct", 8)])
@pytest.mark.parametrize(
    "kwargs,lr_shape,img_shape",
    [
        ({}, (2, 32, 6, 5), (2, 3, 29, 23)),
        ({"coords": False, "depth": 1}, (1, 32, 4, 4), (1, 3, 16, 16)),
        ({"attention_window": 3}, (1, 32, 5, 6), (1, 3, 20, 17)),
        ({"mlp_dim": 24, "num_heads": 2}, (1, 32, 7, 3), (1, 3, 5, 40)),
    ],
)
def test_fast_path_equals_differentiable_path(conv, align, kwargs, lr_shape, img_shape):
    """align=8 is what a GPU runs (rows mean-padded to multiples of 8), checked here."""
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=32, **{"num_heads": 4, **kwargs}))
    model.conv, model.align = conv, align
    if align:
        fw = model.fused(torch.float32, conv, align)
        assert fw.width % align == 0 and fw.enc_padded % align == 0
        assert fw.width > fw.real_width and fw.enc_padded > fw.enc_width  # padding is tested
    lr, image = torch.randn(lr_shape), torch.randn(img_shape) * 2 + 0.5
    with torch.no_grad():
        assert model.uses_fast_path(lr, image)
        fast = model(lr, image)
    assert (fast - _differentiable(model, lr, image)).abs().max() <= TOL[conv]


@pytest.mark.parametrize("norm", ["blocks.1.norm_kv", "head.norm"])
def test_changed_layernorm_epsilons_are_used(norm):
    """Every block's keys and values come from one product only when their LN_kv agree; the
    head's LayerNorm epsilon is its module's (Head.forward's) on both paths, not a constant."""
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=32, num_heads=4))
    model.conv = "direct"
    lr, image = torch.randn(1, 32, 4, 5), torch.randn(1, 3, 13, 11)
    with torch.no_grad():
        assert model.fused(torch.float32, "direct").kv is not None
        before = model(lr, image)
        model.get_submodule(norm).eps = 0.5  # not a parameter: the cache must be told
        model._fused_cache = None
        assert (model.fused(torch.float32, "direct").kv is None) == (norm != "head.norm")
        fast = model(lr, image)
    assert (fast - before).abs().max() > 1e-3  # the epsilon matters here...
    assert (fast - _differentiable(model, lr, image)).abs().max() <= TOL["direct"]  # ...and is used


def test_folded_weights_follow_parameter_changes():
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2))
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        before = model(lr, image)
        model.stem.bn2.running_mean.add_(0.5)  # in place: the folded stem must be rebuilt
        model.blocks[0].ffn.fc2.bias.sub_(1.0)
        after = model(lr, image)
    assert (after - before).abs().max() > 1e-3
    assert (after - _differentiable(model, lr, image)).abs().max() <= TOL["auto"]
    # replaced, not changed in place: a new parameter, then a new submodule deep inside
    with torch.no_grad():
        bias = model.head.conv.bias
        model.head.conv.bias = torch.nn.Parameter(bias + torch.linspace(-1, 1, len(bias)))
        replaced = model(lr, image)
        assert (replaced - after).abs().max() > 1e-3
        conv = torch.nn.Conv2d(*model.stem.conv2.weight.shape[:2][::-1], 3, padding=1)
        model.stem.conv2 = conv
        swapped = model(lr, image)
        assert (swapped - replaced).abs().max() > 1e-3
    assert (swapped - _differentiable(model, lr, image)).abs().max() <= TOL["auto"]


@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_folded_weights_follow_a_fused_optimizer_step(optimizer):
    """A fused optimizer (fused=True) writes the parameters without counting the writes in
    their version counters: the folded weights are rebuilt after its steps all the same."""
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2))
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 9, 8)
    try:
        opt = getattr(torch.optim, optimizer)(model.parameters(), lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError) as e:  # older torch: no fused CPU kernels
        pytest.skip(f"no fused {optimizer} on the CPU in this torch: {e}")
    with torch.no_grad():
        before = model(lr, image)
    model(lr, image).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = model(lr, image)
    assert (after - before).abs().max() > 1e-3
    assert (after - _differentiable(model, lr, image)).abs().max() <= TOL["auto"]


def test_memoised_encodings_follow_the_weights_and_change_nothing():
    """Per-shape encodings are kept with the folded weights: a second call reuses them and
    computes the same output; new grid/image frequencies (new folded weights) are used."""
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2))
    model.tile_size = 8  # several tiles: several coordinate entries
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 20, 12)
    with torch.no_grad():
        first = model(lr, image)
        memo = model._fused_cache[1].memo
        assert any(k[0] == "grid" for k in memo) and sum(k[0] == "axes" for k in memo) > 1
        assert torch.equal(model(lr, image), first)
        # a process that has seen many shapes: emptied at 512 entries, then refilled
        from loftup.fastpath import memo as remember

        for i in range(520):
            remember(model._fused_cache[1], ("test", i), lambda: torch.zeros(1))
        assert len(memo) <= 512 and not any(k[0] == "grid" for k in memo)
        assert torch.equal(model(lr, image), first) and any(k[0] == "grid" for k in memo)
        model.grid_encoder.phases.add_(0.3)
        model.image_encoder.phases.add_(0.3)
        after = model(lr, image)
    assert model._fused_cache[1].memo is not memo
    assert (after - _differentiable(model, lr, image)).abs().max() <= TOL["auto"]


def test_a_model_is_copied_and_pickled_after_a_gpu_forward():
    """On a GPU the memo keeps, beside each entry, the CUDA event recorded after its making
    (loftup.memo.memo); copy.deepcopy(model) (the benches' precision copies, an EMA teacher)
    and pickle copied the folded weights with it and failed: "cannot pickle 'Event' object".
    Folded weights are copied without the memo; a copied model without them (it refolds), and
    computes the same output."""
    import copy
    import pickle
    import threading

    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2))
    lr, image = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 20, 12)
    with torch.no_grad():
        first = model(lr, image)
    fw = model._fused_cache[1]
    try:  # what memo() stores beside an entry made on a GPU: an event, which cannot be copied
        event = torch.Event(device="cpu")
    except (AttributeError, RuntimeError, TypeError):  # a torch without CPU events
        event = threading.Lock()
    fw.memo[("made", "x")] = event
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(fw.memo)
    for weights in (copy.deepcopy(fw), pickle.loads(pickle.dumps(fw))):
        assert weights.memo == {} and fw.memo[("made", "x")] is event
    # a copied model leaves the folded weights behind (the copy would refold them anyway)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied._fused_cache is None and model._fused_cache[1] is fw
        with torch.no_grad():
            assert torch.equal(copied(lr, image), first)


def test_threads_sharing_a_model_each_get_the_folded_weights_they_asked_for():
    """LoftUp.fused read its cache twice, before and after another thread could replace it:
    a thread folding float32 weights while another folded bfloat16 ones (under autocast, say)
    got the other's. The other thread is run here at that very moment, from inside the first
    one's cache lookup (an ``align`` that compares equal, as 1 does, and runs it first)."""
    import threading

    model = LoftUp(dim=8, num_heads=2, n_freqs=4).eval()
    fw32 = model.fused(torch.float32, "direct", 1)
    other = threading.Thread(target=lambda: model.fused(torch.bfloat16, "direct", 1))

    class SwitchingOne(int):
        def __eq__(self, value):
            if other.ident is None:  # once: the other thread's fold
                other.start()
                other.join()
            return int(self) == value

        __hash__ = int.__hash__

    got = model.fused(torch.float32, "direct", SwitchingOne(1))
    assert other.ident is not None and model._fused_cache[1].dtype == torch.bfloat16
    assert got is fw32 and got.dtype == torch.float32


def test_threads_reading_a_memo_entry_once_made_on_a_gpu_do_not_collide():
    """Two threads reading an entry whose making a GPU had finished both found its event done
    and both deleted it: the second a KeyError. The other thread reads it here at that very
    moment, from inside the first one's question to the event."""
    import threading

    from loftup.memo import memo

    fw = fuse(LoftUp(dim=8, num_heads=2, n_freqs=4).eval())
    key = ("test", 1)

    class DoneEvent:  # what memo() keeps beside an entry made on a GPU, its work done
        def query(self):
            if threading.current_thread() is threading.main_thread():
                reader = threading.Thread(target=memo, args=(fw, key, None))
                reader.start()
                reader.join()
            return True

    fw.memo[key], fw.memo[("made", key)] = "entry", DoneEvent()
    assert memo(fw, key, None) == "entry" and ("made", key) not in fw.memo


def test_a_thread_adding_to_a_full_memo_while_another_empties_it_does_not_collide():
    """A memo of 512 entries is emptied by the thread that adds the next one, which looked
    through every entry first: another thread adding one meanwhile failed it with "dictionary
    changed size during iteration". The other thread adds one here at that very moment."""
    import threading

    from loftup.memo import memo

    fw = fuse(LoftUp(dim=8, num_heads=2, n_freqs=4).eval())

    other = threading.Thread(target=memo, args=(fw, ("other",), lambda: torch.ones(1)))

    class AddsOneWhileRead(tuple):  # an entry of several tensors; reading it runs the other
        def __iter__(self):
            if other.ident is None:  # once (the other thread empties the full memo too)
                other.start()
                other.join()
            return super().__iter__()

    fw.memo.update({("test", i): torch.zeros(1) for i in range(511)})
    fw.memo[("test", 511)] = AddsOneWhileRead((torch.zeros(1),))
    assert torch.equal(memo(fw, ("new",), lambda: torch.full((1,), 2.0)), torch.full((1,), 2.0))
    assert list(fw.memo) == [("new",)]


def test_training_mode_takes_the_differentiable_path():
    model = LoftUp(dim=16, num_heads=2)
    lr, image = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 8, 8)
    assert not model.uses_fast_path(lr, image)  # train mode: BatchNorm uses batch statistics
    model.eval()
    assert not model.uses_fast_path(lr, image)  # gradients on and parameters need them
    with torch.no_grad():
        assert model.uses_fast_path(lr, image)
    model.requires_grad_(False)
    assert model.uses_fast_path(lr, image)
    assert not model.uses_fast_path(lr.requires_grad_(True), image)


def test_a_batchnorm_left_in_training_mode_takes_the_differentiable_path():
    """``model.eval()`` then one BatchNorm put back in training mode (as fine-tuning code
    does): batch statistics, as PyTorch computes them, not the folded running ones."""
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2))
    model.stem.bn2.train()
    lr, image = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert not model.uses_fast_path(lr, image)
        out = model(lr, image)
        model.stem.bn2.eval()
        folded = model(lr, image)
    model.stem.bn2.train()
    assert (out - _differentiable(model, lr, image)).abs().max() <= TOL["auto"]
    assert (out - folded).abs().max() > 0.1  # batch statistics differ from the running ones


def test_autocast_runs_the_fast_path_in_bf16():
    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=32, num_heads=4))
    lr, image = torch.randn(1, 32, 4, 4), torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        exact = model(lr, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(lr, image)
    assert half.dtype == torch.bfloat16
    dev = (half.float() - exact).abs()
    assert 0 < dev.mean().item() <= 0.02


@pytest.mark.filterwarnings("ignore:this CPU has no bfloat16")
def test_half_precision_attention_on_the_cpu_holds_bounded_logits(monkeypatch):
    """In half precision on the CPU the attention is computed by matrix products, whose
    logits (a chunk's pixels x heads x grid tokens) grew with the grid: 0.5 GB for 8192
    pixels against a 64 x 64 grid in bf16, gigabytes against a photo's own size. They are
    now made in pieces of PRODUCTS_ATTENTION_BYTES (here lowered to 64 KB: the whole logits
    of this 24 x 24 output against a 32 x 32 grid take 2.4 MB); the output is the same."""
    from torch.profiler import ProfilerActivity, profile

    import loftup.fastpath as fastpath

    torch.manual_seed(0)
    model = _perturbed(LoftUp(dim=16, num_heads=2, n_freqs=4)).to(torch.bfloat16)
    lr, image = torch.randn(1, 16, 32, 32).to(torch.bfloat16), torch.randn(1, 3, 24, 24)
    with torch.inference_mode():
        whole = model(lr, image)
        monkeypatch.setattr(fastpath, "PRODUCTS_ATTENTION_BYTES", 1 << 16, raising=False)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            pieces = model(lr, image)
    assert max(e.cpu_memory_usage for e in prof.events()) <= 1 << 19
    assert (pieces.float() - whole.float()).abs().max().item() <= 0.05  # bf16 rounding


@pytest.mark.parametrize("gelu", [False, True])
def test_bf16_linear_runs_on_every_cpu(gelu):
    """oneDNN's fused bf16 linear needs bf16 instructions (AVX-512 BF16 or AMX); on a CPU
    without them (AVX2 only) the fast path falls back to F.linear instead of failing."""
    from loftup.fastpath import linear

    torch.manual_seed(0)
    x, w, b = (t.bfloat16() for t in (torch.randn(5, 12), torch.randn(7, 12), torch.randn(7)))
    want = F.linear(x.float(), w.float(), b.float())
    want = F.gelu(want) if gelu else want
    got = linear(x, w, b, gelu=gelu)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max().item() <= 0.05 * want.abs().max().item()
