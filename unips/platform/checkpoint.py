"""Training state in a checkpoint: model, optimizer, scheduler, step, RNG states, config, categories.

One file, ``state.pt``, written with ``torch.save`` (to a temporary name, then
renamed) and read with ``torch.load(weights_only=True)``: it holds only tensors,
numbers, strings, lists, tuples and dicts, so loading a checkpoint runs no code.
"""

from __future__ import annotations

import io
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
from unips.platform import storage

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


def load_state(location: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint (its ``state.pt`` or the folder holding it; a local path or a storage URI such as
    ``s3://bucket/ray_results/<run>/checkpoint_<time>``) with ``weights_only=True``."""
    state_file = location = str(location)
    if storage.is_dir(location):
        state_file = storage.join(location, STATE_FILE)
        # A run's folder: Ray Train keeps its checkpoints in checkpoint_<time>/ subfolders.
        if not storage.exists(state_file) and (inside := [folder for folder in storage.subfolders(location)
                                                          if storage.exists(storage.join(folder, STATE_FILE))]):
            raise FileNotFoundError(f"{location} is a folder of checkpoints, not one; the latest: {inside[-1]}")
    try:
        data = storage.read_bytes(state_file)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {state_file}") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{state_file} is not a unips checkpoint: {err}") from err


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
