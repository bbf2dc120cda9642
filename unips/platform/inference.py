"""A trained network on plain pictures: ``(H, W, 3)`` uint8 in, per mode a panoptic id map and its segments
in the dataset's category ids out (what the exporter writes and what the MLflow model answers).

    predictor = PanopticPredictor.from_checkpoint("state.pt")
    answers = predictor(image, ["full", "heu"])  # {"full": PanopticAnswer, "heu": PanopticAnswer}
    answers["full"].panoptic         # (H, W) int32 segment ids, 0 = void
    answers["full"].segments_info    # id, category_id (dataset id), isthing, score, area, bbox

No ground truth, no Ray, no MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from unips.config import Config, InferenceMode, with_override
from unips.datasets.categories import CategoryMap
from unips.evaluation.segments import dataset_segments
from unips.models.build import build_postprocessor
from unips.models.panoptic_net import UnifiedPanopticNet
from unips.platform.checkpoint import model_from_checkpoint


@dataclass
class PanopticAnswer:
    """One picture in one mode: ``panoptic`` ``(H, W)`` int32 segment ids (0 = void) and its ``segments_info``
    (``id``, ``category_id`` in dataset ids, ``isthing``, ``score``, ``area``, ``bbox`` as x, y, w, h)."""

    panoptic: np.ndarray
    segments_info: list[dict[str, Any]]


def answerable_modes(cfg: Config) -> list[str]:
    """The inference modes a network built from ``cfg`` can answer in: those the config accepts as
    ``eval.modes`` (its one check of the switches against the modes)."""
    return [str(mode) for mode in InferenceMode if _accepts(cfg, str(mode))]


def _accepts(cfg: Config, mode: str) -> bool:
    try:
        with_override(cfg, f"eval.modes=[{mode}]")
    except ValueError:
        return False
    return True


class PanopticPredictor:
    """The network (in evaluation mode) and what its post-processor needs, one picture per forward pass.

    One picture at a time: a batch pads its pictures to the largest one, and the padding would change the
    answer near a smaller picture's right and bottom edges; alone, each picture gets the same answer
    whatever else is predicted with it.

    Args:
        model: the trained network; categories: its dataset's categories; cfg: its configuration (the
            trained parts, ``eval.modes``, the heuristic merge's overlap rule).
        device: where the network runs (default: CUDA when there is a GPU).
    """

    def __init__(self, model: UnifiedPanopticNet, cfg: Config, categories: CategoryMap,
                 device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.cfg, self.categories = cfg, categories
        self.modes = answerable_modes(cfg)
        self.default_mode = str(cfg.eval.modes[0])  # the training's main mode

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device | None = None
                        ) -> PanopticPredictor:
        """From a checkpoint (its ``state.pt`` or folder; a path or a storage URI)."""
        model, cfg, categories, _ = model_from_checkpoint(path)
        return cls(model, cfg, categories, device)

    def check_modes(self, modes: Sequence[str]) -> list[str]:
        """``modes`` as strings, or a ``ValueError`` naming one this network cannot answer in, and why (the
        config's reason)."""
        for mode in modes:
            if str(mode) not in self.modes:
                try:
                    with_override(self.cfg, f"eval.modes=[{mode}]")
                    reason = "unknown"
                except ValidationError as error:
                    reason = error.errors()[0]["msg"].removeprefix("Value error, ")
                except ValueError as error:
                    reason = str(error)
                raise ValueError(f"mode '{mode}' is not one of this network's modes ({', '.join(self.modes)}): "
                                 f"{reason}")
        return [str(mode) for mode in modes]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, modes: Sequence[str] | None = None) -> dict[str, PanopticAnswer]:
        """Answer for one ``(H, W, 3)`` uint8 RGB picture in each of ``modes`` (default: the main mode)."""
        modes = self.check_modes(modes or [self.default_mode])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"a picture must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)  # as the reader
        (output,) = self.model([tensor.to(self.device)])
        postprocessor = build_postprocessor(self.cfg, self.categories, modes)
        return {str(mode): PanopticAnswer(prediction.panoptic.numpy().astype(np.int32),
                                          dataset_segments(prediction.segments, self.categories))
                for mode, prediction in postprocessor(output).items()}
