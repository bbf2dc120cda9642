"""The file CLI: same numbers as the in-memory path, panopticapi's table, per-class files, trimming."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from panopticapi.evaluation import pq_compute

from unips.datasets import PanopticDataset
from unips.evaluation.export import PanopticExporter
from unips.testing.perturb import perturb
from unips.evaluation.pq import main
from unips.evaluation.pq_files import evaluate_pq_files
from unips.evaluation.pq_stats import PQAccumulator
from unips.evaluation.trim import trim_small_stuff
from tests.evaluation.panoptic_files import assert_same_as_panopticapi, panopticapi_scores

pytestmark = pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")


def _predictions(root: Path, out: Path, seed: int = 3) -> tuple[PanopticDataset, list[tuple[Any, ...]]]:
    """Perturbed predictions of the val split, exported to ``out/pred{.json,/}``; returns (dataset, pairs)."""
    dataset = PanopticDataset(root / "images/val", root / "panoptic_val.json", root / "panoptic_val")
    exporter = PanopticExporter(out, dataset.categories, name="pred")
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(len(dataset)):
        _, target = dataset[index]
        pred, segments = perturb(rng, target["panoptic"].numpy(), target["segments_info"], dataset.categories)
        exporter.add(target["image_id"], pred, segments, target["file_name"])
        pairs.append((pred, segments, target))
    exporter.write_json()
    return dataset, pairs


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--gt-json", str(root / "panoptic_val.json"), "--gt-folder", str(root / "panoptic_val"),
            "--pred-json", str(out / "pred.json"), "--pred-folder", str(out / "pred"), *extra]


def _run(argv: list[str]) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    return code, stdout.getvalue()


def test_cli_gives_exactly_the_in_memory_numbers(synthetic_root: Path, tmp_path: Path) -> None:
    dataset, pairs = _predictions(synthetic_root, tmp_path)
    code, _ = _run(_args(synthetic_root, tmp_path, "--workers", "1", "--per-class-csv", str(tmp_path / "c.csv"),
                         "--per-class-json", str(tmp_path / "c.json")))
    assert code == 0
    in_memory = PQAccumulator(dataset.categories)
    for pred, segments, target in pairs:  # targets: maps and areas as the data loader gives them
        in_memory.update(pred, segments, target["panoptic"], target["segments_info"], image_id=target["image_id"])
    expected = in_memory.result().per_class
    from_csv = pd.read_csv(tmp_path / "c.csv", float_precision="round_trip")
    pd.testing.assert_frame_equal(from_csv, expected, check_exact=True, check_dtype=False)
    from_json = pd.DataFrame(json.loads((tmp_path / "c.json").read_text()))
    pd.testing.assert_frame_equal(from_json, expected, check_exact=True, check_dtype=False)
    assert expected["tp"].sum() > 0 and expected["fp"].sum() > 0 and expected["fn"].sum() > 0


def test_cli_with_workers_differs_from_in_memory_by_float_rounding_only(synthetic_root: Path,
                                                                        tmp_path: Path) -> None:
    dataset, pairs = _predictions(synthetic_root, tmp_path)
    assert _run(_args(synthetic_root, tmp_path, "--workers", "2", "--per-class-csv", str(tmp_path / "c.csv")))[0] == 0
    in_memory = PQAccumulator(dataset.categories)
    for pred, segments, target in pairs:
        in_memory.update(pred, segments, target["panoptic"], target["segments_info"])
    expected = in_memory.result().per_class
    got = pd.read_csv(tmp_path / "c.csv", float_precision="round_trip")
    assert (got[["tp", "fp", "fn"]].to_numpy() == expected[["tp", "fp", "fn"]].to_numpy()).all()
    np.testing.assert_allclose(got[["pq", "sq", "rq", "iou"]], expected[["pq", "sq", "rq", "iou"]], rtol=0, atol=1e-12)


def test_a_bar_counts_every_image_across_the_threads_when_asked(synthetic_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    dataset, _ = _predictions(synthetic_root, tmp_path)
    gt, pred = synthetic_root / "panoptic_val.json", tmp_path / "pred.json"
    quiet, _ = evaluate_pq_files(gt, pred, workers=2)
    assert capsys.readouterr().err == ""  # the library's default: no bar
    shown, _ = evaluate_pq_files(gt, pred, workers=2, progress=True)
    assert "PQ: 100%" in (err := capsys.readouterr().err) and f"{len(dataset)}/{len(dataset)}" in err
    assert shown.flat() == quiet.flat()


def test_cli_prints_panopticapis_table(synthetic_root: Path, tmp_path: Path) -> None:
    _predictions(synthetic_root, tmp_path)
    code, printed = _run(_args(synthetic_root, tmp_path))
    reference = io.StringIO()
    with contextlib.redirect_stdout(reference):
        pq_compute(str(synthetic_root / "panoptic_val.json"), str(tmp_path / "pred.json"),
                   str(synthetic_root / "panoptic_val"), str(tmp_path / "pred"))
    table = [line for line in reference.getvalue().splitlines() if "|" in line or line.startswith("---")]
    assert code == 0 and len(table) == 5
    assert printed.splitlines()[:5] == table


def test_stuff_trimming_equals_panopticapi_on_predictions_trimmed_beforehand(synthetic_root: Path,
                                                                            tmp_path: Path) -> None:
    dataset, pairs = _predictions(synthetic_root, tmp_path / "raw", seed=5)
    limit = 400
    things = {c.id for c in dataset.categories.categories if c.isthing}
    trimmed = PanopticExporter(tmp_path / "trimmed", dataset.categories, name="pred")
    removed = 0
    for pred, segments, target in pairs:
        small, kept = trim_small_stuff(pred, segments, things, limit)
        removed += len(segments) - len(kept)
        trimmed.add(target["image_id"], small, kept, target["file_name"])
    trimmed.write_json()
    assert removed > 0, "the limit must remove some stuff segments for this test to mean anything"

    gt = [synthetic_root / "panoptic_val.json", synthetic_root / "panoptic_val"]
    reference, counts = panopticapi_scores(gt[0], tmp_path / "trimmed/pred.json", gt[1], tmp_path / "trimmed/pred")
    _run(_args(synthetic_root, tmp_path / "raw", "--workers", "1", "--trim-stuff-area", str(limit),
               "--per-class-json", str(tmp_path / "c.json")))
    rows = json.loads((tmp_path / "c.json").read_text())
    ours_per_class = {r["category_id"]: r for r in rows}
    assert all(ours_per_class[c]["tp"] == v["tp"] and ours_per_class[c]["fp"] == v["fp"] for c, v in counts.items())

    in_memory = PQAccumulator(dataset.categories, stuff_area_limit=limit)
    for pred, segments, target in pairs:
        in_memory.update(pred, segments, target["panoptic"], target["segments_info"])
    assert_same_as_panopticapi(in_memory.result().to_panopticapi(), reference, counts)
    untrimmed = PQAccumulator(dataset.categories)
    for pred, segments, target in pairs:
        untrimmed.update(pred, segments, target["panoptic"], target["segments_info"])
    assert untrimmed.result().per_class["fp"].sum() > in_memory.result().per_class["fp"].sum()


@pytest.mark.slow
def test_module_entry_point_runs_and_fails_cleanly(synthetic_root: Path, tmp_path: Path) -> None:
    _predictions(synthetic_root, tmp_path)
    command = [sys.executable, "-m", "unips.evaluation.pq", *_args(synthetic_root, tmp_path, "--workers", "2")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # stderr a pipe: no bar
    assert [line.split("|")[0].strip() for line in done.stdout.splitlines()[2:5]] == ["All", "Things", "Stuff"]

    data = json.loads((tmp_path / "pred.json").read_text())
    data["annotations"] = data["annotations"][1:]
    (tmp_path / "pred.json").write_text(json.dumps(data))
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "no prediction for image id 1" in done.stderr
