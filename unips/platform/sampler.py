"""An endless, sharded, resumable sampling order for iteration-based training.

Training is counted in iterations, not epochs (as in detectron2): every rank draws
from an endless stream of indices. Epoch ``e`` is a permutation seeded by
``(seed, e)``, padded to a multiple of the world size and dealt round-robin to the
ranks, so ranks see disjoint images and the order is a pure function of
``(seed, rank, position)``: a run resumed at iteration ``k`` starts exactly where the
interrupted run would have been, without replaying the data before it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class InfiniteShardedSampler(Sampler[int]):
    """Indices of ``size`` items for ``rank`` of ``world_size``, from position ``start`` of its stream."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = -(-size // world_size)  # ceil: each rank's share of an epoch

    def _epoch(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=generator)
        padded = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            yield from self._epoch(epoch)[offset:].tolist()
            epoch, offset = epoch + 1, 0
