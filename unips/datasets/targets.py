"""Training targets derived from a panoptic id map and its segments.

Everything (semantic map, thing boxes / masks, crowd mask) is computed from the
id map itself, so targets stay consistent with it after any geometric
augmentation, and instances cropped away simply disappear.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unips.datasets.categories import IGNORE_INDEX, CategoryMap
from unips.datasets.panoptic_format import mask_bbox_xywh


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
    masks: list[np.ndarray] = []
    boxes: list[list[float]] = []
    labels: list[int] = []
    instance_ids: list[int] = []
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
        masks.append(mask)
        boxes.append([x, y, x + w, y + h])
        labels.append(train_id)
        instance_ids.append(int(seg["id"]))
    return {
        "semantic": torch.from_numpy(semantic),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks).astype(np.uint8))
        if masks
        else torch.zeros((0, height, width), dtype=torch.uint8),
        "instance_ids": torch.tensor(instance_ids, dtype=torch.int64),
        "crowd": torch.from_numpy(crowd),
        "panoptic": torch.from_numpy(panoptic.astype(np.int64)),
        "segments_info": present,
    }
