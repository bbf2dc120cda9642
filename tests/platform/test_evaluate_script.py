"""experiments/evaluate.py: a checkpoint in, scores and COCO panoptic predictions out."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from panopticapi.evaluation import pq_compute

from tests.platform.conftest import tiny_config
from unips.datasets.build import build_dataset
from unips.models.build import build_model
from unips.platform.checkpoint import load_state, save_state
from unips.platform.evaluate import evaluate_as_configured
from unips.platform.trained_runs import checkpoint_of_run, training_run

REPO = Path(__file__).resolve().parents[2]


def test_evaluate_exports_predictions_panopticapi_scores_as_we_do(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "eval.score_thresh=0.0")
    dataset = build_dataset(cfg.data, "val", train=False)  # generates the tiny synthetic set
    torch.manual_seed(0)
    model = build_model(cfg, dataset.categories)
    save_state(tmp_path / "ckpt", {"model": model.state_dict(), "step": 3, "config": cfg.model_dump(mode="json"),
                                   "categories": dataset.categories.to_json()})
    out = tmp_path / "eval"
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments/evaluate.py"), "--checkpoint", str(tmp_path / "ckpt"),
         "--mode", "amx", "heu", "--no-trim-stuff", "--num-visualizations", "1", "--out", str(out)],
        check=True, capture_output=True, text=True, cwd=tmp_path)
    printed = done.stdout
    assert "evaluate + export" not in done.stderr  # stderr a pipe: no progress bar
    assert "checkpoint at step 3" in printed and "stuff trimming off" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trim_stuff"] is False and {"amx/PQ", "heu/PQ", "amx/mIoU", "amx/AP_box"} <= set(metrics)
    for mode in ("amx", "heu"):
        assert (out / f"per_class_{mode}.csv").is_file()
        assert len(list((out / mode / "visualizations").glob("*.png"))) == 2  # overlay + GT vs prediction
        with contextlib.redirect_stdout(io.StringIO()):
            reference = pq_compute(str(cfg.data.root / "panoptic_val.json"), str(out / mode / "panoptic_pred.json"),
                                   str(cfg.data.root / "panoptic_val"), str(out / mode / "panoptic_pred"))
        assert abs(100 * reference["All"]["pq"] - metrics[f"{mode}/PQ"]) < 1e-9


def test_evaluation_shows_a_bar_over_the_images_when_asked(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(tmp_path, "eval.modes=[amx]")
    dataset = build_dataset(cfg.data, "val", train=False)
    model = build_model(cfg, dataset.categories)
    evaluate_as_configured(model, cfg, dataset, dataset.categories)
    assert capsys.readouterr().err == ""  # the library's default, and training's: no bar
    evaluate_as_configured(model, cfg, dataset, dataset.categories, export_dir=tmp_path / "eval", progress=True)
    assert "evaluate + export: 100%" in (err := capsys.readouterr().err) and "2/2" in err


def test_run_latest_evaluates_the_final_weights_of_the_newest_finished_training(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "eval.modes=[amx]")
    dataset = build_dataset(cfg.data, "val", train=False)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # where the command looks by default
    experiment = client.create_experiment("unips", artifact_location=(tmp_path / "mlruns").as_uri())
    for step, name, status in ((5, "older", "FINISHED"), (7, "newer", "FINISHED"), (9, "unfinished", "RUNNING")):
        torch.manual_seed(step)
        state = save_state(tmp_path / name, {"model": build_model(cfg, dataset.categories).state_dict(), "step": step,
                                             "config": cfg.model_dump(mode="json"),
                                             "categories": dataset.categories.to_json()})
        run = client.create_run(experiment, run_name=f"train {name}", tags={"unips.run": name}).info.run_id
        client.log_artifact(run, str(state), "checkpoint")
        client.set_terminated(run, status)

    evaluated = subprocess.run([sys.executable, str(REPO / "experiments/evaluate.py"), "--run", "latest",
                                "--max-images", "1", "--num-visualizations", "0", "--out", str(tmp_path / "eval")],
                               capture_output=True, text=True, cwd=tmp_path)
    assert "checkpoint at step 7" in evaluated.stdout, evaluated.stderr[-2000:]
    # By name, as the Ray folder (tag) or as the UI shows it; a name that is not there is named.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for name in ("older", "train older"):
        assert load_state(checkpoint_of_run(uri, name, tmp_path / name.replace(" ", "_")))["step"] == 5
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"no finished training run named 'nope' in the MLflow store {uri}: train one first, or pass --tracking-uri")):
        training_run(uri, "nope")
