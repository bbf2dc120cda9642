"""The ground-truth cache: the same numbers, the ground truth not decoded again, a changed file not read from it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unips.datasets import PanopticDataset, PanopticFormatError
from unips.datasets.panoptic_format import id2rgb, write_png
from unips.datasets.panoptic_png import read_panoptic_png
from unips.evaluation.export import PanopticExporter
from unips.evaluation.pq import main
from unips.evaluation.pq_files import evaluate_pq_files
from unips.testing.perturb import perturb


@pytest.fixture
def files(synthetic_root: Path, tmp_path: Path) -> dict[str, Path]:
    """A copy of the synthetic val split (ground truth we may damage) and perturbed predictions of it."""
    gt_folder = shutil.copytree(synthetic_root / "panoptic_val", tmp_path / "gt")
    gt_json = Path(shutil.copy(synthetic_root / "panoptic_val.json", tmp_path / "gt.json"))
    dataset = PanopticDataset(synthetic_root / "images/val", gt_json, gt_folder)
    exporter = PanopticExporter(tmp_path, dataset.categories, name="pred")
    rng = np.random.default_rng(11)
    for index in range(len(dataset)):
        _, target = dataset[index]
        pred, segments = perturb(rng, target["panoptic"].numpy(), target["segments_info"], dataset.categories)
        exporter.add(target["image_id"], pred, segments, target["file_name"])
    exporter.write_json()
    return {"gt_json": gt_json, "pred_json": tmp_path / "pred.json", "gt_folder": gt_folder,
            "pred_folder": tmp_path / "pred", "cache": tmp_path / "cache"}


def _per_class(files: dict[str, Path], cache: Path | None, workers: int = 1) -> pd.DataFrame:
    result, _ = evaluate_pq_files(files["gt_json"], files["pred_json"], files["gt_folder"], files["pred_folder"],
                                  workers=workers, gt_cache=cache)
    return result.per_class


def _overwrite_keeping_size_and_time(path: Path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data[:stat.st_size].ljust(stat.st_size, b"\0"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_second_evaluation_reads_the_ground_truth_from_the_cache(files: dict[str, Path]) -> None:
    plain = _per_class(files, None)
    first = _per_class(files, files["cache"])
    pngs = sorted(files["gt_folder"].glob("*.png"))
    entries = sorted(files["cache"].glob("*/*.npy"))
    assert len(entries) == len(pngs) > 0
    # The ground-truth PNGs are then made undecodable, their size and time kept: the cache still answers
    # (they are not decoded again), and without it the damage shows.
    for png in pngs:
        _overwrite_keeping_size_and_time(png, b"not a PNG any more")
    second = _per_class(files, files["cache"], workers=2)
    pd.testing.assert_frame_equal(first, plain, check_exact=True)
    pd.testing.assert_frame_equal(second[["tp", "fp", "fn"]], plain[["tp", "fp", "fn"]])
    np.testing.assert_allclose(second[["pq", "sq", "rq", "iou"]], plain[["pq", "sq", "rq", "iou"]], rtol=0, atol=1e-12)
    with pytest.raises(PanopticFormatError, match="is not a PNG file"):
        _per_class(files, None)


def test_a_changed_annotation_file_is_not_read_from_the_cache(files: dict[str, Path]) -> None:
    _per_class(files, files["cache"])
    # Another category for one ground-truth segment: the cached rows are keyed by the file's hash.
    data = json.loads(files["gt_json"].read_text())
    segment = data["annotations"][0]["segments_info"][0]
    others = [c["id"] for c in data["categories"] if c["isthing"] == 0 and c["id"] != segment["category_id"]]
    segment["category_id"] = others[0]
    data["annotations"][0]["segments_info"].reverse()  # and another segment order: other rows
    files["gt_json"].write_text(json.dumps(data))
    cached = _per_class(files, files["cache"])
    pd.testing.assert_frame_equal(cached, _per_class(files, None), check_exact=True)
    assert len(list(files["cache"].iterdir())) == 2


def test_a_changed_png_is_decoded_again(files: dict[str, Path]) -> None:
    original = _per_class(files, files["cache"])
    # The first ground-truth PNG redrawn with its two largest segments swapped (the JSON unchanged).
    png = sorted(files["gt_folder"].glob("*.png"))[0]
    (annotation,) = [a for a in json.loads(files["gt_json"].read_text())["annotations"] if a["file_name"] == png.name]
    ids = read_panoptic_png(png)
    a, b = (seg["id"] for seg in sorted(annotation["segments_info"], key=lambda seg: -seg["area"])[:2])
    before = png.stat().st_mtime_ns
    write_png(png, id2rgb(np.where(ids == a, b, np.where(ids == b, a, ids))))
    os.utime(png, ns=(before + 10**9, before + 10**9))
    changed = _per_class(files, files["cache"])
    pd.testing.assert_frame_equal(changed, _per_class(files, None), check_exact=True)
    assert not changed.equals(original)


def test_an_inconsistent_ground_truth_is_named_with_the_cache_on(files: dict[str, Path]) -> None:
    data = json.loads(files["gt_json"].read_text())
    dropped = data["annotations"][0]["segments_info"].pop()
    files["gt_json"].write_text(json.dumps(data))
    with pytest.raises(PanopticFormatError, match=rf"segment id\(s\) \[{dropped['id']}\] are in the ground-truth map"):
        _per_class(files, files["cache"])
    assert not any(p.name.startswith(data["annotations"][0]["file_name"]) for p in files["cache"].glob("*/*.npy"))


def test_the_command_line_keeps_its_cache_where_told(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--gt-json", str(files["gt_json"]), "--gt-folder", str(files["gt_folder"]),
            "--pred-json", str(files["pred_json"]), "--pred-folder", str(files["pred_folder"])]
    assert main([*args, "--gt-cache", str(files["cache"])]) == 0
    assert len(list(files["cache"].glob("*/*.npy"))) == len(list(files["gt_folder"].glob("*.png")))
    # Without a folder: the user's cache folder ($UNIPS_CACHE_DIR here).
    monkeypatch.setenv("UNIPS_CACHE_DIR", str(files["cache"].parent / "user"))
    assert main([*args, "--gt-cache"]) == 0
    assert list((files["cache"].parent / "user" / "pq_ground_truth").glob("*/*.npy"))
