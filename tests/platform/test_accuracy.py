"""Accuracy regression, the way detectron2 pins its quick-schedule results.

The smoke preset is trained as ``make train-smoke`` trains it (300 iterations on the
synthetic set, one worker, 2 CPU threads) and must reach the pinned PQs. The pins are the
mean over seeds 0, 1 and 2, the tolerances three standard deviations of those seeds
(measured on the 2-core development machine, 2026-11-26; README, "Training"):

    mode   seed 0  seed 1  seed 2   pin   tolerance
    full    39.5    43.3    31.8   38.2    17.6
    amx     42.0    51.5    31.1   41.5    30.6
    heu     50.7    55.7    43.8   50.1    17.9

300 iterations from scratch are a noisy schedule, and one seed is not reproducible across
runs with 2 threads (CPU kernels add in a thread-dependent order), hence the wide
tolerances. They still catch broken learning: a network trained for 3 iterations scores
a PQ of about 6.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unips.config import load_config
from unips.platform.launch import launch_training

pytestmark = pytest.mark.slow

# metric: (pinned value, tolerance), in percent.
PINNED = {"full/PQ": (38.2, 17.6), "amx/PQ": (41.5, 30.6), "heu/PQ": (50.1, 17.9)}


def test_smoke_preset_reaches_its_pinned_pq(local_ray: None, tmp_path: Path) -> None:
    cfg = load_config("smoke")
    outcome = launch_training(cfg, workdir=tmp_path, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert outcome.metrics["step"] == cfg.optim.max_iter
    reached = {key: round(outcome.metrics[key], 1) for key in PINNED}
    off = {key: value for key, value in reached.items() if abs(value - PINNED[key][0]) > PINNED[key][1]}
    assert not off, f"reached {reached}, pinned (value, tolerance) {PINNED}"
