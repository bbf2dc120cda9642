"""Accuracy regression, the way detectron2 pins its quick-schedule results.

The smoke preset is trained exactly as the README's ``experiments/train.py --preset smoke``
(``make train-smoke``) trains it, as a subprocess: 300 iterations on the synthetic set, one
worker, one CPU thread. It must reach the pinned metrics in every inference mode: PQ, PQ_th
and PQ_st of ``full``, ``amx`` and ``heu``, the semantic head's mIoU and the detector's
AP_box (these two do not depend on the mode). The training starts as soon as this test is
collected (``conftest.py``), so that it holds one core while the rest of the suite runs.

The pins are what this training reached on the 2-core development machine (PINNED_ON), and,
to the last digit, on the CI machine. One thread repeats a training exactly on one machine;
another machine's kernels add floating-point numbers in another order, which a few hundred
steps from scratch amplify: with ATen's generic kernels instead of AVX2 the metrics moved by
up to 1.81 (``python scripts/accuracy_spread.py``; README, "The smoke preset"). The
tolerance is that, rounded up with room for a machine further off.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.platform.conftest import SmokeTraining
from tests.test_readme_commands import readme_command
from unips.config import load_config

pytestmark = pytest.mark.slow

# Smoke evaluates only at the end since 2026-12-02 (as `make demo` trains). Re-pinned on 2026-12-03: the
# pins of 2026-12-02 (full/PQ 76.80, heu/PQ 77.21) no longer matched what the training gives, the same to the
# last digit from `experiments/train.py --preset smoke` alone and inside the suite on a loaded machine.
PINNED_ON = "2026-12-03, 2-core AMD EPYC development machine, torch 2.14.1 CPU, one thread"
TOLERANCE = 3.0  # percentage points
PINNED = {
    "full/PQ": 76.70, "full/PQ_th": 59.04, "full/PQ_st": 89.95,
    "amx/PQ": 74.46, "amx/PQ_th": 58.73, "amx/PQ_st": 86.25,
    "heu/PQ": 77.81, "heu/PQ_th": 59.10, "heu/PQ_st": 91.83,
    "full/mIoU": 92.20, "full/AP_box": 33.22,
}


def test_smoke_preset_reaches_its_pinned_metrics(smoke_training: SmokeTraining) -> None:
    cfg = load_config("smoke")
    assert cfg.platform.cpus_per_worker == 1  # the pins are one-thread figures
    uri = smoke_training.wait()
    # It ran beside the suite's other local Ray instances, each its own (ray_instance.init_ray).
    log = smoke_training.log.read_text()
    assert "multiple active Ray instances" not in log, log[-3000:]
    # One line per log step, ours: not also Ray Train's record of each report (train_loop.quiet_report_lines).
    assert "Reporting training result" not in log and f"step {cfg.optim.max_iter}/{cfg.optim.max_iter}  loss" in log
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.max_iter"] == str(cfg.optim.max_iter)
    assert client.get_metric_history(run.info.run_id, "full/PQ")[-1].step == cfg.optim.max_iter
    reached = {key: round(run.data.metrics[key], 2) for key in PINNED}
    off = {key: (value, PINNED[key]) for key, value in reached.items() if abs(value - PINNED[key]) > TOLERANCE}
    assert not off, f"(reached, pinned) beyond ±{TOLERANCE}: {off}; all reached: {reached}"


def test_the_readme_evaluates_and_predicts_with_that_training(smoke_training: SmokeTraining) -> None:
    """The README's evaluate and predict commands, as written, where its train command ran: both find the
    training in ./mlflow.db (``--run latest``), without being told where."""
    smoke_training.wait()
    folder = smoke_training.folder
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    for command in (readme_command(".venv/bin/python experiments/evaluate.py"),
                    readme_command(".venv/bin/python experiments/predict.py")):
        done = subprocess.run(shlex.split(command), cwd=folder, env=env, capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    metrics = json.loads((folder / "outputs/eval/metrics.json").read_text())
    run = MlflowClient(smoke_training.uri).search_runs([e.experiment_id for e in
                                                        MlflowClient(smoke_training.uri).search_experiments()])[0]
    # The final weights evaluated again give the training's own numbers (the training ran on one thread, this on
    # the default count, which may change float sums by an ulp: a pixel's argmax at most).
    for key in ("full/PQ", "heu/PQ", "full/mIoU"):
        assert metrics[key] == pytest.approx(run.data.metrics[key], abs=0.01), key
    pictures = sorted(path.stem for path in (folder / "data/synthetic/images/val").glob("*.png"))
    predicted = json.loads((folder / "outputs/predict/full/panoptic_pred.json").read_text())
    assert sorted(Path(image["file_name"]).stem for image in predicted["images"]) == pictures
    assert len(list((folder / "outputs/predict/full/overlays").glob("*.png"))) == len(pictures)
