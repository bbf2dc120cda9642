"""Stuff trimming removes small stuff segments only."""

from __future__ import annotations

import numpy as np

from unips.evaluation.trim import trim_small_stuff


def test_small_stuff_becomes_void_and_things_and_large_stuff_stay() -> None:
    panoptic = np.zeros((10, 10), dtype=np.int64)
    panoptic[:5] = 7000  # stuff, 50 px
    panoptic[5:7, :2] = 9000  # stuff, 4 px: trimmed
    panoptic[8:, :1] = 1001  # thing, 2 px: kept although small
    panoptic[5, 2:7] = 11000  # stuff, 5 px = exactly the limit: kept
    segments = [{"id": 7000, "category_id": 7}, {"id": 9000, "category_id": 9},
                {"id": 1001, "category_id": 1}, {"id": 11000, "category_id": 11}]
    trimmed, kept = trim_small_stuff(panoptic, segments, thing_category_ids={1, 2, 3}, area_limit=5)
    assert [s["id"] for s in kept] == [7000, 1001, 11000]
    assert (trimmed[5:7, :2] == 0).all() and (trimmed[5, 2:7] == 11000).all()
    assert (trimmed[:5] == 7000).all() and (trimmed[8:, :1] == 1001).all()
    assert (panoptic[5:7, :2] == 9000).all(), "the input map is left untouched"
    same, all_kept = trim_small_stuff(panoptic, segments, thing_category_ids={1}, area_limit=4)
    assert len(all_kept) == 4 and np.array_equal(same, panoptic)
