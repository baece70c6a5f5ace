"""A compiled upsampler (:func:`loftup.compiled.compile_upsampler`) and the model's weights
changed after it was made, and the inputs it compiled again for: the graphs are run as
traced (no inductor; tests/test_compiled.py runs it), since whether the compiler is asked
again, and with which weights the graph computes, is what these check."""

from __future__ import annotations

import pytest
import torch

from loftup import LoftUp, LoftUpError
from loftup.compiled import compile_upsampler
from loftup.errors import UsageError
from model_helpers import counted_compiles, perturb

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int) -> LoftUp:
    torch.manual_seed(0)
    return perturb(LoftUp(dim=16, num_heads=2, n_freqs=4, depth=1), seed=seed)


def _inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 16, 5, 5, generator=g), torch.rand(2, 3, 30, 26, generator=g)


@pytest.fixture
def graphs(monkeypatch):
    return counted_compiles(monkeypatch)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The compiled function's output and the model's as the same numbers: to rounding (torch
    2.4 traces some products in another order than its eager forward computes them)."""
    return a.shape == b.shape and (a - b).abs().max().item() <= 1e-5


def _models_output(model, lr, image):
    with torch.inference_mode():
        return model(lr, image)


def test_a_compiled_upsampler_computes_with_the_weights_the_model_has_now(graphs):
    """It kept the weights folded when it was made: after ``load_state_dict`` or a weight
    changed in place under ``torch.no_grad()``, it went on computing the old model's output
    without a word. Each change is folded again, and the graph compiled once computes with
    it (the weights are its inputs): no compile again."""
    model, other = _model(seed=1), _model(seed=2)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    compiled = len(graphs)
    assert compiled and (first - _models_output(model, lr, image)).abs().max().item() <= 1e-5
    model.load_state_dict(other.state_dict())
    loaded = fn(lr, image)
    assert (loaded - _models_output(model, lr, image)).abs().max().item() <= 1e-5
    assert (loaded - first).abs().max().item() > 1e-2
    with torch.no_grad():
        model.norm.weight.add_(1.0)
    moved = fn(lr, image)
    assert (moved - _models_output(model, lr, image)).abs().max().item() <= 1e-5
    assert (moved - loaded).abs().max().item() > 1e-2
    assert len(graphs) == compiled
    assert torch.equal(fn(lr, image), moved)  # unchanged since: the same weights


def test_a_weight_moved_to_another_dtype_or_device_says_to_compile_again(monkeypatch):
    """``model.to(torch.bfloat16)`` or ``model.to(device)`` after compiling: the function's
    precision and device were chosen by the model's then; it computed with the old weights.
    The compiler is left out (an identity): what the call says is what this checks."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    lr, image = _inputs()
    for to, now in [(torch.bfloat16, "bfloat16 on cpu"), ("meta", "float32 on meta")]:
        model = _model(seed=1)
        fn = compile_upsampler(model)
        fn(lr, image)
        model.to(to)
        with pytest.raises(LoftUpError) as e:
            fn(lr, image)
        said = str(e.value)
        assert said.startswith("the model's ") and f" is {now}, float32 on cpu when " in said
        assert said.endswith("; call compile_upsampler(model) again, or move the model back")
    model = _model(seed=1).to(torch.bfloat16)  # compiled again: its output is the model's
    out = compile_upsampler(model)(lr, image)
    assert (out.float() - _models_output(model, lr, image).float()).abs().max().item() <= 1e-5


def test_inputs_that_need_a_gradient_or_of_another_layout_compile_once(graphs):
    """An input with ``requires_grad=True`` (2 s), a channels-last image (4.5 s) or a
    sliced batch each compiled again, for the same numbers: they are taken detached and
    contiguous."""
    model = _model(seed=1)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    compiled = len(graphs)
    wide = torch.cat([lr, lr], dim=1)[:, :16]  # a view of other strides
    for args in [
        (lr.clone().requires_grad_(), image),
        (lr, image.contiguous(memory_format=torch.channels_last)),
        (wide, image.clone().requires_grad_()),
    ]:
        out = fn(*args)
        assert torch.equal(out, first) and not out.requires_grad
    assert len(graphs) == compiled


@pytest.mark.parametrize("train", ["", "stem.bn1"], ids=["model", "bn1"])
def test_a_model_put_back_in_training_mode_is_refused_by_its_compiled_function(monkeypatch, train):
    """``model.train()`` after compiling (its stem's BatchNorm alone, too): the function went
    on computing eval mode's output, by the running statistics, without a word, where the
    model itself normalises by the batch's. Each call says so, and what to do; back in eval
    mode it computes the model's output again. The compiler is left out (an identity)."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    model = _model(seed=1)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    model.get_submodule(train).train()
    for _ in range(2):  # every call, not the first alone
        with pytest.raises(UsageError) as e:
            fn(lr, image)
        said = str(e.value)
        assert said == (
            "the function compile_upsampler made computes the model as in eval mode, and this "
            "one is in training mode (its output differs there); call model.eval() first, or, "
            "to train, call the model itself, model(lr_feats, image)"
        )
    model.eval()
    assert torch.equal(fn(lr, image), first)


def test_a_compiled_upsampler_follows_the_models_attention_window(graphs):
    """``model.config.attention_window`` set after compiling changes no weight, and the model's
    forward follows it (its folded weights carry it); the compiled function kept the window
    folded when it was made, and computed global attention where the model's was local."""
    model = _model(seed=1)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    model.config.attention_window = 3  # over 3 x 3 of the 5 x 5 tokens
    local = fn(lr, image)
    assert _close(local, _models_output(model, lr, image))
    assert (local - first).abs().max().item() > 1e-2
    model.config.attention_window = None
    assert torch.equal(fn(lr, image), first)


def test_weights_folded_in_inference_mode_or_not_are_used_without_compiling_again(graphs):
    """The compiler guards on inference tensors given: weights folded again in the caller's
    ``torch.inference_mode()`` (or folded first by the model's own forward in it) compiled
    again (minutes on a CPU) where the fold before was not one of those, or the other way;
    each change is now used by the graph compiled once, with the model's output."""
    model, other = _model(seed=1), _model(seed=2)
    lr, image = _inputs()
    expected = _models_output(model, lr, image)  # its weights folded in inference mode
    fn = compile_upsampler(model)
    assert _close(fn(lr, image), expected)
    compiled = len(graphs)
    model.load_state_dict(other.state_dict())  # folded again outside inference mode
    assert _close(fn(lr, image), _models_output(model, lr, image))
    with torch.no_grad():
        model.norm.weight.add_(1.0)
    with torch.inference_mode():  # and again in it, the caller's
        moved = fn(lr, image)
    assert _close(moved, _models_output(model, lr, image))
    assert len(graphs) == compiled


def test_a_model_frozen_after_compiling_is_not_compiled_again(graphs):
    """``model.requires_grad_(False)`` (an upsampler frozen under a probe) changes no weight,
    but parameters that no folding changed are among the folded weights, and the compiler
    guards on ``requires_grad``: it compiled again (minutes on a CPU). They are detached."""
    model = _model(seed=1)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    compiled = len(graphs)
    model.requires_grad_(False)
    assert torch.equal(fn(lr, image), first)
    model.requires_grad_(True)
    assert torch.equal(fn(lr, image), first) and len(graphs) == compiled


def test_a_model_unfrozen_or_changed_frozen_after_compiling_is_not_compiled_again(graphs):
    """The other orders: compiled frozen (``requires_grad_(False)``, as under a probe), then
    unfrozen (fine-tuned with its BatchNorm kept in eval mode); or compiled, then frozen and
    a weight changed. The folded weights were the frozen parameters themselves, not detached
    (none needed a gradient then), so the compiler's guard on ``requires_grad`` saw them
    change, or differ from the detached ones before, and compiled again."""
    model = _model(seed=1).requires_grad_(False)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    first = fn(lr, image)
    compiled = len(graphs)
    model.requires_grad_(True)
    assert torch.equal(fn(lr, image), first) and len(graphs) == compiled
    model = _model(seed=1)
    fn = compile_upsampler(model)
    fn(lr, image)
    model.requires_grad_(False)
    with torch.no_grad():
        model.norm.weight.add_(1.0)
    assert _close(fn(lr, image), _models_output(model, lr, image))
    assert len(graphs) == compiled


def test_a_fused_optimizer_of_another_module_folds_nothing_again(monkeypatch):
    """A step of any optimizer with ``fused=True`` in the process changed every model's weights
    key: a probe trained with a fused AdamW on the compiled function's output had the upsampler
    fold its weights again on every call (10 to 25 ms for dim 384 on a CPU). The probe's steps
    change the probe's weights alone; a fused step of the model's own is still followed. The
    compiler is left out (an identity): when the weights are folded is what this checks."""
    from loftup.compiled_weights import Folded

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    folds = []
    real = Folded.fold
    monkeypatch.setattr(Folded, "fold", lambda self: folds.append(1) or real(self))
    model = _model(seed=1)
    lr, image = _inputs()
    fn = compile_upsampler(model)
    probe = torch.nn.Conv2d(16, 2, 1)
    try:
        opt = torch.optim.AdamW(probe.parameters(), lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError) as e:  # older torch: no fused CPU kernels
        pytest.skip(f"no fused AdamW on the CPU in this torch: {e}")
    first = fn(lr, image)
    for _ in range(3):
        probe(fn(lr, image)).square().mean().backward()
        opt.step()
    assert len(folds) == 1  # when compiled, not again
    own = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    own.step()
    moved = fn(lr, image)
    assert len(folds) == 2 and (moved - first).abs().max().item() > 1e-2
    assert (moved - _models_output(model, lr, image)).abs().max().item() <= 1e-5


def test_a_fused_step_is_counted_where_torch_takes_one_tensor_at_a_time(monkeypatch):
    """torch 2.4's increment_version takes one tensor (a list is a RuntimeError there), and
    none made in inference mode: the step hook counts each stepped parameter all the same."""
    import loftup.weight_changes as changes

    real = changes.increment_version

    def one_at_a_time(t):
        if not isinstance(t, torch.Tensor):
            raise RuntimeError("increment_version expect a Tensor as input")
        assert not t.is_inference()  # 2.4 would refuse it
        real(t)

    monkeypatch.setattr(changes, "increment_version", one_at_a_time)
    stepped, left = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    with torch.inference_mode():
        made_there = torch.ones(2)
    opt = torch.optim.SGD([{"params": [stepped, made_there], "fused": True}, {"params": [left]}])
    changes._count_fused_step(opt, (), {})
    assert (stepped._version, left._version) == (1, 0)
