"""Export: COCO panoptic PNG + JSON that panopticapi scores, atomic files, colour pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unips.datasets import PanopticDataset, PanopticFormatError
from unips.datasets.panoptic_png import read_panoptic_png
from unips.evaluation.export import PanopticExporter, visualization_pictures, write_png_atomic, write_visualizations
from unips.testing.perturb import perturb
from unips.evaluation.pq_stats import PQAccumulator
from unips.evaluation.visualize import colorize_panoptic, overlay
from tests.evaluation.panoptic_files import assert_same_as_panopticapi, panopticapi_scores, segments_of

pytestmark = pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")


def _dataset(root: Path) -> PanopticDataset:
    return PanopticDataset(root / "images/val", root / "panoptic_val.json", root / "panoptic_val")


def test_exported_predictions_are_scored_by_panopticapi_as_in_memory(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = _dataset(synthetic_root)
    exporter = PanopticExporter(tmp_path, dataset.categories)
    accumulator = PQAccumulator(dataset.categories)
    rng = np.random.default_rng(11)
    for index in range(len(dataset)):
        _, target = dataset[index]
        pred, segments = perturb(rng, target["panoptic"].numpy(), target["segments_info"], dataset.categories)
        pred_tensor = torch.from_numpy(pred).long()  # as the model returns it
        model_segments = [{"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"],
                           "score": s.get("score")} for s in segments]  # area / bbox left to the exporter
        exporter.add(target["image_id"], pred_tensor, model_segments, target["file_name"])
        accumulator.update(pred_tensor, model_segments, target["panoptic"], target["segments_info"])
    json_path = exporter.write_json()
    reference, counts = panopticapi_scores(dataset.json_path, json_path, dataset.png_dir, exporter.folder)
    assert_same_as_panopticapi(accumulator.result().to_panopticapi(), reference, counts)


def test_exported_segments_carry_dataset_ids_and_areas_and_boxes_of_the_map(tmp_path: Path) -> None:
    from unips.datasets.synthetic import CATEGORIES

    ids = np.zeros((6, 9), np.int64)
    ids[1:4, 2:5] = 77  # a disc, category id 2 (training id 1)
    ids[4:, :] = 5  # road, category id 7
    exporter = PanopticExporter(tmp_path, CATEGORIES, name="p")
    exporter.add("img_a", ids, [{"id": 5, "category_id": 7}, {"id": 77, "category_id": 2, "score": 0.9}],
                 "img_a.jpg")
    data = json.loads(exporter.write_json().read_text())
    assert data["images"] == [{"id": "img_a", "file_name": "img_a.jpg", "height": 6, "width": 9}]
    (annotation,) = data["annotations"]
    assert annotation["file_name"] == "img_a.png"
    expected = {s["id"]: s for s in segments_of(ids, {5: 7, 77: 2})}
    for seg in annotation["segments_info"]:
        assert {k: seg[k] for k in ("id", "category_id", "area", "bbox", "iscrowd")} == expected[seg["id"]]
    assert annotation["segments_info"][1]["score"] == 0.9
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 7, 9, 11, 13]
    np.testing.assert_array_equal(read_panoptic_png(tmp_path / "p" / "img_a.png"), ids)


def test_a_bad_prediction_writes_nothing_and_keeps_earlier_files(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = _dataset(synthetic_root)
    exporter = PanopticExporter(tmp_path, dataset.categories)
    _, target = dataset[0]
    segments = [{"id": s["id"], "category_id": s["category_id"]} for s in target["segments_info"]]
    exporter.add(target["image_id"], target["panoptic"], segments, target["file_name"])
    before = exporter.write_json().read_bytes()
    _, second = dataset[1]
    with pytest.raises(PanopticFormatError, match=rf"image id {second['image_id']}.*segment id\(s\) \[4242\]"):
        exporter.add(second["image_id"], second["panoptic"], [*second["segments_info"],
                                                              {"id": 4242, "category_id": 7}], second["file_name"])
    assert sorted(p.name for p in exporter.folder.iterdir()) == [f"{Path(target['file_name']).stem}.png"]
    assert exporter.json_path.read_bytes() == before
    with pytest.raises(PanopticFormatError, match=rf"image id {target['image_id']} was already exported"):
        exporter.add(target["image_id"], target["panoptic"], segments, target["file_name"])


def test_a_failed_png_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    write_png_atomic(path, np.full((4, 4, 3), 9, np.uint8))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_png_atomic(path, np.zeros((4, 4, 3), np.float64))  # PIL refuses it once the temporary file exists
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_visualizations_show_ground_truth_left_and_prediction_right(synthetic_root: Path, tmp_path: Path) -> None:
    dataset = _dataset(synthetic_root)
    image, _, record = dataset.load(0)
    _, target = dataset[0]
    pred = np.roll(target["panoptic"].numpy(), 7, axis=1)
    pictures = visualization_pictures("000001", dataset.categories, pred=(pred, target["segments_info"]),
                                      gt=(target["panoptic"], target["segments_info"]), image=image)
    paths = write_visualizations(tmp_path, "000001", pictures)
    assert [p.name for p in paths] == ["000001_overlay.png", "000001_gt_vs_pred.png"]
    pair = np.array(Image.open(paths[1]))
    height, width = image.shape[:2]
    assert pair.shape == (height, 2 * width + 4, 3)
    gt_picture = overlay(image, colorize_panoptic(target["panoptic"].numpy(), target["segments_info"],
                                                  dataset.categories))
    pred_picture = overlay(image, colorize_panoptic(pred, target["segments_info"], dataset.categories))
    np.testing.assert_array_equal(pair[:, :width], gt_picture)
    np.testing.assert_array_equal(pair[:, width + 4:], pred_picture)
    np.testing.assert_array_equal(np.array(Image.open(paths[0])), pred_picture)
