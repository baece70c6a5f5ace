"""loftup.upsample and load_pipeline: what they check, and how often."""

from __future__ import annotations

import pytest
import torch

import loftup
import loftup.api
import loftup.pipeline


def _save(folder, seed: int) -> None:
    """A random upsampler for the tiny backbone in ``folder``."""
    torch.manual_seed(seed)
    loftup.LoftUp(dim=32).save_pretrained(folder, backbone="dinov2_tiny")


@pytest.fixture
def image():
    return torch.rand(3, 30, 40, generator=torch.Generator().manual_seed(0))


def test_the_device_is_resolved_once_per_call(tmp_path, image, monkeypatch):
    """upsample and load_pipeline check the device once at their boundary; the loaders under
    them (the upsampler's, the backbone's) are given it resolved (it was asked up to 4 times)."""
    folder = tmp_path / "up"
    _save(folder, 0)
    calls = []
    real = loftup.api.resolve_device

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for module in (loftup.api, loftup.pipeline):  # every name the callers look it up by
        monkeypatch.setattr(module, "resolve_device", counted)
    loftup.load_pipeline(folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]
    calls.clear()
    loftup.upsample(image, model=folder, backbone_size=28, device="cpu")
    assert calls == [("cpu",)]
