"""AP box / AP mask: instances derived from panoptic ground truth, and pycocotools run by hand as reference."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from unips.datasets import PanopticDataset
from unips.evaluation.coco_ap import CocoAP, instances_from_panoptic, main


def _dataset(root: Path, split: str = "val") -> PanopticDataset:
    return PanopticDataset(root / f"images/{split}", root / f"panoptic_{split}.json", root / f"panoptic_{split}")


@pytest.mark.parametrize("split", ["train", "val"])
def test_instances_derived_from_panoptic_files_equal_the_generators(synthetic_root: Path, split: str) -> None:
    derived = instances_from_panoptic(synthetic_root / f"panoptic_{split}.json")
    assert derived == json.loads((synthetic_root / f"instances_{split}.json").read_text())


def test_command_writes_the_same_instances(synthetic_root: Path, tmp_path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        main(["--gt-json", str(synthetic_root / "panoptic_val.json"), "--out", str(tmp_path / "i.json")])
    assert json.loads((tmp_path / "i.json").read_text()) == json.loads(
        (synthetic_root / "instances_val.json").read_text())


def test_in_memory_ground_truth_from_targets_equals_the_instances_file(synthetic_root: Path) -> None:
    dataset = _dataset(synthetic_root)
    ap = CocoAP(dataset.categories)
    for index in range(len(dataset)):
        _, target = dataset[index]
        ap.add_ground_truth(target["image_id"], target["panoptic"], target["segments_info"])
    assert ap.gt_annotations == json.loads((synthetic_root / "instances_val.json").read_text())["annotations"]


def _ground_truth_as_detections(target: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"boxes": target["boxes"], "scores": torch.ones(len(target["boxes"])), "labels": target["labels"],
            "masks": target["masks"].float()}


@pytest.mark.parametrize("from_file", [False, True])
def test_ground_truth_used_as_detections_scores_100(synthetic_root: Path, from_file: bool) -> None:
    dataset = _dataset(synthetic_root)
    ap = CocoAP(dataset.categories, synthetic_root / "instances_val.json" if from_file else None)
    for index in range(len(dataset)):
        _, target = dataset[index]
        if not from_file:
            ap.add_ground_truth(target["image_id"], target["panoptic"], target["segments_info"])
        ap.add_detections(target["image_id"], _ground_truth_as_detections(target))
    assert ap.evaluate() == {"AP_box": 100.0, "AP50_box": 100.0, "AP_mask": 100.0, "AP50_mask": 100.0}


def _reference_ap(instances: Path, results: list[dict[str, Any]], iou_type: str, tmp_path: Path) -> float:
    """pycocotools on files, the way its README runs it."""
    path = tmp_path / f"results_{iou_type}.json"
    path.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(instances))
        coco_eval = COCOeval(gt, gt.loadRes(str(path)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return 100 * coco_eval.stats[0]


@pytest.mark.parametrize("string_ids", [False, True])
def test_imperfect_detections_give_pycocotools_own_ap(synthetic_root: Path, tmp_path: Path, string_ids: bool) -> None:
    """Detections made in COCO's format and in the model's; our conversion must give COCOeval's answer, also
    where image ids are strings (as Cityscapes' are; the evaluator numbers them for hotcoco)."""
    dataset = _dataset(synthetic_root)
    instances = json.loads((synthetic_root / "instances_val.json").read_text())
    rng = np.random.default_rng(4)
    box_results, mask_results = [], []
    ap = CocoAP(dataset.categories)
    for index in range(len(dataset)):
        _, target = dataset[index]
        our_id = f"frame_{target['image_id']}" if string_ids else target["image_id"]
        ap.add_ground_truth(our_id, target["panoptic"], target["segments_info"])
        height, width = target["panoptic"].shape
        boxes, scores, labels, masks = [], [], [], []
        for ann in instances["annotations"]:
            if ann["image_id"] != target["image_id"] or ann["iscrowd"] or rng.random() < 0.2:
                continue
            x, y, w, h = (np.array(ann["bbox"]) + rng.normal(0, 2.0, 4)).tolist()
            score = float(rng.uniform(0.1, 1.0))
            mask = np.roll(mask_utils.decode(ann["segmentation"]), int(rng.integers(-3, 4)), axis=1)
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            box_results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                                "bbox": [x, y, w, h], "score": score})
            mask_results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                                 "segmentation": rle, "score": score})
            boxes.append([x, y, x + w, y + h])
            scores.append(score)
            labels.append(dataset.categories.train_id(ann["category_id"]))
            masks.append(np.where(mask > 0, 0.8, 0.2))  # probabilities, binarised at 0.5
        ap.add_detections(our_id, {
            "boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels), "masks": np.array(masks).reshape(-1, height, width)})
    ours = ap.evaluate()
    instances_path = synthetic_root / "instances_val.json"
    assert ours["AP_box"] == pytest.approx(_reference_ap(instances_path, box_results, "bbox", tmp_path), abs=1e-12)
    assert ours["AP_mask"] == pytest.approx(_reference_ap(instances_path, mask_results, "segm", tmp_path), abs=1e-12)
    assert 20 < ours["AP_box"] < 95 and 20 < ours["AP_mask"] < 95


def test_no_detections_scores_zero_and_no_masks_means_no_mask_ap(synthetic_root: Path) -> None:
    dataset = _dataset(synthetic_root)
    ap = CocoAP(dataset.categories)
    _, target = dataset[0]
    ap.add_ground_truth(target["image_id"], target["panoptic"], target["segments_info"])
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    ap.add_detections(target["image_id"], empty)
    assert ap.evaluate() == {"AP_box": 0.0, "AP50_box": 0.0}
