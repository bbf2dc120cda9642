"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU and stuff IoU.

Ground-truth pixels labelled 255 (void) are ignored. A prediction may also say 255
("no class", e.g. a void pixel of a panoptic prediction): such a pixel is a miss for
its ground-truth class. The mean is over the classes that occur in the ground truth
or the prediction (union > 0); a class absent from both has no IoU (NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unips.datasets.categories import IGNORE_INDEX
from unips.datasets.panoptic_format import PanopticFormatError, as_id_map


class ConfusionMatrix:
    """``(C, C + 1)`` pixel counts: rows ground-truth class, columns predicted class, last column "no class".

    Args:
        num_classes: ``C``, the training ids ``0 .. C - 1``.
        ignore_index: the void label in both maps (255).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, pred: Any, gt: Any, image_id: object = None) -> None:
        """Add one image: ``(H, W)`` integer training ids (numpy or torch), void = ``ignore_index``."""
        where = f"image id {image_id} (semantic)"
        pred, gt = as_id_map(pred, "predicted semantic", where), as_id_map(gt, "ground-truth semantic", where)
        if pred.shape != gt.shape:
            raise PanopticFormatError(f"{where}: prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        c = self.num_classes
        # Void becomes index c on both sides: row c (void ground truth) is dropped, column c is "no class".
        labels = []
        for name, ids in (("ground-truth", gt), ("predicted", pred)):
            flat = ids.astype(np.int64).ravel()  # a copy: the caller's map is not modified
            void = flat == self.ignore_index
            bad = ~void & ((flat < 0) | (flat >= c))
            if bad.any():
                raise PanopticFormatError(f"{where}: {name} labels {np.unique(flat[bad]).tolist()} are outside "
                                          f"0..{c - 1} (and {self.ignore_index} for void)")
            flat[void] = c
            labels.append(flat)
        key = labels[0] * (c + 1) + labels[1]
        self.counts += np.bincount(key, minlength=(c + 1) ** 2).reshape(c + 1, c + 1)[:c]

    def add_counts(self, counts: np.ndarray) -> None:
        """Add a ``(C, C + 1)`` matrix counted elsewhere (e.g. from a panoptic joint histogram)."""
        self.counts += counts

    def iou(self) -> np.ndarray:
        """``(C,)`` IoU per class (fraction), NaN where the class is in neither map."""
        c = self.num_classes
        tp = np.diag(self.counts[:, :c]).astype(np.float64)
        union = self.counts.sum(axis=1) + self.counts[:, :c].sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def mean_iou(self, classes: Sequence[int] | None = None) -> float:
        """Mean IoU (fraction) over ``classes`` (default all) that occur; NaN if none does."""
        values = self.iou() if classes is None else self.iou()[list(classes)]
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float("nan")
