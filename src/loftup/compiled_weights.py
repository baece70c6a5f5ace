"""The folded weights of a compiled upsampler (:func:`loftup.compiled.compile_upsampler`),
folded again when the model's weights or attention window change, as plain tensors (the
compiler guards on inference tensors and on ``requires_grad``), and the check that its weights'
dtypes and devices are still those it was compiled for."""

from __future__ import annotations

import dataclasses
from itertools import chain

import torch

from .errors import UsageError
from .fused import FusedWeights
from .weight_changes import weights_key


class Folded:
    """``model``'s folded weights for its compiled function (``fw``), folded again when its
    weights or ``config.attention_window`` (carried by the folded weights) have changed since
    (:meth:`current`, read on each call, as the model's forward reads them), in the precision, stem
    convolutions and alignment chosen when it was compiled. A weight of another dtype or on
    another device is a UsageError: the compiled function's precision and device were chosen
    by the model's. Never inference tensors, in whichever mode they are folded (see
    :meth:`fold`)."""

    def __init__(self, model, dtype: torch.dtype, conv: str):
        self.model, self.dtype, self.conv, self.align = model, dtype, conv, model.align
        self.key, self.kinds = self.now(), _kinds(model)
        self.fw = self.fold()

    def now(self) -> tuple:
        """What changes when the folded weights would: the model's weights (each tensor's
        address, version, dtype, device) and its attention window, as the model's forward
        reads them (:meth:`loftup.model.LoftUp.fused`)."""
        return self.model.config.attention_window, weights_key(self.model)

    def fold(self) -> FusedWeights:
        """The model's folded weights as plain tensors, whatever they were: detached, as the
        compiler guards on ``requires_grad`` and the parameters that no folding changed are
        among them (``model.requires_grad_(False)`` since compiling, or ``(True)`` after a
        frozen model was compiled, compiled again), and no inference tensors, which it guards
        on too (weights folded in ``torch.inference_mode()``, the caller's or the model's own
        forward's in it, or weights made in it, after others or before them, compiled again)."""
        with torch.inference_mode(False), torch.no_grad():
            return _plain_weights(self.model.fused(self.dtype, self.conv, self.align))

    def current(self) -> FusedWeights:
        """The folded weights for this call: folded again where :meth:`now` differs from the
        last fold's (its weights' dtypes and devices checked first, :func:`_check_kinds`)."""
        key = self.now()
        if key != self.key:
            _check_kinds(self.kinds, _kinds(self.model))
            self.fw = self.fold()
            self.key = key
        return self.fw


def _plain_weights(x):
    """Folded weights ``x`` (:class:`FusedWeights`, its blocks, their tuples) with each tensor
    detached (a parameter) or copied (an inference tensor), the same numbers; a memo of their
    own (the field :data:`_MEMO`, emptied: its per-shape constants are remade)."""
    if isinstance(x, torch.Tensor):
        return x.clone() if x.is_inference() else x.detach()
    if isinstance(x, (tuple, list)):
        return type(x)(map(_plain_weights, x))
    if dataclasses.is_dataclass(x):
        plain = {n: _plain_weights(getattr(x, n)) for n in _fields(x)}
        memo = {_MEMO: {}} if any(f.name == _MEMO for f in dataclasses.fields(x)) else {}
        return dataclasses.replace(x, **plain, **memo)  # (its memo: its constants remade)
    return x


#: The field of :class:`FusedWeights` that memoises per-shape constants, not weights
_MEMO = "memo"


def _fields(x) -> list[str]:
    """The names of dataclass ``x``'s fields that hold weights: all but :data:`_MEMO`."""
    return [f.name for f in dataclasses.fields(x) if f.name != _MEMO]


def _kinds(model) -> dict:
    """Each parameter's and buffer's dtype and device, by name."""
    named = chain(model.named_parameters(), model.named_buffers())
    return {name: (t.dtype, t.device) for name, t in named}


def _check_kinds(then: dict, now: dict) -> None:
    """A UsageError naming the first weight whose dtype or device is not what it was."""
    for name, (dtype, device) in then.items():
        new_dtype, new_device = now.get(name, (dtype, device))
        if (new_dtype, new_device) != (dtype, device):
            was = f"{str(dtype).removeprefix('torch.')} on {device}"
            is_ = f"{str(new_dtype).removeprefix('torch.')} on {new_device}"
            raise UsageError(
                f"the model's {name} is {is_}, {was} when compile_upsampler folded its weights "
                "(model.to(...) since?): the compiled function computes in the precision and "
                "on the device chosen then; call compile_upsampler(model) again, or move the "
                "model back"
            )
