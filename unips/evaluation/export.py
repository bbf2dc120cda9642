"""Predictions written as COCO panoptic PNG + JSON (dataset category ids), and as colour pictures.

Layout under ``out_dir`` for ``name = "panoptic_pred"``::

    panoptic_pred/<stem>.png     segment ids as R + 256 G + 256^2 B
    panoptic_pred.json           images, annotations (segments_info with area and bbox), categories

so ``pq_compute(gt_json, "out/panoptic_pred.json")`` and ``python -m unips.evaluation.pq``
score it as they are. Every file is written to a temporary name and renamed, so an
interrupted export never leaves a truncated PNG or JSON where a finished one was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import VOID_ID, PanopticFormatError, as_id_map, id2rgb, mask_bbox_xywh, write_json
from unips.evaluation.pq_stats import parse_segments
from unips.evaluation.visualize import colorize_panoptic, overlay, side_by_side


def write_png_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def panoptic_annotation(
    image_id: int | str,
    panoptic: Any,
    segments_info: Sequence[dict[str, Any]],
    categories: CategoryMap,
    file_name: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Check a prediction and describe it as a COCO panoptic annotation.

    Args:
        panoptic: ``(H, W)`` integer segment ids (numpy or torch), 0 = void.
        segments_info: ``id``, ``category_id`` (dataset id) and optionally ``score`` per segment.
        file_name: the PNG's name inside the prediction folder.

    Returns:
        ``(ids, annotation)``: the ``(H, W)`` map as numpy and ``{"image_id", "file_name",
        "segments_info"}`` whose segments carry ``id, category_id, iscrowd, area, bbox`` (recounted
        from the map) and ``score`` when given.
    """
    where = f"image id {image_id} (prediction to export)"
    ids = as_id_map(panoptic, "predicted", where)
    parsed = parse_segments(segments_info, categories, where, ground_truth=False)
    in_map = {int(i) for i in pd.unique(ids.ravel())} - {VOID_ID}
    listed = set(parsed.ids.tolist())
    if in_map - listed:
        raise PanopticFormatError(f"{where}: segment id(s) {sorted(in_map - listed)} are in the map but not in "
                                  "its segments_info")
    if listed - in_map:
        raise PanopticFormatError(f"{where}: segment id(s) {sorted(listed - in_map)} are in segments_info but "
                                  "not in the map")
    segments = []
    for seg in segments_info:
        mask = ids == seg["id"]
        out = {"id": int(seg["id"]), "category_id": int(seg["category_id"]), "iscrowd": 0,
               "area": int(np.count_nonzero(mask)), "bbox": mask_bbox_xywh(mask)}
        if seg.get("score") is not None:
            out["score"] = float(seg["score"])
        segments.append(out)
    return ids, {"image_id": image_id, "file_name": file_name, "segments_info": segments}


class PanopticExporter:
    """Collects predictions into a COCO panoptic folder and JSON that panopticapi can score.

    Args:
        out_dir: where ``<name>/`` and ``<name>.json`` go (created if needed).
        categories: the dataset's categories (written to the JSON; segments must use their ids).
        name: base name of the PNG folder and the JSON file.

    Call :meth:`add` per image, then :meth:`write_json` (it may be called again after more images).
    """

    def __init__(self, out_dir: str | os.PathLike[str], categories: CategoryMap, name: str = "panoptic_pred") -> None:
        self.categories = categories
        self.folder = Path(out_dir) / name
        self.json_path = Path(out_dir) / f"{name}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._seen: set[Any] = set()

    def add(self, image_id: int | str, panoptic: Any, segments_info: Sequence[dict[str, Any]],
            file_name: str | None = None, png_name: str | None = None) -> Path:
        """Write one prediction's PNG; ``file_name`` is the image's file name (its stem names the PNG unless
        ``png_name`` does)."""
        if image_id in self._seen:
            raise PanopticFormatError(f"image id {image_id} was already exported to {self.folder}")
        png_name = png_name or f"{Path(file_name).stem if file_name else image_id}.png"
        ids, annotation = panoptic_annotation(image_id, panoptic, segments_info, self.categories, png_name)
        path = self.folder / png_name
        write_png_atomic(path, id2rgb(ids))
        self._seen.add(image_id)
        self.images.append({"id": image_id, "file_name": file_name or png_name,
                            "height": int(ids.shape[0]), "width": int(ids.shape[1])})
        self.annotations.append(annotation)
        return path

    def write_json(self) -> Path:
        """Write (or rewrite) the JSON of everything added so far, atomically."""
        write_json(self.json_path, {"images": self.images, "annotations": self.annotations,
                                    "categories": self.categories.to_json()})
        return self.json_path


def visualization_pictures(
    stem: str,
    categories: CategoryMap,
    pred: tuple[Any, Sequence[dict[str, Any]]],
    gt: tuple[Any, Sequence[dict[str, Any]]] | None = None,
    image: np.ndarray | None = None,
    alpha: float = 0.5,
) -> dict[str, np.ndarray]:
    """Colour pictures of a prediction: ``{"overlay": (H, W, 3)}`` and, with ground truth, ``"gt_vs_pred"``
    (a side-by-side ``(H, 2W + 4, 3)`` panel, ground truth left), all uint8.

    Args:
        pred, gt: ``(panoptic (H, W) ids, segments_info)`` with dataset category ids.
        image: ``(H, W, 3)`` uint8 picture to blend under the colours (plain colours without it).
    """
    def picture(ids: Any, segments: Sequence[dict[str, Any]]) -> np.ndarray:
        colours = colorize_panoptic(as_id_map(ids, "panoptic", stem), segments, categories)
        return overlay(image, colours, alpha) if image is not None else colours

    pictures = {"overlay": picture(*pred)}
    if gt is not None:
        pictures["gt_vs_pred"] = side_by_side([picture(*gt), pictures["overlay"]])
    return pictures


def write_visualizations(out_dir: str | os.PathLike[str], stem: str, pictures: dict[str, np.ndarray]) -> list[Path]:
    """:func:`visualization_pictures` as ``<stem>_overlay.png`` (and ``<stem>_gt_vs_pred.png``) in ``out_dir``;
    the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, picture in pictures.items():
        paths.append(out_dir / f"{stem}_{name}.png")
        write_png_atomic(paths[-1], picture)
    return paths
