"""Reading and checking a COCO panoptic JSON (no torch: evaluation tools use it too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import PanopticFormatError


@dataclass(frozen=True)
class ImageRecord:
    """One annotated image of a panoptic JSON."""

    image_id: int | str
    image_file: str
    png_file: str
    height: int | None
    width: int | None
    segments_info: tuple[dict[str, Any], ...]


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise PanopticFormatError(f"{where} lacks the key '{key}'")
    return obj[key]


def parse_panoptic_json(data: Any, json_path: Path) -> tuple[CategoryMap, list[ImageRecord]]:
    """Check a loaded COCO panoptic JSON and turn it into categories and image records."""
    if not isinstance(data, dict):
        raise PanopticFormatError(f"{json_path}: expected a JSON object, got {type(data).__name__}")
    categories = CategoryMap.from_json(_require(data, "categories", str(json_path)), source=json_path)
    images: dict[Any, dict[str, Any]] = {}
    for index, image in enumerate(_require(data, "images", str(json_path))):
        where = f"{json_path}: images[{index}]"
        images[_require(image, "id", where)] = image
        _require(image, "file_name", where)

    records = []
    for index, ann in enumerate(_require(data, "annotations", str(json_path))):
        image_id = _require(ann, "image_id", f"{json_path}: annotations[{index}]")
        where = f"{json_path}: annotation of image id {image_id}"
        if image_id not in images:
            raise PanopticFormatError(f"{where}: image id {image_id} is not listed in 'images'")
        segments = _require(ann, "segments_info", where)
        seen: set[int] = set()
        for seg in segments:
            seg_id = _require(seg, "id", f"{where}, a segment")
            cat_id = _require(seg, "category_id", f"{where}, segment id {seg_id}")
            if seg_id in seen:
                raise PanopticFormatError(f"{where}: duplicate segment id {seg_id}")
            seen.add(seg_id)
            if cat_id not in categories:
                raise PanopticFormatError(
                    f"{where}, segment id {seg_id}: unknown category_id {cat_id} "
                    f"(the JSON declares {[c.id for c in categories.categories]})"
                )
        image = images[image_id]
        records.append(
            ImageRecord(
                image_id=image_id,
                image_file=image["file_name"],
                png_file=_require(ann, "file_name", where),
                height=image.get("height"),
                width=image.get("width"),
                segments_info=tuple(segments),
            )
        )
    return categories, records
