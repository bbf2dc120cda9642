"""Training targets derived from a panoptic id map and its segments.

Everything (semantic map, thing boxes / masks, crowd mask) is computed from the
id map itself, so targets stay consistent with it after any geometric
augmentation, and instances cropped away simply disappear.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from unips.datasets.categories import IGNORE_INDEX, CategoryMap
from unips.datasets.panoptic_format import mask_bbox_xywh


class _Thing(NamedTuple):
    mask: np.ndarray  # (H, W) bool
    box: list[float]  # x1, y1, x2, y2
    train_id: int
    segment_id: int


def _thing_tensors(things: list[_Thing], height: int, width: int) -> dict[str, torch.Tensor]:
    """``boxes`` ``(N, 4)``, ``labels`` ``(N,)``, ``masks`` ``(N, H, W)`` uint8 and ``instance_ids`` ``(N,)``."""
    masks = (torch.from_numpy(np.stack([t.mask for t in things]).astype(np.uint8)) if things
             else torch.zeros((0, height, width), dtype=torch.uint8))
    return {
        "boxes": torch.tensor([t.box for t in things], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([t.train_id for t in things], dtype=torch.int64),
        "masks": masks,
        "instance_ids": torch.tensor([t.segment_id for t in things], dtype=torch.int64),
    }


def panoptic_targets(
    panoptic: np.ndarray, segments_info: list[dict[str, Any]], categories: CategoryMap
) -> dict[str, Any]:
    """Build per-image targets from a panoptic id map.

    Args:
        panoptic: ``(H, W)`` integer segment ids, 0 = void.
        segments_info: the image's COCO panoptic segments (``id``, ``category_id``, ``iscrowd``).
        categories: dataset category ids -> contiguous training ids.

    Returns:
        ``semantic`` ``(H, W)`` int64 training ids, 255 for void (crowd pixels keep their class);
        ``boxes`` ``(N, 4)`` float32 ``x1, y1, x2, y2`` of the N non-crowd thing instances
        (``x2 = last column + 1``); ``labels`` ``(N,)`` int64 training ids; ``masks``
        ``(N, H, W)`` uint8; ``instance_ids`` ``(N,)`` int64 segment ids; ``crowd`` ``(H, W)``
        bool union of crowd thing regions; ``panoptic`` ``(H, W)`` int64; ``segments_info``:
        the segments still present, with ``area`` and ``bbox`` recomputed from the map.
    """
    height, width = panoptic.shape
    semantic = np.full((height, width), IGNORE_INDEX, dtype=np.int64)
    crowd = np.zeros((height, width), dtype=bool)
    things: list[_Thing] = []
    present: list[dict[str, Any]] = []
    for seg in segments_info:
        mask = panoptic == seg["id"]
        area = int(mask.sum())
        if area == 0:  # cropped or scaled away
            continue
        train_id = categories.train_id(seg["category_id"])
        semantic[mask] = train_id
        bbox = mask_bbox_xywh(mask)
        present.append({**seg, "area": area, "bbox": bbox})
        if not categories.is_thing(train_id):
            continue
        if seg.get("iscrowd", 0):
            crowd |= mask
            continue
        x, y, w, h = bbox
        things.append(_Thing(mask, [x, y, x + w, y + h], train_id, int(seg["id"])))
    return {
        "semantic": torch.from_numpy(semantic),
        **_thing_tensors(things, height, width),
        "crowd": torch.from_numpy(crowd),
        "panoptic": torch.from_numpy(panoptic.astype(np.int64)),
        "segments_info": present,
    }
