"""Confusion-matrix IoU against hand-computed numbers and a pixel-by-pixel count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unips.evaluation.semantic import ConfusionMatrix


def test_hand_made_case() -> None:
    gt = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = np.array([[0, 1, 1, 0], [2, 0, 1, 255]])  # 255 predicted = no class: a miss for class 1
    matrix = ConfusionMatrix(3)
    matrix.update(pred, gt)
    # class 0: tp 1, gt 2, predicted 2 (the prediction on the void pixel does not count) -> 1 / 3
    # class 1: tp 2, gt 3, predicted 3 -> 2 / 4; class 2: tp 1, gt 2, predicted 1 -> 1 / 2
    np.testing.assert_allclose(matrix.iou(), [1 / 3, 1 / 2, 1 / 2])
    assert matrix.mean_iou() == pytest.approx(4 / 9)
    assert matrix.mean_iou([1, 2]) == pytest.approx(1 / 2)


def test_equals_a_pixel_by_pixel_confusion_matrix() -> None:
    rng = np.random.default_rng(0)
    num_classes = 5
    matrix = ConfusionMatrix(num_classes)
    direct = np.zeros((num_classes, num_classes), np.int64)
    for _ in range(3):
        gt = rng.choice([0, 1, 2, 3, 255], size=(9, 11))  # class 4 never in the ground truth
        pred = rng.choice([0, 1, 2, 3, 4], size=(9, 11))
        matrix.update(torch.from_numpy(pred), torch.from_numpy(gt))
        for g, p in zip(gt.ravel(), pred.ravel(), strict=True):
            if g != 255:
                direct[g, p] += 1
    tp = np.diag(direct)
    expected = tp / (direct.sum(axis=0) + direct.sum(axis=1) - tp)
    np.testing.assert_allclose(matrix.iou(), expected, rtol=1e-15)
    assert matrix.iou()[4] == 0.0  # predicted but never true: IoU 0, and it counts in the mean
    assert matrix.mean_iou() == pytest.approx(expected.mean(), rel=1e-15)


def test_class_in_neither_map_has_no_iou_and_leaves_the_mean() -> None:
    matrix = ConfusionMatrix(4)
    matrix.update(np.array([[0, 1]]), np.array([[0, 1]]))
    assert np.isnan(matrix.iou()[2:]).all()
    assert matrix.mean_iou() == 1.0 and np.isnan(matrix.mean_iou([2, 3]))
