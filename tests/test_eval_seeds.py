"""Probe seeds are independent draws: no two seeds share an epoch's order of the images."""

import torch

from loftup.eval import EvalConfig
from loftup.eval.pipeline import make_loader
from loftup.eval.probe import _tensor_batches

N, EPOCHS, SEEDS = 16, 4, 3


def _orders(batches_of_epoch) -> dict:
    """{(seed, epoch): the order of the items} of ``batches_of_epoch(seed, epoch)``."""
    return {
        (seed, epoch): torch.cat(list(batches_of_epoch(seed, epoch))).tolist()
        for seed in range(SEEDS)
        for epoch in range(EPOCHS)
    }


def _assert_no_order_shared_across_seeds(orders: dict) -> None:
    for (seed, epoch), order in orders.items():
        for (other, other_epoch), other_order in orders.items():
            if other != seed:  # seed s, epoch e + 1 was seed s + 1, epoch e (seed + epoch)
                assert order != other_order, (seed, epoch, other, other_epoch)


def test_in_memory_probe_seeds_share_no_epoch_order():
    items = torch.arange(N)

    def orders(seed, epoch):
        batches, _ = _tensor_batches(items[:, None], items, N, seed, None)
        return (y for _, y in batches(epoch))

    found = _orders(orders)
    _assert_no_order_shared_across_seeds(found)
    assert found == _orders(orders)  # and each seed's orders are the same on every run


def test_dataset_probe_seeds_share_no_epoch_order():
    def orders(seed, epoch):
        cfg = EvalConfig("seg", "voc", ".", "dinov2_tiny", "bilinear", batch_size=N, seed=seed)
        return make_loader(list(range(N)), cfg, shuffle=True, epoch=epoch)

    found = _orders(orders)
    _assert_no_order_shared_across_seeds(found)
    assert found == _orders(orders)
