"""PanopticDataset returns targets that agree with the files, and a collate that keeps them per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from unips.datasets import IGNORE_INDEX, PanopticDataset, collate_panoptic
from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import id2rgb, read_json, rgb2id


def _dataset(root: Path, split: str = "val") -> PanopticDataset:
    return PanopticDataset(root / "images" / split, root / f"panoptic_{split}.json", root / f"panoptic_{split}")


def test_category_ids_map_to_contiguous_train_ids_in_id_order(synthetic_root: Path) -> None:
    categories = _dataset(synthetic_root).categories
    json_ids = sorted(c["id"] for c in read_json(synthetic_root / "panoptic_val.json")["categories"])
    assert [categories.dataset_id(i) for i in range(len(categories))] == json_ids
    assert [categories.train_id(c) for c in json_ids] == list(range(len(json_ids)))
    assert categories.thing_train_ids == [0, 1, 2] and categories.stuff_train_ids == [3, 4, 5, 6]
    assert CategoryMap.from_json(categories.to_json()) == categories


def test_targets_agree_with_the_png_and_json(synthetic_root: Path) -> None:
    dataset = _dataset(synthetic_root)
    data = read_json(synthetic_root / "panoptic_val.json")
    for index, ann in enumerate(data["annotations"]):
        image, target = dataset[index]
        ids = rgb2id(np.array(Image.open(synthetic_root / "panoptic_val" / ann["file_name"])))
        raw = np.array(Image.open(synthetic_root / "images/val" / ann["file_name"]))
        assert image.dtype == torch.float32 and image.shape == (3, *ids.shape)
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, raw, atol=1e-3)
        np.testing.assert_array_equal(target["panoptic"].numpy(), ids)
        assert target["image_id"] == ann["image_id"] and target["file_name"] == ann["file_name"]

        segments = {s["id"]: s for s in ann["segments_info"]}
        semantic = target["semantic"].numpy()
        assert (semantic[ids == 0] == IGNORE_INDEX).all()
        for seg_id, seg in segments.items():
            assert (semantic[ids == seg_id] == dataset.categories.train_id(seg["category_id"])).all()

        things = [s for s in ann["segments_info"] if s["category_id"] in (1, 2, 3) and not s["iscrowd"]]
        assert target["instance_ids"].tolist() == [s["id"] for s in things]
        assert target["labels"].tolist() == [dataset.categories.train_id(s["category_id"]) for s in things]
        for mask, box, seg in zip(target["masks"], target["boxes"], things, strict=True):
            np.testing.assert_array_equal(mask.numpy().astype(bool), ids == seg["id"])
            x, y, w, h = seg["bbox"]
            assert box.tolist() == [x, y, x + w, y + h]
        crowd_ids = [s["id"] for s in ann["segments_info"] if s["iscrowd"]]
        np.testing.assert_array_equal(target["crowd"].numpy(), np.isin(ids, crowd_ids))


def test_collate_keeps_variable_length_targets_per_image(synthetic_root: Path) -> None:
    loader = DataLoader(_dataset(synthetic_root), batch_size=3, collate_fn=collate_panoptic)
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 3
    counts = [len(t["boxes"]) for t in targets]
    assert [t["masks"].shape[0] for t in targets] == counts == [len(t["labels"]) for t in targets]
    assert len(set(counts)) > 1, "the fixture should hold images with different instance counts"


def test_string_image_ids_and_subfolders_are_read(tmp_path: Path) -> None:
    """Cityscapes-style ids ('city_000001_000019') and image names with a city subfolder."""
    (tmp_path / "img" / "city").mkdir(parents=True)
    (tmp_path / "png").mkdir()
    ids = np.zeros((8, 10), dtype=np.int32)
    ids[:4] = 7
    ids[4:, 2:6] = 26001
    Image.fromarray(np.full((8, 10, 3), 9, np.uint8)).save(tmp_path / "img/city/a_leftImg8bit.png")
    Image.fromarray(id2rgb(ids)).save(tmp_path / "png/a.png")
    import json

    (tmp_path / "p.json").write_text(json.dumps({
        "images": [{"id": "city_a", "file_name": "city/a_leftImg8bit.png", "height": 8, "width": 10}],
        "annotations": [{"image_id": "city_a", "file_name": "a.png", "segments_info": [
            {"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 26001, "category_id": 26, "iscrowd": 0}]}],
        "categories": [{"id": 7, "name": "road", "isthing": 0}, {"id": 26, "name": "car", "isthing": 1}],
    }))
    _, target = PanopticDataset(tmp_path / "img", tmp_path / "p.json", tmp_path / "png")[0]
    assert target["image_id"] == "city_a"
    assert target["boxes"].tolist() == [[2.0, 4.0, 6.0, 8.0]] and target["labels"].tolist() == [1]
    assert target["semantic"][0, 0] == 0 and target["semantic"][7, 0] == IGNORE_INDEX
