"""Shared fixtures: small synthetic datasets written to temporary folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from unips.datasets import synthetic

# Every Ray instance of the suite is one node that cannot be preempted: Ray Train's preemption
# watcher would cost one more Python process per training (about 5 s of CPU each here).
# Set before any test starts Ray, so the scripts the tests run inherit it.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# Every process of the suite computes on one thread: the pinned smoke training (tests/platform/conftest.py)
# holds one of the two cores throughout, and a second thread would only oversubscribe them (OpenMP threads
# spin while they wait). Ray passes it on to its workers, which would otherwise take one thread per CPU.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SMALL = {"num_train": 12, "num_val": 6, "height": 128, "width": 256, "seed": 7}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset shared by tests that only read it."""
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "data", **SMALL)


@pytest.fixture(scope="module")
def batch(synthetic_root: Path):  # type: ignore[no-untyped-def]
    """The small set's categories and its first two training images, collated: ``(categories, (images, targets))``."""
    from unips.datasets import PanopticDataset, collate_panoptic

    dataset = PanopticDataset(synthetic_root / "images/train", synthetic_root / "panoptic_train.json",
                              synthetic_root / "panoptic_train")
    return dataset.categories, collate_panoptic([dataset[0], dataset[1]])


@pytest.fixture
def synthetic_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the small synthetic dataset that a test may damage."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))
