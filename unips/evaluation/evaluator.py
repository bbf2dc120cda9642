"""The evaluator a training loop calls: ``process(outputs, targets)`` per batch, ``evaluate()`` at the end.

    evaluator = PanopticEvaluator(dataset.categories, trim_stuff=True, stuff_area_limit=4096)
    for images, targets in loader:
        evaluator.process(model(images), targets, images)
    metrics = evaluator.evaluate()        # {"PQ": 61.2, "PQ_th": ..., "mIoU": ..., "AP_box": ...}
    evaluator.per_class().to_csv("per_class.csv", index=False)

Each model output is a dict per image (the model's evaluation contract)::

    image_id        int | str
    panoptic        (H, W) integer segment ids, 0 = void (torch or numpy)
    segments_info   [{"id", "category_id" (dataset id), "isthing", "area", "bbox", "score"}]
    semantic        (H, W) argmax of the semantic head, training ids       (optional)
    detections      {"boxes" (D, 4) x1y1x2y2, "scores" (D,), "labels" (D,) training ids,
                     "masks" (D, H, W) probabilities, optional}              (optional)

and each target is what :class:`unips.datasets.PanopticDataset` returns (``panoptic``,
``segments_info``, ``semantic``, ``image_id``, ``file_name``).

Metric names are flat and in percent (detectron2's convention): ``PQ, SQ, RQ`` and
``_th`` / ``_st`` variants from :mod:`unips.evaluation.pq_stats`; ``mIoU`` and ``IoU_st``
of the semantic head; ``mIoU_pan`` and ``IoU_st_pan`` of the panoptic prediction read as
a semantic map (void counts as a miss, so stuff trimming shows there, as in the paper's
Table I); ``AP_box``, ``AP50_box``, ``AP_mask``, ``AP50_mask`` from COCOeval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import PanopticFormatError, to_numpy
from unips.evaluation.coco_ap import CocoAP
from unips.evaluation.export import PanopticExporter, visualization_pictures, write_visualizations
from unips.evaluation.pq_stats import FIRST_SEGMENT, VOID_INDEX, PQAccumulator, Segments
from unips.evaluation.semantic import ConfusionMatrix
from unips.evaluation.trim import trim_small_stuff


def panoptic_confusion(counts: np.ndarray, gt: Segments, pred: Segments, num_classes: int) -> np.ndarray:
    """``(C, C + 1)`` semantic confusion of a panoptic prediction, from its joint histogram.

    Rows: ground-truth class of each ground-truth segment (crowd included; void ignored);
    columns: predicted class, last column = predicted void.
    """
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    segment_rows = counts[FIRST_SEGMENT:]
    rows = np.repeat(gt.labels, len(pred.labels))
    cols = np.tile(pred.labels, len(gt.labels))
    np.add.at(confusion, (rows, cols), segment_rows[:, FIRST_SEGMENT:].ravel())
    np.add.at(confusion, (gt.labels, np.full(len(gt.labels), num_classes)), segment_rows[:, VOID_INDEX])
    return confusion


def _picture(image: Any) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] (torch or numpy) or ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8."""
    array = to_numpy(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    return array


class PanopticEvaluator:
    """PQ family, semantic IoU, COCO AP, and optionally an export, over a stream of model outputs.

    Args:
        categories: the dataset's categories.
        trim_stuff: set predicted stuff segments below ``stuff_area_limit`` pixels to void
            before PQ and export (paper Appendix C).
        compute_ap: run COCOeval on ``detections`` (boxes, and masks when every image has them).
        instances: a COCO instances JSON for AP; default: derived from the targets' panoptic maps,
            which are in the evaluated frame even after resizing.
        export_dir: if given, predictions go to ``export_dir/panoptic_pred{/,.json}`` and the pictures
            to ``export_dir/visualizations/``.
        num_visualizations: the first that many images get pictures of ground truth against prediction,
            kept in :attr:`pictures` (exported or not: training logs them to MLflow at each evaluation).
    """

    def __init__(
        self,
        categories: CategoryMap,
        *,
        trim_stuff: bool = False,
        stuff_area_limit: int = 4096,
        compute_ap: bool = True,
        instances: str | os.PathLike[str] | dict[str, Any] | None = None,
        export_dir: str | os.PathLike[str] | None = None,
        num_visualizations: int = 0,
    ) -> None:
        self.categories = categories
        self.stuff_area_limit = stuff_area_limit if trim_stuff else None
        self.compute_ap = compute_ap
        self.instances = instances
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.num_visualizations = num_visualizations
        self.reset()

    @classmethod
    def from_config(cls, eval_config: Any, categories: CategoryMap, **kwargs: Any) -> PanopticEvaluator:
        """Build from :class:`unips.config.EvalConfig`: ``trim_stuff``, ``stuff_area_limit``, ``num_visualizations``."""
        kwargs.setdefault("num_visualizations", eval_config.num_visualizations)
        return cls(categories, trim_stuff=eval_config.trim_stuff, stuff_area_limit=eval_config.stuff_area_limit,
                   **kwargs)

    def reset(self) -> None:
        """Forget everything processed so far."""
        num = len(self.categories)
        self.pq = PQAccumulator(self.categories, self.stuff_area_limit)
        self.semantic = ConfusionMatrix(num)
        self.semantic_pan = ConfusionMatrix(num)
        self.ap = CocoAP(self.categories, self.instances) if self.compute_ap else None
        self.exporter = PanopticExporter(self.export_dir, self.categories) if self.export_dir is not None else None
        self._seen_semantic = False
        self._seen_detections = False
        # image stem -> {"overlay": (H, W, 3), "gt_vs_pred": (H, 2W + 4, 3)} uint8, in processing order
        self.pictures: dict[str, dict[str, np.ndarray]] = {}

    def process(self, outputs: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]],
                images: Sequence[Any] | None = None) -> None:
        """Add one batch: per-image model outputs and dataset targets (and the images, for pictures)."""
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets")
        for index, (output, target) in enumerate(zip(outputs, targets, strict=True)):
            image_id = target["image_id"]
            if output.get("image_id") not in (None, image_id):  # None: the model was not told the id
                raise PanopticFormatError(f"output for image id {output['image_id']} paired with the target "
                                          f"of image id {image_id}")
            match, counts, (gt_seg, pred_seg) = self.pq.match(
                output["panoptic"], output["segments_info"], target["panoptic"], target["segments_info"],
                image_id=image_id)
            self.pq.add(match)
            self.semantic_pan.add_counts(panoptic_confusion(counts, gt_seg, pred_seg, len(self.categories)))
            if output.get("semantic") is not None:
                self.semantic.update(output["semantic"], target["semantic"], image_id=image_id)
                self._seen_semantic = True
            if self.ap is not None and output.get("detections") is not None:
                if self.instances is None:
                    self.ap.add_ground_truth(image_id, target["panoptic"], target["segments_info"])
                self.ap.add_detections(image_id, output["detections"])
                self._seen_detections = True
            if self.exporter is not None or len(self.pictures) < self.num_visualizations:
                self._export(self._as_scored(output), target, images[index] if images is not None else None)

    def _as_scored(self, output: dict[str, Any]) -> dict[str, Any]:
        """The output as PQ scores it: with trimming on, small stuff segments are void in the export too."""
        if self.stuff_area_limit is None:
            return output
        things = [self.categories.dataset_id(t) for t in self.categories.thing_train_ids]
        panoptic, segments = trim_small_stuff(to_numpy(output["panoptic"]), output["segments_info"], things,
                                              self.stuff_area_limit)
        return {**output, "panoptic": panoptic, "segments_info": segments}

    def _export(self, output: dict[str, Any], target: dict[str, Any], image: Any) -> None:
        """The output to the export (if any) and, while pictures are wanted, its pictures."""
        stem = Path(target.get("file_name") or str(target["image_id"])).stem
        if self.exporter is not None:
            stem = self.exporter.add(target["image_id"], output["panoptic"], output["segments_info"],
                                     target.get("file_name")).stem
        if len(self.pictures) < self.num_visualizations:
            pictures = visualization_pictures(stem, self.categories, pred=(output["panoptic"], output["segments_info"]),
                                              gt=(target["panoptic"], target["segments_info"]),
                                              image=_picture(image) if image is not None else None)
            self.pictures[stem] = pictures
            if self.export_dir is not None:
                write_visualizations(self.export_dir / "visualizations", stem, pictures)

    def evaluate(self) -> dict[str, float]:
        """Flat metrics in percent (see the module docstring); writes the export JSON if exporting."""
        if self.pq.num_images == 0:
            raise ValueError("no image was processed")
        metrics = self.pq.result().flat()
        stuff = self.categories.stuff_train_ids
        if self._seen_semantic:
            metrics["mIoU"] = 100 * self.semantic.mean_iou()
            metrics["IoU_st"] = 100 * self.semantic.mean_iou(stuff)
        metrics["mIoU_pan"] = 100 * self.semantic_pan.mean_iou()
        metrics["IoU_st_pan"] = 100 * self.semantic_pan.mean_iou(stuff)
        if self.ap is not None and self._seen_detections:
            metrics.update(self.ap.evaluate())
        if self.exporter is not None:
            self.exporter.write_json()
        return metrics

    def per_class(self) -> pd.DataFrame:
        """One row per category: PQ, SQ, RQ, TP, FP, FN, IoU (semantic head), IoU_pan (percent)."""
        table = self.pq.result().per_class
        frame = pd.DataFrame({
            "category_id": table["category_id"], "name": table["name"], "isthing": table["isthing"],
            "PQ": 100 * table["pq"], "SQ": 100 * table["sq"], "RQ": 100 * table["rq"],
            "TP": table["tp"], "FP": table["fp"], "FN": table["fn"],
        })
        if self._seen_semantic:
            frame["IoU"] = 100 * self.semantic.iou()
        frame["IoU_pan"] = 100 * self.semantic_pan.iou()
        return frame
