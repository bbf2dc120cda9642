"""PanopticEvaluator: the training loop's view, checked against panopticapi and direct computations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unips.config import EvalConfig
from unips.datasets import PanopticDataset
from unips.datasets.categories import IGNORE_INDEX
from unips.evaluation.evaluator import PanopticEvaluator
from unips.testing.perturb import perturb
from unips.evaluation.semantic import ConfusionMatrix
from tests.evaluation.panoptic_files import panopticapi_scores

pytestmark = pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")

PQ_KEYS = ["PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"]


def _batches(root: Path, numpy: bool, seed: int = 0) -> tuple[PanopticDataset, list[tuple[Any, ...]]]:
    """(images, outputs, targets) batches of two with perturbed predictions, as torch or numpy."""
    dataset = PanopticDataset(root / "images/val", root / "panoptic_val.json", root / "panoptic_val")
    rng = np.random.default_rng(seed)
    items = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        pred, segments = perturb(rng, target["panoptic"].numpy(), target["segments_info"], dataset.categories)
        semantic = target["semantic"].clone()
        semantic[semantic == IGNORE_INDEX] = 0
        semantic[:, : int(rng.integers(1, 40))] = int(rng.integers(len(dataset.categories)))  # some errors
        jitter = torch.from_numpy(rng.normal(0, 3, target["boxes"].shape)).float()
        detections = {"boxes": target["boxes"] + jitter,
                      "scores": torch.from_numpy(rng.uniform(0.1, 1, len(target["boxes"]))),
                      "labels": target["labels"], "masks": target["masks"].float()}
        output = {"image_id": target["image_id"], "panoptic": torch.from_numpy(pred), "segments_info": segments,
                  "semantic": semantic, "detections": detections}
        if numpy:
            output = {**output, "panoptic": pred, "semantic": semantic.numpy(),
                      "detections": {k: v.numpy() for k, v in detections.items()}}
        items.append((image, output, target))
    batches = [tuple(zip(*items[i:i + 2], strict=True)) for i in range(0, len(items), 2)]
    return dataset, batches


def test_ground_truth_as_prediction_scores_100_on_every_metric(synthetic_root: Path) -> None:
    dataset = PanopticDataset(synthetic_root / "images/val", synthetic_root / "panoptic_val.json",
                              synthetic_root / "panoptic_val")
    evaluator = PanopticEvaluator(dataset.categories)
    for index in range(len(dataset)):
        _, target = dataset[index]
        semantic = target["semantic"].clone()
        semantic[semantic == IGNORE_INDEX] = 0
        output = {"image_id": target["image_id"], "panoptic": target["panoptic"],
                  "segments_info": [{"id": s["id"], "category_id": s["category_id"]} for s in target["segments_info"]],
                  "semantic": semantic,
                  "detections": {"boxes": target["boxes"], "scores": torch.ones(len(target["labels"])),
                                 "labels": target["labels"], "masks": target["masks"].float()}}
        evaluator.process([output], [target])
    metrics = evaluator.evaluate()
    assert list(metrics) == [*PQ_KEYS, "mIoU", "IoU_st", "mIoU_pan", "IoU_st_pan",
                             "AP_box", "AP50_box", "AP_mask", "AP50_mask"]
    assert all(value == 100.0 for value in metrics.values()), metrics


def test_metrics_equal_panopticapi_and_direct_confusion_matrices(synthetic_root: Path, tmp_path: Path) -> None:
    dataset, batches = _batches(synthetic_root, numpy=False)
    evaluator = PanopticEvaluator(dataset.categories, export_dir=tmp_path, num_visualizations=3)
    semantic = ConfusionMatrix(len(dataset.categories))
    semantic_pan = ConfusionMatrix(len(dataset.categories))
    for images, outputs, targets in batches:
        evaluator.process(outputs, targets, images)
        for output, target in zip(outputs, targets, strict=True):
            semantic.update(output["semantic"], target["semantic"])
            painted = np.full(target["semantic"].shape, IGNORE_INDEX)  # the panoptic prediction as a semantic map
            for seg in output["segments_info"]:
                painted[output["panoptic"].numpy() == seg["id"]] = dataset.categories.train_id(seg["category_id"])
            semantic_pan.update(painted, target["semantic"])
    metrics = evaluator.evaluate()

    reference, _ = panopticapi_scores(dataset.json_path, tmp_path / "panoptic_pred.json", dataset.png_dir,
                                      tmp_path / "panoptic_pred")
    assert reference is not None
    for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        for key in ("pq", "sq", "rq"):
            assert metrics[f"{key.upper()}{suffix}"] == pytest.approx(100 * reference[name][key], abs=1e-9)
    stuff = dataset.categories.stuff_train_ids
    assert metrics["mIoU"] == pytest.approx(100 * semantic.mean_iou(), abs=1e-12)
    assert metrics["IoU_st"] == pytest.approx(100 * semantic.mean_iou(stuff), abs=1e-12)
    assert metrics["mIoU_pan"] == pytest.approx(100 * semantic_pan.mean_iou(), abs=1e-12)
    assert metrics["IoU_st_pan"] == pytest.approx(100 * semantic_pan.mean_iou(stuff), abs=1e-12)
    assert 0 < metrics["AP_box"] < 100
    assert len(list((tmp_path / "visualizations").glob("*_gt_vs_pred.png"))) == 3

    table = evaluator.per_class()
    assert list(table.columns) == ["category_id", "name", "isthing", "PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU",
                                   "IoU_pan"]
    for row in table.itertuples():
        assert row.PQ == pytest.approx(100 * reference["per_class"][row.category_id]["pq"], abs=1e-9)


def test_numpy_and_torch_outputs_give_the_same_metrics(synthetic_root: Path) -> None:
    results = []
    for numpy in (False, True):
        dataset, batches = _batches(synthetic_root, numpy=numpy, seed=1)
        evaluator = PanopticEvaluator(dataset.categories)
        for _, outputs, targets in batches:
            evaluator.process(outputs, targets)
        results.append(evaluator.evaluate())
    assert results[0] == results[1]


def test_trimming_from_the_config_removes_small_stuff_before_matching(synthetic_root: Path) -> None:
    dataset, batches = _batches(synthetic_root, numpy=False, seed=2)
    plain = PanopticEvaluator(dataset.categories, compute_ap=False)
    trimmed = PanopticEvaluator.from_config(EvalConfig(trim_stuff=True, stuff_area_limit=300), dataset.categories,
                                            compute_ap=False)
    assert trimmed.stuff_area_limit == 300 and trimmed.num_visualizations == EvalConfig().num_visualizations
    for _, outputs, targets in batches:
        plain.process(outputs, targets)
        trimmed.process(outputs, targets)
    before, after = plain.per_class(), trimmed.per_class()
    stuff = ~before["isthing"]
    assert (after.loc[stuff, "FP"] <= before.loc[stuff, "FP"]).all() and after["FP"].sum() < before["FP"].sum()
    assert (after.loc[~stuff, ["TP", "FP", "FN"]] == before.loc[~stuff, ["TP", "FP", "FN"]]).all().all()
    assert trimmed.evaluate()["IoU_st_pan"] <= plain.evaluate()["IoU_st_pan"]


def test_evaluating_nothing_is_an_error() -> None:
    from unips.datasets.synthetic import CATEGORIES

    with pytest.raises(ValueError, match="no image was processed"):
        PanopticEvaluator(CATEGORIES).evaluate()
