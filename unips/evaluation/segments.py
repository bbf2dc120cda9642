"""Segments in training ids (what the post-processor answers) as COCO panoptic segments (dataset ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unips.datasets.categories import CategoryMap


def dataset_segments(segments: Sequence[dict[str, Any]], categories: CategoryMap) -> list[dict[str, Any]]:
    """Replace each segment's ``train_id`` by the dataset's ``category_id`` and ``isthing``; the rest is kept."""
    converted = []
    for seg in segments:
        rest = {key: value for key, value in seg.items() if key != "train_id"}
        train_id = int(seg["train_id"])
        converted.append({"id": seg["id"], "category_id": categories.dataset_id(train_id),
                          "isthing": int(categories.is_thing(train_id)), **rest})
    return converted
