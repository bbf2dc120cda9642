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

import pytest
from mlflow.tracking import MlflowClient

from tests.platform.conftest import SmokeTraining
from unips.config import load_config

pytestmark = pytest.mark.slow

# Smoke evaluates only at the end since 2026-12-02 (as `make demo` trains; the figures equal its
# msk aff e2e row). Earlier pins came from a run whose evaluations at steps 100 and 200 changed its course.
PINNED_ON = "2026-12-02, 2-core AMD EPYC development machine, torch 2.14.1 CPU, one thread"
TOLERANCE = 3.0  # percentage points
PINNED = {
    "full/PQ": 76.80, "full/PQ_th": 59.19, "full/PQ_st": 90.00,
    "amx/PQ": 74.66, "amx/PQ_th": 58.77, "amx/PQ_st": 86.57,
    "heu/PQ": 77.21, "heu/PQ_th": 58.35, "heu/PQ_st": 91.35,
    "full/mIoU": 91.79, "full/AP_box": 33.44,
}


def test_smoke_preset_reaches_its_pinned_metrics(smoke_training: SmokeTraining) -> None:
    cfg = load_config("smoke")
    assert cfg.platform.cpus_per_worker == 1  # the pins are one-thread figures
    uri = smoke_training.wait()
    # It ran beside the suite's other local Ray instances, with no traceback (ray_instance.init_ray).
    log = smoke_training.log.read_text()
    assert "Traceback" not in log and "multiple active Ray instances" not in log, log[-3000:]
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.max_iter"] == str(cfg.optim.max_iter)
    assert client.get_metric_history(run.info.run_id, "full/PQ")[-1].step == cfg.optim.max_iter
    reached = {key: round(run.data.metrics[key], 2) for key in PINNED}
    off = {key: (value, PINNED[key]) for key, value in reached.items() if abs(value - PINNED[key]) > TOLERANCE}
    assert not off, f"(reached, pinned) beyond ±{TOLERANCE}: {off}; all reached: {reached}"
