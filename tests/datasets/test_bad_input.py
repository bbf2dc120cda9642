"""Every kind of bad panoptic input fails with a message that names the culprit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unips.datasets import PanopticDataset, PanopticFormatError
from unips.datasets.panoptic_format import id2rgb


def _paths(root: Path) -> tuple[Path, Path, Path]:
    return root / "images/val", root / "panoptic_val.json", root / "panoptic_val"


def _open(root: Path) -> PanopticDataset:
    return PanopticDataset(*_paths(root))


def _edit_json(root: Path, edit: Any) -> dict[str, Any]:
    path = root / "panoptic_val.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return data


def _first(root: Path) -> dict[str, Any]:
    return json.loads((root / "panoptic_val.json").read_text())["annotations"][0]


def test_missing_json_names_the_file(synthetic_copy: Path) -> None:
    (synthetic_copy / "panoptic_val.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"panoptic_val\.json"):
        _open(synthetic_copy)


def test_invalid_json_names_the_file_and_position(synthetic_copy: Path) -> None:
    path = synthetic_copy / "panoptic_val.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(PanopticFormatError, match=r"panoptic_val\.json is not valid JSON.*line 1 column"):
        _open(synthetic_copy)


def test_json_without_annotations_names_the_key(synthetic_copy: Path) -> None:
    _edit_json(synthetic_copy, lambda d: d.pop("annotations"))
    with pytest.raises(PanopticFormatError, match=r"panoptic_val\.json lacks the key 'annotations'"):
        _open(synthetic_copy)


def test_missing_png_names_the_file_and_image_id(synthetic_copy: Path) -> None:
    ann = _first(synthetic_copy)
    (synthetic_copy / "panoptic_val" / ann["file_name"]).unlink()
    dataset = _open(synthetic_copy)
    with pytest.raises(FileNotFoundError, match=rf"image id {ann['image_id']}.*panoptic_val/{ann['file_name']}"):
        dataset[0]


def test_missing_image_names_the_file_and_image_id(synthetic_copy: Path) -> None:
    ann = _first(synthetic_copy)
    (synthetic_copy / "images/val" / ann["file_name"]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"image id {ann['image_id']}.*images/val/{ann['file_name']}"):
        _open(synthetic_copy)[0]


def test_truncated_image_names_the_file_and_image_id(synthetic_copy: Path) -> None:
    ann = _first(synthetic_copy)
    path = synthetic_copy / "images/val" / ann["file_name"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PanopticFormatError, match=rf"cannot decode image \(image id {ann['image_id']}\) .*{path.name}"):
        _open(synthetic_copy)[0]


def test_segment_in_png_but_not_in_json_names_segment_and_image(synthetic_copy: Path) -> None:
    removed = _first(synthetic_copy)["segments_info"][0]["id"]
    ann = _edit_json(synthetic_copy, lambda d: d["annotations"][0]["segments_info"].pop(0))["annotations"][0]
    with pytest.raises(PanopticFormatError, match=rf"image id {ann['image_id']}: segment id\(s\) \[{removed}\] "
                                                  r"are in the PNG .* but not in its segments_info"):
        _open(synthetic_copy)[0]


def test_segment_in_json_but_not_in_png_names_segment_and_image(synthetic_copy: Path) -> None:
    def add_ghost(data: dict[str, Any]) -> None:
        data["annotations"][0]["segments_info"].append(
            {"id": 3999, "category_id": 3, "iscrowd": 0, "area": 10, "bbox": [0, 0, 1, 1]})

    data = _edit_json(synthetic_copy, add_ghost)
    image_id = data["annotations"][0]["image_id"]
    with pytest.raises(PanopticFormatError, match=rf"image id {image_id}: segment id\(s\) \[3999\] are in "
                                                  r"segments_info .* but not in the PNG"):
        _open(synthetic_copy)[0]


def test_unknown_category_names_category_segment_and_image(synthetic_copy: Path) -> None:
    def corrupt(data: dict[str, Any]) -> None:
        data["annotations"][1]["segments_info"][0]["category_id"] = 999

    data = _edit_json(synthetic_copy, corrupt)
    ann = data["annotations"][1]
    with pytest.raises(PanopticFormatError, match=rf"image id {ann['image_id']}, segment id "
                                                  rf"{ann['segments_info'][0]['id']}: unknown category_id 999"):
        _open(synthetic_copy)


def test_duplicate_segment_ids_name_the_segment(synthetic_copy: Path) -> None:
    def duplicate(data: dict[str, Any]) -> None:
        segments = data["annotations"][0]["segments_info"]
        segments.append(dict(segments[0]))

    data = _edit_json(synthetic_copy, duplicate)
    ann = data["annotations"][0]
    with pytest.raises(PanopticFormatError, match=rf"image id {ann['image_id']}: duplicate segment id "
                                                  rf"{ann['segments_info'][0]['id']}"):
        _open(synthetic_copy)


def test_annotation_of_an_unlisted_image_names_the_id(synthetic_copy: Path) -> None:
    _edit_json(synthetic_copy, lambda d: d["annotations"][0].update(image_id=424242))
    with pytest.raises(PanopticFormatError, match="image id 424242 is not listed in 'images'"):
        _open(synthetic_copy)


def test_image_and_png_of_different_size_name_both_files(synthetic_copy: Path) -> None:
    ann = _first(synthetic_copy)
    path = synthetic_copy / "images/val" / ann["file_name"]
    Image.open(path).resize((200, 100)).save(path)
    with pytest.raises(PanopticFormatError, match=rf"image id {ann['image_id']}: image .*images/val/"
                                                  rf"{ann['file_name']} is 200x100 but its panoptic PNG "
                                                  rf".*panoptic_val/{ann['file_name']} is 256x128"):
        _open(synthetic_copy)[0]


def test_png_of_another_size_than_the_json_says_names_the_json(synthetic_copy: Path) -> None:
    _edit_json(synthetic_copy, lambda d: d["images"][0].update(height=64))
    with pytest.raises(PanopticFormatError, match=r"panoptic_val\.json gives size 256x64 but .* is 256x128"):
        _open(synthetic_copy)[0]


def test_non_rgb_png_names_the_file(synthetic_copy: Path) -> None:
    ann = _first(synthetic_copy)
    path = synthetic_copy / "panoptic_val" / ann["file_name"]
    Image.open(path).convert("L").save(path)
    with pytest.raises(PanopticFormatError, match=rf"image id {ann['image_id']} must be an 8-bit RGB PNG, got bit "
                                                  rf"depth 8 and colour type 0 \(greyscale\): .*{ann['file_name']}"):
        _open(synthetic_copy)[0]


def test_id2rgb_refuses_ids_beyond_24_bits() -> None:
    with pytest.raises(ValueError, match="segment ids must lie in"):
        id2rgb(np.array([[256**3]]))
