"""A real local Ray instance shared by the training tests, and a small training configuration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from unips.config import Config, load_config

# Small enough for seconds per step on 2 CPU cores, with every part of the network present.
TINY = [
    "model.backbone.fpn_channels=16", "model.semantic.channels=16", "model.panoptic.affinity_channels=8",
    "model.detector.box_head_dim=32", "model.detector.mask_head_channels=8",
    "data.synthetic.num_train=8", "data.synthetic.num_val=2", "data.loader_workers=0",
    "optim.images_per_batch=2", "optim.warmup_iters=1", "optim.panoptic_loss_start=0", "optim.panoptic_loss_ramp=0",
    "eval.period=0", "eval.max_images=2",
    "eval.num_visualizations=1", "platform.log_period=1", "platform.cpus_per_worker=1",
]


def tiny_config(root: Path, *overrides: str) -> Config:
    """The smoke preset shrunk, with its synthetic data under ``root``."""
    return load_config("smoke", [*TINY, f"data.root={root / 'data'}", *overrides])


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One real local Ray instance (2 CPUs) for all training tests."""
    import ray

    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    ray.init(num_cpus=2, log_to_driver=False)
    yield
    ray.shutdown()
