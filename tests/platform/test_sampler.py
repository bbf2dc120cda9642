"""The endless sharded order: disjoint shards, every item each epoch, exact resumption."""

from __future__ import annotations

from itertools import islice

from unips.platform.sampler import InfiniteShardedSampler


def _take(sampler: InfiniteShardedSampler, n: int) -> list[int]:
    return list(islice(iter(sampler), n))


def test_ranks_share_out_each_epoch() -> None:
    size, world = 10, 3
    per_rank = 4  # ceil(10 / 3): two items of each epoch are dealt twice, as DistributedSampler pads
    shards = [_take(InfiniteShardedSampler(size, seed=5, rank=r, world_size=world), per_rank) for r in range(world)]
    together = sorted(i for shard in shards for i in shard)
    assert set(together) == set(range(size)) and len(together) == world * per_rank


def test_epochs_are_new_permutations_and_the_order_repeats_for_a_seed() -> None:
    first = _take(InfiniteShardedSampler(20, seed=1), 40)
    assert sorted(first[:20]) == sorted(first[20:]) == list(range(20)) and first[:20] != first[20:]
    assert first == _take(InfiniteShardedSampler(20, seed=1), 40)
    assert first != _take(InfiniteShardedSampler(20, seed=2), 40)


def test_a_resumed_stream_continues_exactly_where_it_stopped() -> None:
    full = _take(InfiniteShardedSampler(17, seed=3, rank=1, world_size=2), 60)
    for start in (0, 5, 9, 23):
        resumed = _take(InfiniteShardedSampler(17, seed=3, rank=1, world_size=2, start=start), 60 - start)
        assert resumed == full[start:]
