"""Our PQ equals panopticapi's ``pq_compute`` on 210 randomly perturbed prediction sets.

Each set is three 64x128 synthetic scenes written as PNG + JSON, with ground-truth
variants (all-void images, extra crowd segments so that one category has two, JSON
areas that disagree with the PNG) and predictions perturbed in every way
:mod:`unips.testing.perturb` knows (erosion, dilation, merges, splits, class swaps,
dropped and hallucinated segments, instances inside crowd regions, empty predictions).
panopticapi is the independent reference: its results dict, and its per-category
TP / FP / FN / IoU sums from the per-process loop.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unips.datasets.synthetic import CATEGORIES, render_scene
from unips.testing.perturb import perturb
from unips.evaluation.pq_files import evaluate_pq_files
from unips.evaluation.pq_stats import PQAccumulator
from tests.evaluation.panoptic_files import Item, assert_same_as_panopticapi, panopticapi_scores, write_set

pytestmark = pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")

NUM_SETS = 210
THINGS = {c.id for c in CATEGORIES.categories if c.isthing}


def _ground_truth(rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A small scene, sometimes all void, sometimes with more crowd segments or a JSON area that is off."""
    _, ids, segments = render_scene(rng, 64, 128)
    if rng.random() < 0.06:
        return np.zeros_like(ids), []
    if rng.random() < 0.4:
        # Turn thing instances into crowd regions, often of a class that already has one.
        instances = [s for s in segments if s["category_id"] in THINGS and not s["iscrowd"]]
        for seg in rng.permutation(np.array(instances, dtype=object))[: int(rng.integers(1, 3))]:
            seg["iscrowd"] = 1
    if rng.random() < 0.15 and segments:
        seg = segments[int(rng.integers(len(segments)))]
        seg["area"] = max(1, int(round(seg["area"] * rng.uniform(0.8, 1.5))))  # panopticapi trusts the JSON
    return ids, segments


def _random_set(seed: int) -> tuple[list[Item], list[Item]]:
    rng = np.random.default_rng([2024, seed])
    gt_items, pred_items = [], []
    for image_id in range(1, 4):
        ids, segments = _ground_truth(rng)
        pred, pred_segments = perturb(rng, ids, segments, CATEGORIES, p_empty=0.08)
        gt_items.append((image_id, ids, segments))
        pred_items.append((image_id, pred, pred_segments))
    return gt_items, pred_items


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(NUM_SETS))
def test_random_prediction_set_equals_panopticapi(seed: int, tmp_path: Path) -> None:
    gt_items, pred_items = _random_set(seed)
    gt_json, gt_folder = write_set(tmp_path, "gt", gt_items, CATEGORIES)
    pred_json, pred_folder = write_set(tmp_path, "pred", pred_items, CATEGORIES)
    reference, counts = panopticapi_scores(gt_json, pred_json, gt_folder, pred_folder)

    from_files, _ = evaluate_pq_files(gt_json, pred_json, gt_folder, pred_folder)
    assert_same_as_panopticapi(from_files.to_panopticapi(), reference, counts)

    in_memory = PQAccumulator(CATEGORIES)
    for (image_id, gt, gt_segments), (_, pred, pred_segments) in zip(gt_items, pred_items, strict=True):
        in_memory.update(pred, pred_segments, gt, gt_segments, image_id=image_id)
    assert in_memory.result().per_class.equals(from_files.per_class)


def test_random_sets_cover_every_case() -> None:
    """The generated sets really contain what the module docstring promises."""
    seen = {"all_void_gt": 0, "empty_pred": 0, "two_crowds_one_class": 0, "area_off": 0}
    for seed in range(NUM_SETS):
        gt_items, pred_items = _random_set(seed)
        for (_, ids, segments), (_, pred, _) in zip(gt_items, pred_items, strict=True):
            seen["all_void_gt"] += not segments
            seen["empty_pred"] += bool(segments) and not pred.any()
            crowd_classes = [s["category_id"] for s in segments if s["iscrowd"]]
            seen["two_crowds_one_class"] += len(crowd_classes) > len(set(crowd_classes))
            seen["area_off"] += any(s["area"] != int((ids == s["id"]).sum()) for s in segments)
    assert all(count >= 5 for count in seen.values()), seen


@pytest.mark.slow
def test_bit_identical_to_panopticapi_with_its_process_split(tmp_path: Path) -> None:
    """With as many workers as panopticapi's processes (cpu_count), even the float sums agree exactly."""
    gt_items, pred_items = [], []
    for seed in range(12):
        gt, pred = _random_set(1000 + seed)
        gt_items += [(10 * seed + i, ids, segs) for i, ids, segs in gt]
        pred_items += [(10 * seed + i, ids, segs) for i, ids, segs in pred]
    gt_json, gt_folder = write_set(tmp_path, "gt", gt_items, CATEGORIES)
    pred_json, pred_folder = write_set(tmp_path, "pred", pred_items, CATEGORIES)
    reference, counts = panopticapi_scores(gt_json, pred_json, gt_folder, pred_folder, pooled=True)
    ours, _ = evaluate_pq_files(gt_json, pred_json, gt_folder, pred_folder, workers=multiprocessing.cpu_count())
    assert_same_as_panopticapi(ours.to_panopticapi(), reference, counts, tol=0.0)
