"""The step-indexed sampler: which images each process reads at each step of a training run
(:class:`StepSampler`), and the check that the processes can share the global batch."""

from __future__ import annotations

import torch

from ..errors import UsageError


def check_global_batch(global_batch: int, world: int, n: int | None = None) -> None:
    """A UsageError unless ``world`` processes can share the global batch equally and (where
    the number of images ``n`` is given) the data holds at least one batch."""
    if global_batch % world:
        raise UsageError(
            f"batch_size {global_batch} is not divisible by {world} processes; set batch_size "
            f"to a multiple of {world} (e.g. {-(-global_batch // world) * world}), the global "
            "batch that they share"
        )
    if n is not None and n < global_batch:
        most = f"{n} or fewer" if world == 1 else f"at most {n}, a multiple of {world}"
        raise UsageError(
            f"the dataset has {n} images, fewer than one batch of {global_batch}; lower "
            f"batch_size to {most}, or add images"
        )


class StepSampler(torch.utils.data.Sampler):
    """Yields, for each training step from ``start_step``, this rank's slice of the global batch.

    The order is a permutation of the dataset per epoch, seeded by ``(seed, epoch)``; a step is a
    window of ``global_batch`` consecutive items of it (the incomplete tail is dropped), and rank
    r of W takes the r-th of W equal parts. So the data position is the step number alone, and
    W processes see exactly the images one process would.
    """

    def __init__(
        self,
        n: int,
        *,
        global_batch: int,
        steps: int,
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        check_global_batch(global_batch, world, n)
        self.n, self.batch, self.steps, self.seed = n, global_batch, steps, seed
        self.start, self.rank, self.world = start_step, rank, world
        self.per_epoch = n // global_batch

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        local = self.batch // self.world
        order, epoch = None, -1
        for step in range(self.start, self.steps):
            if step // self.per_epoch != epoch:
                epoch = step // self.per_epoch
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = torch.randperm(self.n, generator=g)
            begin = (step % self.per_epoch) * self.batch + self.rank * local
            yield order[begin : begin + local].tolist()
