"""The synthetic generator writes the COCO panoptic format exactly, deterministically and atomically."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from panopticapi.evaluation import pq_compute
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from unips.datasets import PanopticDataset, synthetic
from unips.datasets.panoptic_format import read_json


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _rgb2id_reference(path: Path) -> np.ndarray:
    """Independent of our code: panopticapi's own rgb2id."""
    from panopticapi.utils import rgb2id

    return rgb2id(np.array(Image.open(path), dtype=np.uint32))


def test_cli_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "unips.datasets.synthetic", "--out", str(out), "--num-images", "6",
             "--height", "96", "--width", "160", "--seed", "3"],
            check=True, capture_output=True, text=True,
        )
        assert done.stderr == ""  # stderr is a pipe, not a terminal: no progress bar
        assert done.stdout.startswith("wrote 6 train + 1 val images")
        runs.append(out)
    files = _files(runs[0])
    assert files == _files(runs[1])
    assert len(files) == (6 + 1) * 3 + 5  # 6 train + 1 val images, 3 PNGs each; 4 JSON + metadata
    match, mismatch, errors = filecmp.cmpfiles(runs[0], runs[1], files, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files)


def test_generation_shows_a_bar_per_split_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic.generate(tmp_path / "quiet", 2, 1, 32, 32)
    assert capsys.readouterr().err == ""  # the library's default: no bar
    synthetic.generate(tmp_path / "shown", 2, 1, 32, 32, progress=True)
    err = capsys.readouterr().err
    assert "train: 100%" in err and "2/2" in err and "val: 100%" in err and "1/1" in err


def test_different_seed_gives_different_scenes(tmp_path: Path) -> None:
    a = synthetic.generate(tmp_path / "a", 2, 1, 64, 96, seed=1)
    b = synthetic.generate(tmp_path / "b", 2, 1, 64, 96, seed=2)
    assert not filecmp.cmp(a / "images/train/000001.png", b / "images/train/000001.png", shallow=False)


def test_val_split_does_not_depend_on_train_size(tmp_path: Path) -> None:
    a = synthetic.generate(tmp_path / "a", 2, 2, 64, 96, seed=1)
    b = synthetic.generate(tmp_path / "b", 5, 2, 64, 96, seed=1)
    assert filecmp.cmp(a / "panoptic_val/000002.png", b / "panoptic_val/000002.png", shallow=False)


@pytest.mark.parametrize("split", ["train", "val"])
def test_panopticapi_scores_ground_truth_against_itself_as_perfect(
    synthetic_root: Path, split: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_json = str(synthetic_root / f"panoptic_{split}.json")
    results = pq_compute(gt_json, gt_json, str(synthetic_root / f"panoptic_{split}"),
                         str(synthetic_root / f"panoptic_{split}"))
    for group in ("All", "Things", "Stuff"):
        assert results[group]["pq"] == pytest.approx(1.0, abs=1e-12)
        assert results[group]["sq"] == pytest.approx(1.0, abs=1e-12)
        assert results[group]["rq"] == 1.0
    assert results["Things"]["n"] == 3 and results["Stuff"]["n"] == 4
    assert "100.0" in capsys.readouterr().out


def test_json_area_and_bbox_equal_what_the_png_holds(synthetic_root: Path) -> None:
    for split in ("train", "val"):
        data = read_json(synthetic_root / f"panoptic_{split}.json")
        for ann in data["annotations"]:
            ids = _rgb2id_reference(synthetic_root / f"panoptic_{split}" / ann["file_name"])
            assert {s["id"] for s in ann["segments_info"]} == set(np.unique(ids)) - {0}
            for seg in ann["segments_info"]:
                ys, xs = np.nonzero(ids == seg["id"])
                assert seg["area"] == len(ys)
                assert seg["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert seg["id"] // 1000 == seg["category_id"]


def test_categories_and_layout_follow_the_coco_panoptic_format(synthetic_root: Path) -> None:
    data = read_json(synthetic_root / "panoptic_train.json")
    assert set(data) == {"images", "annotations", "categories"}
    cats = data["categories"]
    assert sum(c["isthing"] for c in cats) >= 3 and sum(not c["isthing"] for c in cats) >= 3
    assert all({"id", "name", "isthing", "color", "supercategory"} <= set(c) for c in cats)
    for image, ann in zip(data["images"], data["annotations"], strict=True):
        assert image["id"] == ann["image_id"]
        assert (synthetic_root / "images/train" / image["file_name"]).is_file()
        with Image.open(synthetic_root / "panoptic_train" / ann["file_name"]) as png:
            assert png.mode == "RGB" and png.size == (image["width"], image["height"])


def test_semantic_pngs_hold_contiguous_train_ids(synthetic_root: Path) -> None:
    dataset = PanopticDataset(synthetic_root / "images/val", synthetic_root / "panoptic_val.json",
                              synthetic_root / "panoptic_val")
    for index in range(len(dataset)):
        _, target = dataset[index]
        semantic = np.array(Image.open(synthetic_root / "semantic_val" / target["file_name"]))
        np.testing.assert_array_equal(semantic, target["semantic"].numpy())


def test_instances_json_holds_the_thing_segments_as_rle(synthetic_root: Path) -> None:
    coco = COCO(str(synthetic_root / "instances_train.json"))
    panoptic = read_json(synthetic_root / "panoptic_train.json")
    thing_ids = {c["id"] for c in panoptic["categories"] if c["isthing"]}
    assert set(coco.getCatIds()) == thing_ids
    for ann in panoptic["annotations"][:5]:
        ids = _rgb2id_reference(synthetic_root / "panoptic_train" / ann["file_name"])
        things = [s for s in ann["segments_info"] if s["category_id"] in thing_ids]
        instances = coco.loadAnns(coco.getAnnIds(imgIds=[ann["image_id"]]))
        assert len(instances) == len(things)
        for seg, inst in zip(things, instances, strict=True):
            np.testing.assert_array_equal(mask_utils.decode(inst["segmentation"]).astype(bool), ids == seg["id"])
            assert inst["iscrowd"] == seg["iscrowd"] and inst["area"] == seg["area"]


def test_scenes_hold_every_hard_case(synthetic_root: Path) -> None:
    """Crowd, void, touching same-colour neighbours, nesting, occlusion and border cuts all occur."""
    data = read_json(synthetic_root / "panoptic_train.json")
    crowd = void = touching_same_colour = nested = overlapping = border = 0
    for ann in data["annotations"]:
        ids = _rgb2id_reference(synthetic_root / "panoptic_train" / ann["file_name"])
        image = np.array(Image.open(synthetic_root / "images/train" / ann["file_name"])).astype(np.float64)
        height, width = ids.shape
        void += int((ids == 0).sum())
        things = [s for s in ann["segments_info"] if s["category_id"] in (1, 2, 3)]
        crowd += sum(s["iscrowd"] for s in things)
        boxes = [s["bbox"] for s in things if not s["iscrowd"]]
        for i, (x, y, w, h) in enumerate(boxes):
            border += x == 0 or y == 0 or x + w == width or y + h == height
            for j, (x2, y2, w2, h2) in enumerate(boxes):
                if i != j and x < x2 + w2 and x2 < x + w and y < y2 + h2 and y2 < y + h:
                    overlapping += 1
                if i != j and x >= x2 and y >= y2 and x + w <= x2 + w2 and y + h <= y2 + h2:
                    nested += 1
        # Two different instances of one class side by side with (nearly) the same mean colour.
        left, right = ids[:, :-1], ids[:, 1:]
        pairs = {(int(a), int(b)) for a, b in zip(left[left != right], right[left != right], strict=True)}
        for a, b in pairs:
            if a and b and a // 1000 == b // 1000 and a // 1000 in (1, 2, 3):
                colour_a, colour_b = image[ids == a].mean(axis=0), image[ids == b].mean(axis=0)
                touching_same_colour += np.abs(colour_a - colour_b).max() < 12
    assert crowd > 0 and void > 0 and nested > 0 and overlapping > 0 and border > 0
    assert touching_same_colour > 0


def test_a_failure_mid_generation_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = synthetic.render_scene

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_scene", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.generate(tmp_path / "out", 4, 1, 64, 96)
    assert os.listdir(tmp_path) == []


def test_existing_output_is_kept_until_a_replacement_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = synthetic.generate(tmp_path / "out", 2, 1, 64, 96, seed=1)
    before = {f: (out / f).read_bytes() for f in _files(out)}
    with pytest.raises(FileExistsError, match=str(out)):
        synthetic.generate(out, 2, 1, 64, 96, seed=2)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(synthetic, "render_scene", broken)
    with pytest.raises(RuntimeError):
        synthetic.generate(out, 2, 1, 64, 96, seed=2, overwrite=True)
    assert {f: (out / f).read_bytes() for f in _files(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]
    monkeypatch.undo()
    synthetic.generate(out, 2, 1, 64, 96, seed=2, overwrite=True)
    assert read_json(out / synthetic.METADATA_FILE)["seed"] == 2
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_ensure_generated_reuses_a_matching_set_and_refuses_a_different_one(tmp_path: Path) -> None:
    root = synthetic.ensure_generated(tmp_path / "syn", 2, 1, 64, 96, seed=0)
    stamp = (root / "panoptic_train.json").stat().st_mtime_ns
    assert synthetic.ensure_generated(root, 2, 1, 64, 96, seed=0) == root
    assert (root / "panoptic_train.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="holds a different dataset"):
        synthetic.ensure_generated(root, 3, 1, 64, 96, seed=0)


def test_generation_rejects_degenerate_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sides >= 32"):
        synthetic.generate(tmp_path / "x", 1, 1, 16, 64)
