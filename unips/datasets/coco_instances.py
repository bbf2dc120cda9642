"""COCO instance annotations (RLE masks) of the thing segments of panoptic ground truth.

The synthetic generator writes them beside its panoptic files, and AP evaluation derives
its ground truth with them when no instances file is given (:mod:`unips.evaluation.coco_ap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import as_id_map, mask_bbox_xywh


def rle_encode(masks: np.ndarray) -> list[dict[str, Any]]:
    """RLEs (counts as str, JSON-ready) of ``(N, H, W)`` boolean masks, encoded in one call."""
    if len(masks) == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("ascii")
    return encoded


def thing_annotations(
    panoptic: Any,
    segments_info: Sequence[dict[str, Any]],
    categories: CategoryMap,
    image_id: int | str,
    first_id: int = 1,
) -> list[dict[str, Any]]:
    """COCO instance annotations of the thing segments of one panoptic ground truth.

    Args:
        panoptic: ``(H, W)`` segment ids (numpy or torch).
        segments_info: ``id``, ``category_id`` (dataset id), ``iscrowd`` and, when known,
            ``area`` and ``bbox`` (else counted in the map).
        first_id: annotation id of the first instance; the others follow in order.

    Returns:
        ``id, image_id, category_id, segmentation (RLE), area, bbox (floats), iscrowd`` per thing.
    """
    ids = as_id_map(panoptic, "ground-truth", f"image id {image_id}")
    things = [s for s in segments_info if categories.is_thing(categories.train_id(s["category_id"]))]
    annotations = []
    for k, seg in enumerate(things):  # one mask at a time: a hundred full-size masks would not fit
        mask = ids == seg["id"]
        (rle,) = rle_encode(mask[None])
        annotations.append({
            "id": first_id + k,
            "image_id": image_id,
            "category_id": seg["category_id"],
            "segmentation": rle,
            "area": seg["area"] if "area" in seg else int(mask.sum()),
            "bbox": [float(v) for v in (seg["bbox"] if "bbox" in seg else mask_bbox_xywh(mask))],
            "iscrowd": int(seg.get("iscrowd", 0)),
        })
    return annotations
