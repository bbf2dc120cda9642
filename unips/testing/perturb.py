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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import MAX_SEGMENT_ID, VOID_ID, mask_bbox_xywh

def _random_box(rng: np.random.Generator, height: int, width: int, max_fraction: float) -> tuple[slice, slice]:
    h = int(rng.integers(1, max(2, int(height * max_fraction))))
    w = int(rng.integers(1, max(2, int(width * max_fraction))))
    r, c = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return slice(r, r + h), slice(c, c + w)


@dataclass
class _Prediction:
    """A prediction being edited in place: the id map, segment id -> category id, and the next free id."""

    rng: np.random.Generator
    pred: np.ndarray
    category: dict[int, int]
    crowd_ids: Sequence[int]
    all_categories: list[int]
    new_id: int

    def pick(self, ids: Sequence[int]) -> int:
        return ids[int(self.rng.integers(len(ids)))]

    def add_segment(self, where: Any, category_id: int) -> None:
        self.pred[where] = self.new_id
        self.category[self.new_id] = category_id
        self.new_id += 1


def _erode_or_dilate(p: _Prediction, present: list[int], dilate: bool) -> None:
    seg = p.pick(present)
    mask = (p.pred == seg).astype(np.uint8)
    iterations = int(p.rng.integers(1, 4))
    kernel = np.ones((3, 3), np.uint8)
    if dilate:
        p.pred[cv2.dilate(mask, kernel, iterations=iterations) > 0] = seg
    else:
        p.pred[(mask > 0) & (cv2.erode(mask, kernel, iterations=iterations) == 0)] = VOID_ID


def _merge(p: _Prediction, present: list[int]) -> None:
    a = p.pick(present)
    same = [s for s in present if p.category[s] == p.category[a] and s != a]
    others = same if same and p.rng.random() < 0.8 else [s for s in present if s != a]
    if others:
        p.pred[p.pred == p.pick(others)] = a


def _split(p: _Prediction, present: list[int]) -> None:
    seg = p.pick(present)
    mask = p.pred == seg
    x, y, w, h = mask_bbox_xywh(mask)
    cut = np.zeros_like(mask)
    if p.rng.random() < 0.5:
        cut[:, x + int(p.rng.integers(0, w + 1)):] = True
    else:
        cut[y + int(p.rng.integers(0, h + 1)):, :] = True
    p.add_segment(mask & cut, p.category[seg])


def _swap_class(p: _Prediction, present: list[int]) -> None:
    seg = p.pick(present)
    p.category[seg] = p.pick(p.all_categories)


def _drop(p: _Prediction, present: list[int]) -> None:
    p.pred[p.pred == p.pick(present)] = VOID_ID


def _hallucinate(p: _Prediction, present: list[int]) -> None:
    where = _random_box(p.rng, *p.pred.shape, 0.5)
    p.add_segment(where, p.pick(p.all_categories))


def _void_blob(p: _Prediction, present: list[int]) -> None:
    p.pred[_random_box(p.rng, *p.pred.shape, 0.4)] = VOID_ID


def _shift(p: _Prediction, present: list[int]) -> None:
    p.pred[:] = np.roll(p.pred, (int(p.rng.integers(-3, 4)), int(p.rng.integers(-3, 4))), axis=(0, 1))


def _crowd_instances(p: _Prediction, present: list[int]) -> None:
    """A model predicts instances inside a crowd region; some spill over its border."""
    if not p.crowd_ids:
        return
    crowd = p.pick(p.crowd_ids)
    mask = p.pred == crowd
    if not mask.any():
        return
    x, y, w, h = mask_bbox_xywh(mask)
    for _ in range(int(p.rng.integers(1, 4))):
        r0, c0 = y + int(p.rng.integers(0, h)), x + int(p.rng.integers(0, w))
        box = (slice(r0, r0 + int(p.rng.integers(1, h + 1))), slice(c0, c0 + int(p.rng.integers(1, w + 1))))
        region = mask[box] if p.rng.random() < 0.6 else np.ones_like(mask[box])
        p.pred[box][region] = p.new_id
        same = p.rng.random() < 0.7
        p.category[p.new_id] = p.category[crowd] if same else p.pick(p.all_categories)
        p.new_id += 1


def _speckles(p: _Prediction, present: list[int]) -> None:
    height, width = p.pred.shape
    for _ in range(int(p.rng.integers(1, 6))):
        r, c = int(p.rng.integers(height)), int(p.rng.integers(width))
        p.add_segment((slice(r, r + int(p.rng.integers(1, 3))), slice(c, c + int(p.rng.integers(1, 3)))),
                      p.pick(p.all_categories))


_EDIT_FUNCTIONS: dict[str, Callable[[_Prediction, list[int]], None]] = {
    "erode": lambda p, present: _erode_or_dilate(p, present, dilate=False),
    "dilate": lambda p, present: _erode_or_dilate(p, present, dilate=True),
    "merge": _merge, "split": _split, "swap_class": _swap_class, "drop": _drop, "hallucinate": _hallucinate,
    "void_blob": _void_blob, "shift": _shift, "crowd_instances": _crowd_instances, "speckles": _speckles,
}
EDITS = tuple(_EDIT_FUNCTIONS)
_NEED_A_SEGMENT = ("erode", "dilate", "merge", "split", "swap_class", "drop")


def _edit(p: _Prediction, kind: str) -> None:
    """Apply one edit of ``kind`` in place; one that needs a segment hallucinates one on an empty map."""
    present = [int(i) for i in pd.unique(p.pred.ravel()) if i != VOID_ID]
    if kind in _NEED_A_SEGMENT and not present:
        kind = "hallucinate"
    _EDIT_FUNCTIONS[kind](p, present)


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
    category = {int(s["id"]): int(s["category_id"]) for s in segments_info}
    crowd_ids = [int(s["id"]) for s in segments_info if s.get("iscrowd", 0)]
    edited = _Prediction(rng, panoptic.astype(np.int32).copy(), category, crowd_ids,
                         [c.id for c in categories.categories], max(category, default=0) + 1)
    for _ in range(int(rng.integers(1, 9)) if num_edits is None else num_edits):
        _edit(edited, EDITS[int(rng.integers(len(EDITS)))])
    pred = edited.pred

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
