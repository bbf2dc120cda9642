"""Helpers for the evaluation tests: write COCO panoptic sets to disk and score them with panopticapi."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from panopticapi.evaluation import pq_compute, pq_compute_single_core

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import id2rgb, read_json, write_json, write_png

#: (image id, (H, W) segment ids, segments_info)
Item = tuple[int, np.ndarray, list[dict[str, Any]]]


def write_set(root: Path, name: str, items: Sequence[Item], categories: CategoryMap) -> tuple[Path, Path]:
    """Write ``root/<name>.json`` and ``root/<name>/<id>.png`` as given (no checks); return (json, folder)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, ids, segments in items:
        write_png(folder / f"{image_id}.png", id2rgb(ids))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": ids.shape[0], "width": ids.shape[1]})
        annotations.append({"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": segments})
    json_path = root / f"{name}.json"
    write_json(json_path, {"images": images, "annotations": annotations, "categories": categories.to_json()})
    return json_path, folder


def segments_of(ids: np.ndarray, category: dict[int, int], crowd: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Ground-truth style segments_info (id order) of a map, from segment id -> category id."""
    out = []
    for seg_id in sorted(int(i) for i in np.unique(ids) if i != 0):
        mask = ids == seg_id
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        out.append({"id": seg_id, "category_id": category[seg_id], "area": int(mask.sum()),
                    "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
                    "iscrowd": int(seg_id in crowd)})
    return out


def panopticapi_scores(gt_json: Path, pred_json: Path, gt_folder: Path, pred_folder: Path, pooled: bool = False
                       ) -> tuple[dict[str, Any] | None, dict[int, dict[str, float]]]:
    """panopticapi's answer: ``(pq_compute's result or None if it divided by zero, per-category counts)``.

    The counts (tp, fp, fn, iou) come from ``pq_compute_single_core``, the per-process loop of
    ``pq_compute``, which ``pq_compute`` does not return. By default the result is then made from
    those counts by panopticapi's own ``pq_average``, as ``pq_compute`` makes it, without starting
    ``pq_compute``'s process pool (a second or so per call, hundreds of calls in the suite);
    ``pooled=True`` calls ``pq_compute`` itself.
    """
    gt, pred = read_json(gt_json), read_json(pred_json)
    by_image = {a["image_id"]: a for a in pred["annotations"]}
    pairs = [(a, by_image[a["image_id"]]) for a in gt["annotations"]]
    categories = {c["id"]: c for c in gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):  # panopticapi prints progress
        stat = pq_compute_single_core(0, pairs, str(gt_folder), str(pred_folder), categories)
        try:
            if pooled:
                result = pq_compute(str(gt_json), str(pred_json), str(gt_folder), str(pred_folder))
            else:
                result = {}
                for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
                    result[name], per_class = stat.pq_average(categories, isthing=isthing)
                    if name == "All":
                        result["per_class"] = per_class
        except ZeroDivisionError:  # a group with no counted category (quirk 6)
            result = None
    counts = {cat: {"tp": s.tp, "fp": s.fp, "fn": s.fn, "iou": s.iou} for cat, s in stat.pq_per_cat.items()}
    return result, counts


def assert_same_as_panopticapi(ours: dict[str, Any], reference: dict[str, Any] | None,
                               counts: dict[int, dict[str, float]], tol: float = 1e-9) -> None:
    """Our ``PQResult.to_panopticapi()`` equals panopticapi's result (to ``tol``) and per-category counts.

    The IoU sums are compared to 1e-9 only: the single-process loop adds them in another
    order than ``pq_compute``'s processes do.
    """
    for cat, ref in ours["per_class"].items():
        expected = counts.get(cat, {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
        assert (ref["tp"], ref["fp"], ref["fn"]) == (expected["tp"], expected["fp"], expected["fn"]), cat
        assert abs(ref["iou"] - expected["iou"]) <= 1e-9, cat
    if reference is None:
        assert any(ours[g]["n"] == 0 and np.isnan(ours[g]["pq"]) for g in ("All", "Things", "Stuff"))
        return
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == reference[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert abs(ours[group][key] - reference[group][key]) <= tol, (group, key)
    assert set(reference["per_class"]) == set(ours["per_class"])
    for cat, ref in reference["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert abs(ours["per_class"][cat][key] - ref[key]) <= tol, (cat, key)
