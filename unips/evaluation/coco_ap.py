"""AP box and AP mask with the COCO protocol, from a detector's raw detections.

The protocol runs in hotcoco's ``COCOeval`` (Rust), which gives pycocotools' numbers
exactly, 15-35x faster here (``benchmarks/ap_speed.py``); the tests check it against
pycocotools run by hand. hotcoco wants integer image ids, so images are numbered 1..N
for it (Cityscapes' ids are strings).

Ground-truth instances come from a COCO instances JSON, or are derived from panoptic
ground truth by :func:`thing_annotations` (one annotation per thing segment, crowd
regions included as ``iscrowd = 1``, RLE masks), which serves both the file path
(:func:`instances_from_panoptic` for COCO / Cityscapes, also as a command) and the
in-memory accumulation of :class:`CocoAP`::

    python -m unips.evaluation.coco_ap --gt-json panoptic_val.json [--gt-folder F] --out instances_val.json

Detections arrive as the model returns them: ``boxes (D, 4)`` x1 y1 x2 y2 in image
pixels, ``scores (D,)``, ``labels (D,)`` training ids, optionally ``masks (D, H, W)``
probabilities in the image frame (binarised at >= 0.5, as detectron2 pastes masks).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hotcoco
import numpy as np

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_json import parse_panoptic_json
from unips.datasets.coco_instances import rle_encode, thing_annotations
from unips.datasets.panoptic_format import PanopticFormatError, as_id_map, read_json, to_numpy, write_json
from unips.datasets.panoptic_png import read_panoptic_png


def instances_from_panoptic(gt_json: str | os.PathLike[str],
                            gt_folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A COCO instances dataset (``images``, ``annotations``, thing ``categories``) from panoptic files."""
    gt_json = Path(gt_json)
    gt_folder = Path(gt_folder) if gt_folder is not None else gt_json.with_suffix("")
    data = read_json(gt_json)
    categories, records = parse_panoptic_json(data, gt_json)
    annotations: list[dict[str, Any]] = []
    for record in records:
        ids = read_panoptic_png(gt_folder / record.png_file, image_id=record.image_id, what="ground-truth PNG")
        annotations += thing_annotations(ids, record.segments_info, categories, record.image_id,
                                         first_id=len(annotations) + 1)
    return {"images": data["images"], "annotations": annotations,
            "categories": [c for c in categories.to_json() if c["isthing"]]}


def detections_to_coco(image_id: int | str, detections: dict[str, Any], categories: CategoryMap,
                       mask_threshold: float = 0.5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """COCO results ``(boxes, masks)`` of one image's raw detections (``masks`` empty without mask probabilities).

    Box results carry ``bbox`` only and mask results ``segmentation`` only, so that COCOeval
    takes each result's area from what is being evaluated (as detectron2 does).
    """
    where = f"image id {image_id} (detections)"
    boxes = to_numpy(detections["boxes"]).astype(np.float64).reshape(-1, 4)
    scores = to_numpy(detections["scores"]).astype(np.float64).reshape(-1)
    labels = to_numpy(detections["labels"]).astype(np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise PanopticFormatError(f"{where}: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
    things = set(categories.thing_train_ids)
    bad = sorted({int(t) for t in labels if int(t) not in things})
    if bad:
        raise PanopticFormatError(f"{where}: labels {bad} are not thing training ids {sorted(things)}")
    box_results = [
        {"image_id": image_id, "category_id": categories.dataset_id(int(t)),
         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
        for (x1, y1, x2, y2), s, t in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]
    mask_results: list[dict[str, Any]] = []
    if detections.get("masks") is not None:
        masks = to_numpy(detections["masks"])
        if masks.ndim == 4:  # (D, 1, H, W) as torchvision returns them
            masks = masks[:, 0]
        if len(masks) != len(boxes):
            raise PanopticFormatError(f"{where}: {len(masks)} masks for {len(boxes)} boxes")
        for result, rle in zip(box_results, rle_encode(masks >= mask_threshold), strict=True):
            mask_results.append({"image_id": image_id, "category_id": result["category_id"],
                                 "segmentation": rle, "score": result["score"]})
    return box_results, mask_results


def _quiet(fn: Any, *args: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        return fn(*args)


class CocoAP:
    """Collects ground-truth instances and detections image by image; :meth:`evaluate` runs COCOeval.

    Args:
        categories: the dataset's categories.
        instances: a COCO instances JSON (path or loaded dict) to take ground truth from;
            ``None``: ground truth is added per image with :meth:`add_ground_truth`.
    """

    def __init__(self, categories: CategoryMap, instances: str | os.PathLike[str] | dict[str, Any] | None = None
                 ) -> None:
        self.categories = categories
        if instances is not None and not isinstance(instances, dict):
            instances = read_json(instances)
        self._from_file = instances
        self._file_images = {img["id"]: img for img in instances["images"]} if instances is not None else {}
        self.images: dict[Any, dict[str, Any]] = {}
        self.gt_annotations: list[dict[str, Any]] = []
        self.box_results: list[dict[str, Any]] = []
        self.mask_results: list[dict[str, Any]] = []
        self.all_have_masks = True

    def add_ground_truth(self, image_id: int | str, panoptic: Any, segments_info: Sequence[dict[str, Any]]) -> None:
        """Derive and keep the thing instances of one panoptic ground truth (in-memory mode)."""
        if self._from_file is not None:
            raise ValueError("ground truth comes from the instances JSON given to CocoAP")
        ids = as_id_map(panoptic, "ground-truth", f"image id {image_id}")
        self.images[image_id] = {"id": image_id, "height": int(ids.shape[0]), "width": int(ids.shape[1])}
        self.gt_annotations += thing_annotations(ids, segments_info, self.categories, image_id,
                                                 first_id=len(self.gt_annotations) + 1)

    def add_detections(self, image_id: int | str, detections: dict[str, Any]) -> None:
        """Keep one image's detections (and, with an instances JSON, mark the image as evaluated)."""
        if self._from_file is not None:
            if image_id not in self._file_images:
                raise PanopticFormatError(f"image id {image_id} has detections but is not in the instances JSON")
            self.images[image_id] = self._file_images[image_id]
        elif image_id not in self.images:
            raise ValueError(f"image id {image_id}: add its ground truth before its detections")
        boxes, masks = detections_to_coco(image_id, detections, self.categories)
        self.box_results += boxes
        self.mask_results += masks
        self.all_have_masks &= detections.get("masks") is not None

    def evaluate(self) -> dict[str, float]:
        """``AP_box``, ``AP50_box`` and, when every image had masks, ``AP_mask``, ``AP50_mask`` (percent).

        NaN when there is no ground-truth instance to find; 0 when there are instances but no detections.
        """
        if self._from_file is not None:
            dataset = self._from_file
        else:
            dataset = {"images": list(self.images.values()), "annotations": self.gt_annotations,
                       "categories": [c for c in self.categories.to_json() if c["isthing"]]}
        number = {image["id"]: k for k, image in enumerate(dataset["images"], start=1)}
        gt = hotcoco.COCO(_numbered(dataset, number))
        evaluated = {number[image_id] for image_id in self.images}
        has_instances = any(not a.get("iscrowd", 0) for a in dataset["annotations"]
                            if number.get(a["image_id"]) in evaluated)
        metrics = {}
        kinds = [("box", "bbox", self.box_results)]
        if self.all_have_masks:
            kinds.append(("mask", "segm", self.mask_results))
        for name, iou_type, results in kinds:
            if not has_instances:
                metrics[f"AP_{name}"] = metrics[f"AP50_{name}"] = float("nan")
                continue
            if not results:
                metrics[f"AP_{name}"] = metrics[f"AP50_{name}"] = 0.0
                continue
            coco_eval = hotcoco.COCOeval(gt, gt.loadRes([{**r, "image_id": number[r["image_id"]]} for r in results]),
                                         iou_type)
            coco_eval.params.imgIds = sorted(evaluated)
            _quiet(coco_eval.evaluate)
            _quiet(coco_eval.accumulate)
            _quiet(coco_eval.summarize)
            metrics[f"AP_{name}"] = 100 * float(coco_eval.stats[0])
            metrics[f"AP50_{name}"] = 100 * float(coco_eval.stats[1])
        return metrics


def _numbered(dataset: dict[str, Any], number: dict[Any, int]) -> dict[str, Any]:
    """``dataset`` with its images numbered as ``number`` says (in images and annotations)."""
    for ann in dataset["annotations"]:
        if ann["image_id"] not in number:
            raise PanopticFormatError(f"instance annotation id {ann.get('id')} is of image id {ann['image_id']}, "
                                      "which the instances' images do not list")
    return {**dataset,
            "images": [{**image, "id": number[image["id"]]} for image in dataset["images"]],
            "annotations": [{**ann, "image_id": number[ann["image_id"]]} for ann in dataset["annotations"]]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the COCO instances JSON of a panoptic ground truth.")
    parser.add_argument("--gt-json", required=True, type=Path)
    parser.add_argument("--gt-folder", type=Path, default=None, help="default: --gt-json without .json")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    instances = instances_from_panoptic(args.gt_json, args.gt_folder)
    write_json(args.out, instances)
    print(f"wrote {len(instances['annotations'])} instances of {len(instances['images'])} images to {args.out}")


if __name__ == "__main__":
    main()
