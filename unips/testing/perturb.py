"""Plausible wrong predictions made from ground truth, to test and benchmark evaluators.

A prediction starts as a copy of the ground-truth map (crowd regions become ordinary
segments, as a model would predict them) and receives random edits of the kinds real
models get wrong: eroded and dilated masks, merged and split instances, swapped
classes, dropped and hallucinated segments, void blobs, a shifted map, instances
predicted inside crowd regions and tiny speckles. Segment ids are then renumbered at
random (a prediction never shares the ground truth's ids by design). An all-void
prediction is one option of :func:`perturb`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import MAX_SEGMENT_ID, VOID_ID, mask_bbox_xywh

EDITS = ("erode", "dilate", "merge", "split", "swap_class", "drop", "hallucinate", "void_blob", "shift",
         "crowd_instances", "speckles")


def _random_box(rng: np.random.Generator, height: int, width: int, max_fraction: float) -> tuple[slice, slice]:
    h = int(rng.integers(1, max(2, int(height * max_fraction))))
    w = int(rng.integers(1, max(2, int(width * max_fraction))))
    r, c = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return slice(r, r + h), slice(c, c + w)


def _edit(rng: np.random.Generator, kind: str, pred: np.ndarray, category: dict[int, int],
          crowd_ids: Sequence[int], categories: CategoryMap, new_id: int) -> int:
    """Apply one edit in place to ``pred`` / ``category`` (segment id -> category id); returns the next free id."""
    present = [int(i) for i in pd.unique(pred.ravel()) if i != VOID_ID]
    all_cats = [c.id for c in categories.categories]
    height, width = pred.shape
    kernel = np.ones((3, 3), np.uint8)
    if kind in ("erode", "dilate", "merge", "split", "swap_class", "drop") and not present:
        kind = "hallucinate"
    if kind in ("erode", "dilate"):
        seg = present[int(rng.integers(len(present)))]
        mask = (pred == seg).astype(np.uint8)
        iterations = int(rng.integers(1, 4))
        if kind == "erode":
            pred[(mask > 0) & (cv2.erode(mask, kernel, iterations=iterations) == 0)] = VOID_ID
        else:
            pred[cv2.dilate(mask, kernel, iterations=iterations) > 0] = seg
    elif kind == "merge":
        a = present[int(rng.integers(len(present)))]
        same = [s for s in present if category[s] == category[a] and s != a]
        others = same if same and rng.random() < 0.8 else [s for s in present if s != a]
        if others:
            pred[pred == others[int(rng.integers(len(others)))]] = a
    elif kind == "split":
        seg = present[int(rng.integers(len(present)))]
        mask = pred == seg
        x, y, w, h = mask_bbox_xywh(mask)
        cut = np.zeros_like(mask)
        if rng.random() < 0.5:
            cut[:, x + int(rng.integers(0, w + 1)):] = True
        else:
            cut[y + int(rng.integers(0, h + 1)):, :] = True
        pred[mask & cut] = new_id
        category[new_id] = category[seg]
        new_id += 1
    elif kind == "swap_class":
        seg = present[int(rng.integers(len(present)))]
        category[seg] = all_cats[int(rng.integers(len(all_cats)))]
    elif kind == "drop":
        pred[pred == present[int(rng.integers(len(present)))]] = VOID_ID
    elif kind == "hallucinate":
        rows, cols = _random_box(rng, height, width, 0.5)
        pred[rows, cols] = new_id
        category[new_id] = all_cats[int(rng.integers(len(all_cats)))]
        new_id += 1
    elif kind == "void_blob":
        rows, cols = _random_box(rng, height, width, 0.4)
        pred[rows, cols] = VOID_ID
    elif kind == "shift":
        pred[:] = np.roll(pred, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    elif kind == "crowd_instances" and crowd_ids:
        # A model predicts instances inside a crowd region; some spill over its border.
        crowd = crowd_ids[int(rng.integers(len(crowd_ids)))]
        mask = pred == crowd
        if mask.any():
            x, y, w, h = mask_bbox_xywh(mask)
            for _ in range(int(rng.integers(1, 4))):
                r0, c0 = y + int(rng.integers(0, h)), x + int(rng.integers(0, w))
                box = (slice(r0, r0 + int(rng.integers(1, h + 1))), slice(c0, c0 + int(rng.integers(1, w + 1))))
                region = mask[box] if rng.random() < 0.6 else np.ones_like(mask[box])
                pred[box][region] = new_id
                same = rng.random() < 0.7
                category[new_id] = category[crowd] if same else all_cats[int(rng.integers(len(all_cats)))]
                new_id += 1
    elif kind == "speckles":
        for _ in range(int(rng.integers(1, 6))):
            r, c = int(rng.integers(height)), int(rng.integers(width))
            pred[r:r + int(rng.integers(1, 3)), c:c + int(rng.integers(1, 3))] = new_id
            category[new_id] = all_cats[int(rng.integers(len(all_cats)))]
            new_id += 1
    return new_id


def perturb(
    rng: np.random.Generator,
    panoptic: np.ndarray,
    segments_info: Sequence[dict[str, Any]],
    categories: CategoryMap,
    num_edits: int | None = None,
    p_empty: float = 0.0,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A predicted ``(H, W)`` int32 id map and its ``segments_info`` made from ground truth.

    Args:
        panoptic: ``(H, W)`` ground-truth segment ids; not modified.
        segments_info: its segments (``id``, ``category_id``, ``iscrowd``).
        num_edits: how many random edits (default: 1 to 8 at random).
        p_empty: probability of an all-void prediction with no segments.

    Returns:
        ``(pred, segments)`` with ``id``, ``category_id``, ``isthing``, ``area``, ``bbox``,
        ``iscrowd`` = 0 and, for things, a ``score`` per segment, in id order.
    """
    if rng.random() < p_empty:
        return np.zeros(panoptic.shape, np.int32), []
    pred = panoptic.astype(np.int32).copy()
    category = {int(s["id"]): int(s["category_id"]) for s in segments_info}
    crowd_ids = [int(s["id"]) for s in segments_info if s.get("iscrowd", 0)]
    new_id = max(category, default=0) + 1
    for _ in range(int(rng.integers(1, 9)) if num_edits is None else num_edits):
        new_id = _edit(rng, EDITS[int(rng.integers(len(EDITS)))], pred, category, crowd_ids, categories, new_id)

    present = np.array(sorted(int(i) for i in pd.unique(pred.ravel()) if i != VOID_ID), np.int64)
    # Renumber to fresh random ids (sometimes keep them: ids shared with the ground truth must not matter).
    fresh = present if rng.random() < 0.3 else np.sort(rng.choice(MAX_SEGMENT_ID, len(present), replace=False) + 1)
    table = dict(zip(present.tolist(), fresh.tolist(), strict=True))
    out = np.zeros_like(pred)
    segments = []
    for old, new in table.items():
        mask = pred == old
        out[mask] = new
        cat = category[old]
        isthing = categories.is_thing(categories.train_id(cat))
        seg = {"id": new, "category_id": cat, "isthing": int(isthing), "area": int(mask.sum()),
               "bbox": mask_bbox_xywh(mask), "iscrowd": 0}
        if isthing:
            seg["score"] = float(rng.uniform(0.3, 1.0))
        segments.append(seg)
    segments.sort(key=lambda s: s["id"])
    return out, segments
