"""One seed reaches every generator; the model and evaluation packages import without Ray or MLflow."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unips.seeding import seed_everything


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seed_everything_repeats_python_numpy_and_torch() -> None:
    seed_everything(11)
    first = _draws()
    seed_everything(11)
    assert _draws() == first
    seed_everything(12)
    assert _draws() != first


class _WorkerDraws(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return _draws()


def test_loader_workers_are_seeded_reproducibly_and_differently() -> None:
    def run(seed: int) -> list[tuple[float, ...]]:
        loader = DataLoader(_WorkerDraws(), batch_size=None, num_workers=2, **seed_everything(seed))
        return [tuple(float(v) for v in item) for item in loader]

    first = run(3)
    assert run(3) == first
    # Items 0 and 1 come from different workers: Python's and NumPy's draws differ too.
    assert first[0][0] != first[1][0] and first[0][1] != first[1][1] and first[0][2] != first[1][2]


def test_pq_tools_start_without_torch() -> None:
    """The file evaluator and exporter need only NumPy: torch would cost seconds and ~500 MB per process."""
    code = ("import sys, unips.evaluation.pq, unips.evaluation.pq_files, unips.evaluation.coco_ap, "
            "unips.evaluation.export, unips.datasets.statistics; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
