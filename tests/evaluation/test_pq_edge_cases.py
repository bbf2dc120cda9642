"""Hand-made PQ cases, one per panopticapi rule, checked against numbers worked out by hand and panopticapi.

Maps are tiny rows of pixels. Categories of the synthetic set: things 1 (box), 2 (disc),
3 (triangle); stuff 7 (road), 9, 11, 13. Segment ids: 1001 = a box, 7000 = road.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unips.datasets.synthetic import CATEGORIES
from unips.evaluation.pq_files import evaluate_pq_files
from unips.evaluation.pq_stats import PQAccumulator
from tests.evaluation.panoptic_files import assert_same_as_panopticapi, panopticapi_scores, segments_of, write_set

pytestmark = pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")

GT_CATEGORY = {1001: 1, 1002: 1, 2001: 2, 7000: 7}


def _row(*runs: tuple[int, int]) -> np.ndarray:
    """A 1-pixel-high map from (id, length) runs."""
    return np.concatenate([np.full(n, i, np.int64) for i, n in runs])[None, :]


def _pred_segments(ids: np.ndarray, category: dict[int, int]) -> list[dict[str, Any]]:
    return [{"id": s["id"], "category_id": s["category_id"]} for s in segments_of(ids, category)]


def _score(tmp_path: Path, gt: list[tuple[np.ndarray, list[dict[str, Any]]]],
           pred: list[tuple[np.ndarray, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Score with our file path, our in-memory path and panopticapi; all must agree. Returns ours."""
    gt_items = [(k + 1, ids, segs) for k, (ids, segs) in enumerate(gt)]
    pred_items = [(k + 1, ids, segs) for k, (ids, segs) in enumerate(pred)]
    gt_json, gt_folder = write_set(tmp_path, "gt", gt_items, CATEGORIES)
    pred_json, pred_folder = write_set(tmp_path, "pred", pred_items, CATEGORIES)
    reference, counts = panopticapi_scores(gt_json, pred_json, gt_folder, pred_folder)
    ours = evaluate_pq_files(gt_json, pred_json, gt_folder, pred_folder)[0]
    assert_same_as_panopticapi(ours.to_panopticapi(), reference, counts)
    in_memory = PQAccumulator(CATEGORIES)
    for (k, g, gs), (_, p, ps) in zip(gt_items, pred_items, strict=True):
        in_memory.update(p, ps, g, gs, image_id=k)
    assert in_memory.result().per_class.equals(ours.per_class)
    return ours.to_panopticapi()


def _counts(result: dict[str, Any], category_id: int) -> tuple[int, int, int]:
    row = result["per_class"][category_id]
    return row["tp"], row["fp"], row["fn"]


def test_iou_of_exactly_one_half_is_not_a_match(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    pred = _row((5, 2), (6, 6))  # box on 2 of the 4 box pixels: IoU 2 / 4; road: IoU 4 / 6
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(pred, _pred_segments(pred, {5: 1, 6: 7}))])
    assert _counts(result, 1) == (0, 1, 1)
    assert _counts(result, 7) == (1, 0, 0) and result["per_class"][7]["iou"] == pytest.approx(4 / 6)
    assert result["All"]["n"] == 2 and result["All"]["pq"] == pytest.approx((0 + 4 / 6) / 2)


def test_iou_just_above_one_half_matches(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    pred = _row((5, 3), (6, 5))  # box IoU 3 / 4, road IoU 4 / 5
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(pred, _pred_segments(pred, {5: 1, 6: 7}))])
    assert _counts(result, 1) == (1, 0, 0) and result["per_class"][1]["iou"] == pytest.approx(3 / 4)


def test_predicted_pixels_on_void_leave_the_union(tmp_path: Path) -> None:
    gt = _row((1001, 4), (0, 4))
    pred = _row((9, 8))  # covers the box and 4 void pixels: union = 8 + 4 - 4 - 4 = 4, IoU 1
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(pred, _pred_segments(pred, {9: 1}))])
    assert _counts(result, 1) == (1, 0, 0) and result["per_class"][1]["iou"] == 1.0


def test_unmatched_prediction_mostly_on_void_is_ignored_but_half_is_not(tmp_path: Path) -> None:
    gt = _row((7000, 4), (0, 4))
    pred = _row((1, 4), (2, 4))  # the box prediction lies entirely on void
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(pred, _pred_segments(pred, {1: 7, 2: 1}))])
    assert _counts(result, 1) == (0, 0, 0) and _counts(result, 7) == (1, 0, 0)
    assert result["Things"]["n"] == 0 and np.isnan(result["Things"]["pq"])

    gt = _row((7000, 6), (0, 2))
    pred = _row((1, 4), (2, 4))  # the box prediction: 2 road + 2 void pixels, 2 / 4 is not > 0.5
    result = _score(tmp_path / "half", [(gt, segments_of(gt, GT_CATEGORY))],
                    [(pred, _pred_segments(pred, {1: 7, 2: 1}))])
    assert _counts(result, 1) == (0, 1, 0)


def test_crowd_is_never_matched_nor_missed_and_hides_predictions_of_its_class(tmp_path: Path) -> None:
    gt = np.vstack([_row((1001, 8)), _row((7000, 8))])
    pred = np.vstack([_row((1, 6), (2, 2)), _row((3, 8))])
    # id 1: a box on the box crowd (ignored); id 2: a disc on the box crowd (a false positive).
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY, crowd=[1001]))],
                    [(pred, _pred_segments(pred, {1: 1, 2: 2, 3: 7}))])
    assert _counts(result, 1) == (0, 0, 0) and _counts(result, 2) == (0, 1, 0) and _counts(result, 7) == (1, 0, 0)
    assert result["Things"]["n"] == 1


def test_crowd_matching_exactly_is_still_not_a_match(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    pred = _row((1, 4), (2, 4))
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY, crowd=[1001]))],
                    [(pred, _pred_segments(pred, {1: 1, 2: 7}))])
    assert _counts(result, 1) == (0, 0, 0)  # neither TP nor FP (on its crowd) nor FN


@pytest.mark.parametrize(("listed", "false_positives"), [((1001, 1002), 1), ((1002, 1001), 0)])
def test_only_the_last_listed_crowd_segment_of_a_class_counts(tmp_path: Path, listed: tuple[int, int],
                                                              false_positives: int) -> None:
    gt = np.vstack([_row((1001, 4), (1002, 4)), _row((7000, 8))])
    pred = np.vstack([_row((1, 4), (0, 4)), _row((3, 8))])  # a box prediction on crowd 1001 only
    by_id = {s["id"]: s for s in segments_of(gt, GT_CATEGORY, crowd=[1001, 1002])}
    result = _score(tmp_path, [(gt, [by_id[listed[0]], by_id[listed[1]], by_id[7000]])],
                    [(pred, _pred_segments(pred, {1: 1, 3: 7}))])
    assert _counts(result, 1) == (0, false_positives, 0)


@pytest.mark.parametrize(("json_area", "tp", "iou"), [(4, 1, 1.0), (6, 1, 4 / 6), (9, 0, 0.0), (3, 1, 4 / 3)])
def test_ground_truth_area_comes_from_the_json_not_the_png(tmp_path: Path, json_area: int, tp: int,
                                                           iou: float) -> None:
    gt = _row((1001, 4), (7000, 4))
    segments = segments_of(gt, GT_CATEGORY)
    segments[0]["area"] = json_area  # the PNG has 4 pixels; union = 4 + json_area - 4
    pred = _row((1, 4), (2, 4))
    result = _score(tmp_path, [(gt, segments)], [(pred, _pred_segments(pred, {1: 1, 2: 7}))])
    assert result["per_class"][1]["tp"] == tp and result["per_class"][1]["iou"] == pytest.approx(iou)


def test_same_pixels_other_class_is_a_miss_and_a_false_positive(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    pred = _row((1, 4), (2, 4))
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(pred, _pred_segments(pred, {1: 2, 2: 7}))])
    assert _counts(result, 1) == (0, 0, 1) and _counts(result, 2) == (0, 1, 0)


def test_empty_prediction_misses_everything(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(np.zeros_like(gt), [])])
    assert _counts(result, 1) == (0, 0, 1) and _counts(result, 7) == (0, 0, 1)
    assert result["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_prediction_on_an_all_void_image_is_ignored(tmp_path: Path) -> None:
    gt_void = np.zeros((1, 8), np.int64)
    pred_void = _row((1, 8))
    gt = _row((1001, 4), (7000, 4))
    result = _score(tmp_path, [(gt_void, []), (gt, segments_of(gt, GT_CATEGORY))],
                    [(pred_void, _pred_segments(pred_void, {1: 1})), (gt, _pred_segments(gt, GT_CATEGORY))])
    assert _counts(result, 1) == (1, 0, 0) and result["All"]["pq"] == 1.0


def test_a_group_without_any_counted_class_is_nan_where_panopticapi_divides_by_zero(tmp_path: Path) -> None:
    gt = _row((1001, 4), (2001, 4))  # things only: no stuff class is ever counted
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))], [(gt, _pred_segments(gt, GT_CATEGORY))])
    assert result["Things"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    assert result["Stuff"]["n"] == 0 and np.isnan(result["Stuff"]["pq"])


def test_prediction_ids_need_not_resemble_ground_truth_ids(tmp_path: Path) -> None:
    gt = _row((1001, 4), (7000, 4))
    pred = _row((7000, 4), (1001, 4))  # the ground truth's ids, on the other segment's pixels and class
    result = _score(tmp_path, [(gt, segments_of(gt, GT_CATEGORY))],
                    [(pred, _pred_segments(pred, {7000: 1, 1001: 7}))])
    assert _counts(result, 1) == (1, 0, 0) and _counts(result, 7) == (1, 0, 0)
