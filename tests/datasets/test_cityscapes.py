"""Cityscapes through cityscapesscripts' panoptic conversion, read by the generic reader."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unips.config import DataConfig
from unips.datasets import IGNORE_INDEX
from unips.datasets.build import build_dataset
from unips.datasets.cityscapes import panoptic_json_path, prepare_cityscapes
from unips.datasets.panoptic_format import read_json

# Cityscapes label ids: road 7 (train id 0), sky 23 (10), person 24 (11), car 26 (13);
# ego vehicle 1 is ignored in evaluation.
ROAD, SKY, PERSON, CAR, EGO = 7, 23, 24, 26, 1


def _write_fake_cityscapes(root: Path, split: str, city: str, frame: str, shift: int) -> np.ndarray:
    """One 64x128 frame with stuff, two cars, a person, a crowd of cars and an ignored region."""
    instance = np.full((64, 128), ROAD, dtype=np.int32)
    instance[:20] = SKY
    instance[30:50, 10 + shift : 40 + shift] = CAR * 1000 + 1
    instance[30:50, 40 + shift : 60 + shift] = CAR * 1000 + 2  # touches the first car
    instance[50:64, 100:128] = PERSON * 1000 + 0
    instance[40:60, 70:90] = CAR  # no instance id: a crowd region
    instance[:5, :10] = EGO
    label = np.where(instance >= 1000, instance // 1000, instance)
    name = f"{city}_{frame}"
    for folder in (root / "gtFine" / split / city, root / "leftImg8bit" / split / city):
        folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(instance.astype(np.uint16)).save(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png")
    Image.fromarray(label.astype(np.uint8)).save(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png")
    image = np.random.default_rng(shift).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")
    return instance


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    _write_fake_cityscapes(tmp_path, "train", "aachen", "000000_000019", shift=0)
    _write_fake_cityscapes(tmp_path, "train", "bochum", "000001_000019", shift=5)
    _write_fake_cityscapes(tmp_path, "val", "frankfurt", "000000_000294", shift=3)
    return tmp_path


def test_conversion_is_read_with_the_generic_reader(cityscapes_root: Path) -> None:
    prepare_cityscapes(cityscapes_root)
    data = DataConfig(dataset="cityscapes", root=cityscapes_root)
    dataset = build_dataset(data, "train", train=False)
    assert len(dataset) == 2 and len(dataset.categories) == 19
    names = dataset.categories.names
    assert names[0] == "road" and names[10] == "sky" and names[11] == "person" and names[13] == "car"
    assert dataset.categories.thing_train_ids == list(range(11, 19))

    image, target = dataset[1]
    assert target["image_id"] == "bochum_000001_000019"
    assert target["file_name"] == "bochum/bochum_000001_000019_leftImg8bit.png"
    raw = np.array(Image.open(cityscapes_root / "leftImg8bit/train" / target["file_name"]))
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, raw, atol=1e-3)
    # Two cars and one person; the instance-less car region is crowd; ego vehicle is void.
    assert sorted(target["instance_ids"].tolist()) == [24000, 26001, 26002]
    by_id = dict(zip(target["instance_ids"].tolist(), target["boxes"].tolist(), strict=True))
    assert by_id[26001] == [15, 30, 45, 50] and by_id[26002] == [45, 30, 65, 50]
    assert target["crowd"].sum() == 20 * 20 and target["crowd"][45, 75]
    semantic = target["semantic"]
    assert semantic[10, 50] == 10 and semantic[62, 2] == 0 and semantic[45, 75] == 13
    assert (semantic[:5, :10] == IGNORE_INDEX).all()


def test_conversion_writes_coco_panoptic_files_and_can_be_rerun(cityscapes_root: Path) -> None:
    prepare_cityscapes(cityscapes_root, splits=["val"])
    first = (panoptic_json_path(cityscapes_root, "val")).read_bytes()
    prepare_cityscapes(cityscapes_root, splits=["val"])
    assert panoptic_json_path(cityscapes_root, "val").read_bytes() == first
    data = read_json(panoptic_json_path(cityscapes_root, "val"))
    assert [img["file_name"] for img in data["images"]] == ["frankfurt/frankfurt_000000_000294_leftImg8bit.png"]
    assert {s["id"]: s["iscrowd"] for s in data["annotations"][0]["segments_info"]} == {
        ROAD: 0, SKY: 0, PERSON * 1000: 0, CAR: 1, CAR * 1000 + 1: 0, CAR * 1000 + 2: 0}
    assert [p.name for p in (cityscapes_root / "gtFine").iterdir() if p.name.startswith(".")] == []


def test_missing_split_names_the_searched_path(cityscapes_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"split 'test'.*gtFine/test/<city>/\*_gtFine_instanceIds\.png"):
        prepare_cityscapes(cityscapes_root, splits=["val", "test"])
    assert not panoptic_json_path(cityscapes_root, "val").exists()


def test_the_conversion_shows_a_bar_per_split_when_asked(cityscapes_root: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    prepare_cityscapes(cityscapes_root, progress=True)
    captured = capsys.readouterr()
    assert "train: 100%" in captured.err and "2/2" in captured.err and "val: 100%" in captured.err
    assert "1/1" in captured.err and captured.out == ""  # the bar moved with cityscapesscripts' prints, kept off stdout


def test_unconverted_dataset_says_how_to_convert(cityscapes_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m unips.datasets.cityscapes --root"):
        build_dataset(DataConfig(dataset="cityscapes", root=cityscapes_root), "val", train=False)


def _convert_command(root: Path) -> subprocess.CompletedProcess[str]:
    """``python -m unips.datasets.cityscapes --root ROOT`` as docs/data.md writes it, stderr a pipe."""
    return subprocess.run([sys.executable, "-m", "unips.datasets.cityscapes", "--root", str(root)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_the_command_converts_and_the_set_loads(cityscapes_root: Path) -> None:
    result = _convert_command(cityscapes_root)
    assert result.returncode == 0, result.stderr
    assert f"val: {panoptic_json_path(cityscapes_root, 'val')}" in result.stdout
    # Not a terminal: no bar; cityscapesscripts' own per-file percentages never reach stdout.
    assert result.stderr == "" and "Progress:" not in result.stdout, (result.stdout, result.stderr)
    dataset = build_dataset(DataConfig(dataset="cityscapes", root=cityscapes_root), "train", train=False)
    assert len(dataset) == 2


def test_a_frame_without_annotations_is_named_and_nothing_is_written(cityscapes_root: Path) -> None:
    _write_fake_cityscapes(cityscapes_root, "val", "frankfurt", "000000_000576", shift=7)
    missing = cityscapes_root / "gtFine/val/frankfurt/frankfurt_000000_000576_gtFine_instanceIds.png"
    missing.unlink()
    result = _convert_command(cityscapes_root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {cityscapes_root}/leftImg8bit/val/frankfurt/frankfurt_000000_000576_leftImg8bit.png has no "
        f"annotation: {missing} is missing"]
    assert not panoptic_json_path(cityscapes_root, "train").exists()
    assert not panoptic_json_path(cityscapes_root, "val").exists()


def test_a_root_without_gtfine_or_leftimg8bit_is_one_error_line(cityscapes_root: Path, tmp_path: Path) -> None:
    result = _convert_command(tmp_path / "empty")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: no Cityscapes annotations for split 'train': nothing matches "
        f"{tmp_path / 'empty'}/gtFine/train/<city>/*_gtFine_instanceIds.png"]
    shutil.rmtree(cityscapes_root / "leftImg8bit")
    with pytest.raises(FileNotFoundError, match=r"no Cityscapes images for split 'train': .*leftImg8bit/train does"):
        prepare_cityscapes(cityscapes_root)


def test_an_annotation_without_its_frame_is_named_and_nothing_is_written(cityscapes_root: Path) -> None:
    frame = cityscapes_root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    frame.unlink()
    with pytest.raises(FileNotFoundError, match=r"frankfurt_000000_000294_gtFine_instanceIds\.png annotates a frame "
                                                r"that is not there: .*frankfurt_000000_000294_leftImg8bit\.png"):
        prepare_cityscapes(cityscapes_root)
    assert not panoptic_json_path(cityscapes_root, "train").exists()
