"""One seed for Python, NumPy, torch and DataLoader workers."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import torch


class LoaderSeeding(TypedDict):
    """Keyword arguments for ``torch.utils.data.DataLoader``."""

    generator: torch.Generator
    worker_init_fn: Callable[[int], None]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python and NumPy from the worker's torch seed.

    PyTorch already seeds torch per worker (``base_seed + worker_id``, with
    ``base_seed`` drawn from the loader's generator); Python's ``random`` and NumPy
    would otherwise be identical copies in every worker.
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def seed_everything(seed: int) -> LoaderSeeding:
    """Seed Python, NumPy and torch (all devices); return DataLoader seeding arguments.

        loader = DataLoader(dataset, shuffle=True, num_workers=2, **seed_everything(cfg.seed))

    With the same seed and number of workers, the loader yields the same order and
    the same augmentations.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator()
    generator.manual_seed(seed)
    return {"generator": generator, "worker_init_fn": seed_worker}
