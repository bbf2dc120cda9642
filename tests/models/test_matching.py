"""Matching predictions to ground truth, and the per-pixel targets of the panoptic loss."""

from __future__ import annotations

import numpy as np
import torch

from unips.datasets.categories import Category, CategoryMap
from unips.models.matching import PANOPTIC_IGNORE, match_detections, panoptic_cross_entropy, pixel_targets

GT_BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 12.0], [0.0, 20.0, 8.0, 30.0],
                         [40.0, 40.0, 60.0, 50.0]])
GT_CLASSES = torch.tensor([0, 0, 1, 1])


def test_a_permuted_set_of_perfect_predictions_is_matched_back() -> None:
    order = torch.tensor([2, 0, 3, 1])
    pred, gt = match_detections(GT_BOXES[order], GT_CLASSES[order], GT_BOXES, GT_CLASSES)
    assert sorted(zip(pred.tolist(), gt.tolist())) == [(0, 2), (1, 0), (2, 3), (3, 1)]


def test_wrong_class_and_low_iou_stay_unmatched() -> None:
    pred_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],  # right box, wrong class
                               [20.0, 0.0, 30.0, 12.0],  # right
                               [0.0, 20.0, 20.0, 30.0]])  # right class, IoU 0.4
    pred_classes = torch.tensor([1, 0, 1])
    pred, gt = match_detections(pred_boxes, pred_classes, GT_BOXES, GT_CLASSES, iou_thresh=0.5)
    assert list(zip(pred.tolist(), gt.tolist())) == [(1, 1)]
    pred, gt = match_detections(pred_boxes, pred_classes, GT_BOXES, GT_CLASSES, iou_thresh=0.5, same_class=False)
    assert sorted(zip(pred.tolist(), gt.tolist())) == [(0, 0), (1, 1)]
    pred, gt = match_detections(pred_boxes, pred_classes, GT_BOXES, GT_CLASSES, iou_thresh=0.39)
    assert sorted(zip(pred.tolist(), gt.tolist())) == [(1, 1), (2, 2)]


def test_the_assignment_maximises_total_iou_where_greedy_would_not() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0]])
    # Prediction 0 overlaps GT 0 best (IoU 0.82) but GT 1 well too (0.67); prediction 1 fits only GT 0 (0.54).
    pred = torch.tensor([[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 6.0, 10.0]])
    p, g = match_detections(pred, torch.zeros(2, dtype=torch.long), gt, torch.zeros(2, dtype=torch.long))
    assert sorted(zip(p.tolist(), g.tolist())) == [(0, 1), (1, 0)]  # total 1.21 beats greedy's 0.82 alone


def test_empty_inputs_match_nothing() -> None:
    for pred in (GT_BOXES[:0], GT_BOXES):
        p, g = match_detections(pred, GT_CLASSES[: len(pred)], GT_BOXES[:0], GT_CLASSES[:0])
        assert p.size == g.size == 0


CATEGORIES = CategoryMap((Category(1, "car", True, (0, 0, 0)), Category(7, "road", False, (0, 0, 0)),
                          Category(9, "sky", False, (0, 0, 0))))


def test_pixel_targets_follow_the_matching_and_ignore_crowd_void_and_unmatched() -> None:
    panoptic = torch.tensor([[7000, 7000, 1001, 1001],
                             [7000, 0, 1002, 1002],
                             [9000, 9000, 1003, 1003]])
    segments = [{"id": 7000, "category_id": 7, "iscrowd": 0}, {"id": 9000, "category_id": 9, "iscrowd": 0},
                {"id": 1001, "category_id": 1, "iscrowd": 0}, {"id": 1002, "category_id": 1, "iscrowd": 0},
                {"id": 1003, "category_id": 1, "iscrowd": 1}]
    # Stuff channels 0 (road) and 1 (sky); instance 1001 matched to channel 3, 1002 unmatched, 1003 crowd.
    target = pixel_targets(panoptic, segments, CATEGORIES, stuff_channel={1: 0, 2: 1}, instance_channel={1001: 3})
    i = PANOPTIC_IGNORE
    assert target.tolist() == [[0, 0, 3, 3], [0, i, i, i], [1, 1, i, i]]


def test_cross_entropy_averages_over_valid_pixels_of_all_images() -> None:
    logits = [torch.zeros(2, 1, 2), torch.zeros(3, 1, 1)]
    targets = [torch.tensor([[0, PANOPTIC_IGNORE]]), torch.tensor([[2]])]
    loss = panoptic_cross_entropy(logits, targets)
    assert loss.item() == np.float32((np.log(2) + np.log(3)) / 2)
    assert panoptic_cross_entropy([torch.zeros(2, 1, 1)], [torch.tensor([[PANOPTIC_IGNORE]])]).item() == 0.0
