"""Every kind of bad prediction fails with a message that names the image id, segment id or file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from unips.datasets import PanopticFormatError
from unips.datasets.panoptic_format import id2rgb
from unips.datasets.panoptic_png import read_panoptic_png
from unips.datasets.synthetic import CATEGORIES
from unips.evaluation.coco_ap import detections_to_coco
from unips.evaluation.evaluator import PanopticEvaluator
from unips.evaluation.pq_files import evaluate_pq_files
from unips.evaluation.pq_stats import PQAccumulator
from unips.evaluation.semantic import ConfusionMatrix


@pytest.fixture
def files(synthetic_root: Path, tmp_path: Path) -> dict[str, Path]:
    """The val ground truth, and a perfect prediction (a copy of it) that each test damages."""
    shutil.copytree(synthetic_root / "panoptic_val", tmp_path / "pred")
    shutil.copy(synthetic_root / "panoptic_val.json", tmp_path / "pred.json")
    return {"gt_json": synthetic_root / "panoptic_val.json", "gt_folder": synthetic_root / "panoptic_val",
            "pred_json": tmp_path / "pred.json", "pred_folder": tmp_path / "pred"}


def _evaluate(files: dict[str, Path], workers: int = 1) -> Any:
    return evaluate_pq_files(files["gt_json"], files["pred_json"], files["gt_folder"], files["pred_folder"],
                             workers=workers)


def _edit(files: dict[str, Path], edit: Any) -> dict[str, Any]:
    data = json.loads(files["pred_json"].read_text())
    edit(data)
    files["pred_json"].write_text(json.dumps(data))
    return data


def _annotation(files: dict[str, Path], image_id: int) -> dict[str, Any]:
    return next(a for a in json.loads(files["pred_json"].read_text())["annotations"] if a["image_id"] == image_id)


def test_the_undamaged_prediction_scores_perfectly(files: dict[str, Path]) -> None:
    result, _ = _evaluate(files)
    assert result.groups["All"].pq == 1.0


def test_prediction_json_missing_an_image(files: dict[str, Path]) -> None:
    _edit(files, lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != 3]))
    with pytest.raises(PanopticFormatError, match=r"no prediction for image id 3 "):
        _evaluate(files)


def test_prediction_json_with_an_image_twice(files: dict[str, Path]) -> None:
    _edit(files, lambda d: d["annotations"].append(d["annotations"][1]))
    with pytest.raises(PanopticFormatError, match=r"image id 2 has more than one annotation"):
        _evaluate(files)


def test_png_of_the_wrong_size(files: dict[str, Path]) -> None:
    path = files["pred_folder"] / _annotation(files, 4)["file_name"]
    ids = read_panoptic_png(path)
    Image.fromarray(id2rgb(ids[:, :-8])).save(path)
    with pytest.raises(PanopticFormatError, match=rf"image id 4: the predicted PNG {path} is 248x128 but"):
        _evaluate(files)


def test_png_that_is_not_rgb(files: dict[str, Path]) -> None:
    path = files["pred_folder"] / _annotation(files, 2)["file_name"]
    Image.fromarray(np.zeros((128, 256), np.uint8)).save(path)
    with pytest.raises(PanopticFormatError, match=rf"image id 2 must be an 8-bit RGB PNG.*{path}"):
        _evaluate(files)


def test_missing_png(files: dict[str, Path]) -> None:
    path = files["pred_folder"] / _annotation(files, 5)["file_name"]
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"predicted PNG of image id 5 not found: {path}"):
        _evaluate(files)


def test_missing_prediction_folder(files: dict[str, Path]) -> None:
    shutil.rmtree(files["pred_folder"])
    with pytest.raises(FileNotFoundError, match=rf"PNG folder not found: {files['pred_folder']}"):
        _evaluate(files)


def test_unknown_category_id(files: dict[str, Path]) -> None:
    data = _edit(files, lambda d: d["annotations"][2]["segments_info"][0].update(category_id=99))
    seg_id = data["annotations"][2]["segments_info"][0]["id"]
    with pytest.raises(PanopticFormatError, match=rf"image id 3 .*segment id {seg_id} has unknown category_id 99"):
        _evaluate(files)


def test_segment_in_png_missing_from_json(files: dict[str, Path]) -> None:
    data = _edit(files, lambda d: d["annotations"][0]["segments_info"].pop(1))
    dropped = json.loads(files["gt_json"].read_text())["annotations"][0]["segments_info"][1]["id"]
    assert dropped not in [s["id"] for s in data["annotations"][0]["segments_info"]]
    with pytest.raises(PanopticFormatError,
                       match=rf"image id 1 \(prediction .*\): segment id\(s\) \[{dropped}\] are in the predicted map"):
        _evaluate(files)


def test_segment_in_json_missing_from_png(files: dict[str, Path]) -> None:
    _edit(files, lambda d: d["annotations"][1]["segments_info"].append({"id": 4242, "category_id": 7}))
    with pytest.raises(PanopticFormatError,
                       match=r"image id 2 \(prediction .*\): segment id\(s\) \[4242\] are in the predicted "
                             r"segments_info but not in its map"):
        _evaluate(files)


def test_duplicate_segment_id(files: dict[str, Path]) -> None:
    data = _edit(files, lambda d: d["annotations"][5]["segments_info"].append(d["annotations"][5]["segments_info"][0]))
    seg_id = data["annotations"][5]["segments_info"][0]["id"]
    with pytest.raises(PanopticFormatError, match=rf"image id 6 .*duplicate segment id {seg_id}"):
        _evaluate(files)


def test_segment_id_zero_is_void_not_a_segment(files: dict[str, Path]) -> None:
    _edit(files, lambda d: d["annotations"][0]["segments_info"].append({"id": 0, "category_id": 7}))
    with pytest.raises(PanopticFormatError, match=r"image id 1 .*segment id 0 must be an integer in \[1, 16777215\]"):
        _evaluate(files)


def test_an_error_in_a_worker_process_reaches_the_caller(files: dict[str, Path]) -> None:
    _edit(files, lambda d: d["annotations"][5]["segments_info"].append({"id": 4242, "category_id": 7}))
    with pytest.raises(PanopticFormatError, match=r"image id 6 .*\[4242\]"):
        _evaluate(files, workers=2)


def test_in_memory_prediction_of_another_size() -> None:
    gt = np.ones((4, 6), np.int64)
    with pytest.raises(PanopticFormatError, match=r"image id a \(prediction\): the prediction is 5x4 but the "
                                                  r"ground truth is 6x4"):
        PQAccumulator(CATEGORIES).update(np.ones((4, 5), np.int64), [{"id": 1, "category_id": 7}], gt,
                                         [{"id": 1, "category_id": 7, "area": 24}], image_id="a")


def test_in_memory_negative_and_float_maps() -> None:
    gt = np.ones((2, 2), np.int64)
    segments = [{"id": 1, "category_id": 7, "area": 4}]
    with pytest.raises(PanopticFormatError, match=r"image id 9 \(prediction\): predicted map holds ids in \[-1, 1\]"):
        PQAccumulator(CATEGORIES).update(np.array([[1, -1], [1, 1]]), segments[:1], gt, segments, image_id=9)
    with pytest.raises(PanopticFormatError, match=r"image id 9 \(prediction\): the predicted map must be a 2-D "
                                                  r"integer array, got float32"):
        PQAccumulator(CATEGORIES).update(torch.ones(2, 2), segments, gt, segments, image_id=9)


def test_evaluator_output_paired_with_the_wrong_target() -> None:
    target = {"image_id": 1, "panoptic": torch.ones(2, 2, dtype=torch.long),
              "segments_info": [{"id": 1, "category_id": 7, "area": 4, "iscrowd": 0}]}
    output = {"image_id": 2, "panoptic": target["panoptic"], "segments_info": target["segments_info"]}
    with pytest.raises(PanopticFormatError, match=r"output for image id 2 paired with the target of image id 1"):
        PanopticEvaluator(CATEGORIES).process([output], [target])


def test_semantic_label_out_of_range() -> None:
    gt = np.array([[0, 255], [3, 6]])
    with pytest.raises(PanopticFormatError, match=r"image id 12 \(semantic\): predicted labels \[7, 254\] are outside"):
        ConfusionMatrix(7).update(np.array([[0, 7], [254, 6]]), gt, image_id=12)


def test_detection_with_a_stuff_label() -> None:
    detections = {"boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]), "scores": torch.tensor([0.9]),
                  "labels": torch.tensor([4])}  # training id 4 is 'wall', a stuff class
    with pytest.raises(PanopticFormatError, match=r"image id 8 \(detections\): labels \[4\] are not thing"):
        detections_to_coco(8, detections, CATEGORIES)
