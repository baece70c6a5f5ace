"""loftup.compiled on the CPU: the untiled forward that CUDA graphs and torch.compile capture,
torch.compile itself (the inductor's C++ backend); frames in batches are
test_compiled_frames.py's. These functions are the GPU's small-output path; here they are
checked against the model's own forward so that a mistake in them shows up without a GPU
(tests/test_cuda.py checks the graphs on one)."""

from __future__ import annotations

import shutil

import pytest
import torch

from loftup import LoftUp
from loftup.compiled import (
    compile_upsampler,
    graph_upsampler,
    untiled,
    untiled_decode,
    untiled_queries,
)
from model_helpers import counted_compiles, perturb

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return perturb(LoftUp(dim=16, num_heads=2, n_freqs=4))


def _inputs(batch=2, height=30, width=26, grid=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 16, grid, grid, generator=g),
        torch.rand(batch, 3, height, width, generator=g),
    )


@pytest.mark.parametrize("chunk", [10**6, 97], ids=["whole", "chunked"])
def test_untiled_forward_is_the_models(small, chunk):
    """What a graph or the compiler captures: one whole-image pass (decoded at once, or in
    chunks of pixels that do not divide the image) gives the model's output, and so do its
    two halves (the image's queries, then the rest)."""
    lr, image = _inputs()
    with torch.inference_mode():
        ref = small(lr, image)
        fw = small.fused(torch.float32, small.conv, small.align)
        whole = untiled(fw, lr, image, chunk)
        halves = untiled_decode(fw, lr, untiled_queries(fw, image), image.shape, chunk)
    assert whole.shape == ref.shape == (2, 16, 30, 26)
    assert (whole - ref).abs().max().item() <= 1e-5
    assert torch.equal(halves, whole)
    # each image of the batch is its own: the second image's output moves with its input
    with torch.inference_mode():
        other = untiled(fw, lr, torch.cat([image[:1], image[1:].flip(-1)]), chunk)
    assert torch.equal(other[0], whole[0])
    assert (other[1] - whole[1]).abs().max().item() > 1e-2


@pytest.mark.parametrize("chunk", [10**6, 97], ids=["whole", "chunked"])
def test_untiled_forward_keeps_a_models_local_attention(chunk):
    """What graphs and the compiler capture attends locally when the model does (it once
    attended globally, whatever the model's window): the differentiable steps' output."""
    torch.manual_seed(0)
    model = perturb(LoftUp(dim=16, num_heads=2, n_freqs=4, attention_window=3))
    lr, image = _inputs(grid=7)
    steps = model(lr.requires_grad_(), image).detach()  # the differentiable steps
    lr = lr.detach()
    with torch.inference_mode():
        tiled = model(lr, image)  # the folded weights, in tiles
        fw = model.fused(torch.float32, model.conv, model.align)
        out = untiled(fw, lr, image, chunk)
    assert (out - tiled).abs().max().item() <= 1e-5
    assert (out - steps).abs().max().item() <= 1e-4


# 25-40 s with an empty compile cache (CI's): slow; what compile_upsampler hands the compiler
# and computes with, the weights changed since included, in the default suite (its graphs
# run as traced, no inductor): test_compiled_weights.py::test_a_compiled_upsampler_computes_
# with_the_weights_the_model_has_now
@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_upsampler_computes_the_models_output():
    """torch.compile of the inference path (its CPU mode; CUDA graphs on a GPU), with pixels
    decoded in chunks; a later change of the weights reaches it, as it reaches the model (it
    kept the weights folded when it was made). One block and two chunks (the second a partial
    one): the compiler unrolls both loops (two blocks and four chunks took a quarter longer to
    compile, with an empty cache)."""
    torch.manual_seed(0)
    small = perturb(LoftUp(dim=16, num_heads=2, n_freqs=4, depth=1))
    lr, image = _inputs()
    fn = compile_upsampler(small, chunk_size=450)  # of 30 x 26 = 780 pixels
    with torch.inference_mode():
        ref = small(lr, image)
    out = fn(lr, image)
    assert out.shape == ref.shape and not out.is_inference()  # as the model's own outside it
    assert (out - ref).abs().max().item() <= 1e-5
    with torch.no_grad():
        small.norm.weight.add_(1.0)  # the model moves on, and so does the compiled function
    with torch.inference_mode():
        moved = small(lr, image)
    assert (fn(lr, image) - moved).abs().max().item() <= 1e-5
    assert (moved - out).abs().max().item() > 1e-2


def test_a_compiled_upsampler_folds_with_the_models_settings(small, monkeypatch):
    """compile_upsampler folded Winograd and decoded the device's chunks whatever the model's
    conv and chunk_size said (as its forward and graph_upsampler read them), so it computed
    other numbers than model(lr_feats, image). The compiler itself is left out here (an
    identity): which function it is given is what this checks."""
    import loftup.compiled as compiled

    seen = []
    real = compiled.untiled
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(compiled, "untiled", lambda *a: seen.append(a[-1]) or real(*a))
    lr, image = _inputs()
    small.conv, small.chunk_size = "direct", 97
    try:
        with torch.inference_mode():
            ref = small(lr, image)
            out = compile_upsampler(small)(lr, image)
            direct = real(small.fused(torch.float32, "direct", small.align), lr, image, 97)
    finally:
        small.conv, small.chunk_size = "auto", None
    assert seen == [97] and torch.equal(out, direct)
    assert (out - ref).abs().max().item() <= 5e-6  # Winograd's stem was 3e-5 away


def test_a_compiled_upsamplers_output_is_a_plain_tensor(small, monkeypatch):
    """compile_upsampler's function returned inference tensors, unlike the model, a pipeline or
    upsample: features normalised in place raised "Inplace update to inference tensor outside
    InferenceMode", and a probe trained on them could not save them for its backward. The
    compiler is left out (an identity): the mode it is called in is what this checks."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    lr, image = _inputs()
    out = compile_upsampler(small)(lr, image)
    assert not out.is_inference() and not out.requires_grad
    out.div_(out.norm(dim=1, keepdim=True))  # in place, as a user normalises features
    probe = torch.nn.Conv2d(16, 2, 1)
    probe(out).sum().backward()  # saved for a backward
    assert probe.weight.grad is not None


def test_a_compiled_upsampler_compiles_once_in_or_out_of_inference_mode(small, monkeypatch):
    """compile_upsampler's function called plainly, then in the caller's torch.inference_mode()
    or with inference tensors (a backbone's output made in it), compiled again for each: the
    compiler guards on the mode and on the tensors' kind (on the CPU, a real model's compile
    takes minutes). One compile serves them all, and each output is the model's. The graphs
    are run as traced (no inductor): how often the compiler is asked is what this checks."""
    graphs = counted_compiles(monkeypatch)
    lr, image = _inputs()
    with torch.inference_mode():
        ref = small(lr, image)
        inference = lr.clone(), image.clone()
    fn = compile_upsampler(small)
    first = fn(lr, image)
    compiled = len(graphs)
    for mode, args in [(torch.inference_mode, (lr, image)), (torch.inference_mode, inference),
                       (torch.no_grad, inference), (torch.enable_grad, (lr, image))]:  # fmt: skip
        with mode():
            out = fn(*args)
        assert len(graphs) == compiled, (mode.__name__, args[0].is_inference())
        assert torch.equal(out, first) and not out.is_inference() and not out.requires_grad
    assert compiled and (first - ref).abs().max().item() <= 1e-5


def test_a_compiled_upsampler_takes_a_precision_by_name(small, monkeypatch):
    """dtype="bfloat16", as every other function takes it, was "Invalid device string:
    'bfloat16'" from deep inside the folding. The compiler is left out (an identity): the
    weights it is given are what this checks."""
    from loftup import LoftUpError

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    lr, image = _inputs()
    with torch.inference_mode():
        want = compile_upsampler(small, dtype=torch.bfloat16)(lr, image)
    assert want.dtype == torch.bfloat16
    for name in ("bfloat16", "bf16"):
        assert torch.equal(compile_upsampler(small, dtype=name)(lr, image), want)
    with pytest.raises(LoftUpError, match=r"^unknown precision torch\.int8; choose one of"):
        compile_upsampler(small, dtype=torch.int8)


def test_a_compiled_upsampler_for_another_device_or_of_a_training_model_is_refused(small):
    """device= another than the model's was taken as "where it will run", but the weights
    were folded where they were, and every call on that device failed naming the model's;
    a model in training mode was compiled as in eval mode. Both are named at once."""
    from loftup import LoftUpError

    with pytest.raises(LoftUpError, match=r"device='meta'\) for a model on cpu: .*model\.to\("):
        compile_upsampler(small, device="meta")
    compile_upsampler(small, device="cpu:0")  # the CPU by another name: the model's own
    # device=0, the first GPU, was taken for "the model's" (falsy): a CPU model compiled for
    # the CPU. Refused as any other device; without a GPU torch 2.5+ has no device 0 (its
    # RuntimeError was the traceback), and "gpu" no name: refused in the same words
    cuda0 = r"^compile_upsampler\(device=(0|'cuda:0')\) for a model on cpu: .*leave out device="
    with pytest.raises(LoftUpError, match=cuda0):
        compile_upsampler(small, device=0)
    with pytest.raises(LoftUpError, match=r"device='gpu'\) for a model on cpu: torch names no"):
        compile_upsampler(small, device="gpu")
    small.train()
    try:
        with pytest.raises(LoftUpError, match=r"training mode .*; call model\.eval\(\) first$"):
            compile_upsampler(small)
    finally:
        small.eval()


def test_a_compiled_upsampler_names_bad_inputs_before_compiling(small):
    """Features of another width or on another device than the folded weights failed inside
    the compiler, after seconds of tracing, with "RuntimeError when making fake tensor call";
    they are named as model() names them, before anything is compiled."""
    from loftup import LoftUpError

    fn = compile_upsampler(small)
    lr, image = _inputs()
    with pytest.raises(LoftUpError, match="lr_feats has 15 channels but this upsampler expects"):
        fn(lr[:, 1:], image)
    with pytest.raises(LoftUpError, match=r"^image is on meta, the upsampler on cpu; move"):
        fn(lr, image.to("meta"))


class _Replayed:
    """A CPU stand-in for a captured CUDA graph: a replay computes ``fn`` of the static inputs
    into the static output, writing memory as a GPU replay does (no autograd or inference-mode
    checks)."""

    def __init__(self, out, fn):
        self.out, self.fn = out, fn

    def replay(self):
        with torch.inference_mode():
            self.out.copy_(self.fn())


def test_a_graph_made_under_inference_mode_is_called_outside_it(small):
    """graph_upsampler under ``torch.inference_mode`` makes its static inputs inference tensors;
    called outside it (the README's ``fn(lr_feats, image)``), copying the new inputs into them
    raised "Inplace update to inference tensor outside InferenceMode". The whole forward and its
    halves, each replay here a stand-in that computes what the graph captured."""
    from loftup.compiled import GraphUpsampler

    lr, image = _inputs()
    chunk = 10**6
    with torch.inference_mode():  # what graph_upsampler holds when made in inference mode
        fw = small.fused(torch.float32, small.conv, small.align)
        static_lr, static_image = lr.clone(), image.clone()
        out = untiled(fw, static_lr, static_image, chunk)
        tokens = untiled_queries(fw, static_image)
        half_out = untiled_decode(fw, static_lr, tokens.clone(), image.shape, chunk)
    graph = _Replayed(out, lambda: untiled(fw, static_lr, static_image, chunk))
    fn = GraphUpsampler(fw, static_lr, static_image, out, graph, chunk)
    fn._halves.update(  # as _capture_halves would have captured them (a GPU step)
        stem=_Replayed(tokens, lambda: untiled_queries(fw, static_image)),
        decode=_Replayed(
            half_out, lambda: untiled_decode(fw, static_lr, tokens.clone(), image.shape, chunk)
        ),
        tokens=tokens,
        out=half_out,
    )
    lr2, image2 = lr.flip(-1), image.flip(-2)
    with torch.inference_mode():
        want = small(lr2, image2)
    got = fn(lr2, image2).clone()
    halves = fn.start(image2).finish(lr2)
    assert (got - want).abs().max().item() <= 1e-5
    assert (halves - want).abs().max().item() <= 1e-5


def test_cuda_graphs_refuse_cpu_tensors_with_the_reason(small):
    lr, image = _inputs()
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        graph_upsampler(small, lr, image)
    # inputs on another device than the model are named first, as model() names them (a CPU
    # model given CUDA inputs failed inside the capture)
    with pytest.raises(ValueError, match=r"^lr_feats is on meta, the upsampler on cpu; move"):
        graph_upsampler(small, lr.to("meta"), image)


def test_a_cuda_graph_of_a_training_model_is_refused(small):
    """graph_upsampler folded the running statistics of a model in training mode, so its graph
    computed the eval-mode output where the model computes the batch's, without a word (as
    compile_upsampler did before it refused). Refused before the inputs' device is looked at."""
    from loftup import LoftUpError

    small.train()
    try:
        with pytest.raises(
            LoftUpError, match=r"^graph_upsampler computes .* model\.eval\(\) first$"
        ):
            graph_upsampler(small, *_inputs())
    finally:
        small.eval()


def test_a_compiled_upsampler_gives_an_empty_batch_an_empty_output(small, monkeypatch):
    """A batch of no images (the last of a filtered list) is an empty output from the model;
    the compiled function raised "torch.cat(): expected a non-empty list of Tensors" from its
    stem's convolution. The compiler is left out (an identity): what the call gives is what
    this checks."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    lr, image = _inputs(batch=0)
    fn = compile_upsampler(small)
    out = fn(lr, image)
    assert out.shape == small(lr, image).shape == (0, 16, 30, 26)
    assert out.dtype == torch.float32
    with torch.inference_mode():  # a plain tensor, as its other outputs
        assert not fn(lr, image).is_inference()
    half = compile_upsampler(small, dtype=torch.bfloat16)(lr, image)
    assert half.shape == out.shape and half.dtype == torch.bfloat16  # as its other outputs


def test_a_chunk_size_of_zero_is_refused_as_the_model_refuses_it(small):
    """chunk_size=0 (or a model's chunk_size of 0) was taken for "the device's default" by
    compile_upsampler, and any model.chunk_size went unchecked into graph_upsampler's capture,
    where the model's forward and upsample refuse them, naming the setting."""
    from loftup import LoftUpError

    words = r"^chunk_size must be a whole number >= 1, or None for the device's default; got "
    with pytest.raises(LoftUpError, match=words + "0 "):
        compile_upsampler(small, chunk_size=0)
    for bad in (0, 2.5):
        small.chunk_size = bad
        try:
            with pytest.raises(LoftUpError, match=words + repr(bad)):
                compile_upsampler(small)
            with pytest.raises(LoftUpError, match=words + repr(bad)):  # before the CUDA check
                graph_upsampler(small, *_inputs())
        finally:
            small.chunk_size = None
