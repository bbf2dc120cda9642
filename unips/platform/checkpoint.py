"""Training state in a checkpoint: model, optimizer, scheduler, step, RNG states, config, categories.

One file, ``state.pt``, written with ``torch.save`` (to a temporary name, then
renamed) and read with ``torch.load(weights_only=True)``: it holds only tensors,
numbers, strings, lists, tuples and dicts, so loading a checkpoint runs no code.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unips.config import Config
from unips.datasets.categories import CategoryMap
from unips.models.build import build_model
from unips.models.panoptic_net import UnifiedPanopticNet

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch random states, in checkpoint-safe types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(directory: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory/state.pt`` atomically; returns the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{STATE_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, directory / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / STATE_FILE


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (its ``state.pt`` or the folder holding it) with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        if not (path / STATE_FILE).is_file() and (inside := sorted(path.glob(f"*/{STATE_FILE}"))):
            # A run's folder: Ray Train keeps its checkpoints in checkpoint_<time>/ subfolders.
            raise FileNotFoundError(f"{path} is a folder of checkpoints, not one; the latest: {inside[-1].parent}")
        path = path / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a unips checkpoint: {err}") from err


def model_from_checkpoint(path: str | os.PathLike[str]) -> tuple[UnifiedPanopticNet, Config, CategoryMap, int]:
    """Rebuild the trained network: ``(model, config, categories, step)``."""
    state = load_state(path)
    missing = {"model", "config", "categories", "step"} - set(state)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: not a unips training checkpoint")
    cfg = Config.model_validate(state["config"])
    categories = CategoryMap.from_json(state["categories"], source=path)
    # The state dict holds every weight: the ImageNet file need not exist here, and the
    # "freezing random layers" warning would be wrong.
    skeleton = cfg.model_copy(deep=True)
    skeleton.model.backbone.pretrained = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = build_model(skeleton, categories)
    model.load_state_dict(state["model"])
    return model, cfg, categories, int(state["step"])
