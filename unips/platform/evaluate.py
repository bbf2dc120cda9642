"""One pass of a trained network over a split, scored in every inference mode of a post-processor.

The network runs once per batch; the post-processor reads every mode's answer from its
outputs, and each mode gets its own :class:`~unips.evaluation.evaluator.PanopticEvaluator`
(which also trims small stuff, when asked). Semantic IoU and COCO AP do not depend on the
mode, so they are computed once, with the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from unips.config import Config
from unips.datasets import collate_panoptic
from unips.datasets.categories import CategoryMap
from unips.evaluation.evaluator import PanopticEvaluator
from unips.evaluation.pq_stats import pq_table
from unips.evaluation.segments import dataset_segments
from unips.models.build import build_postprocessor
from unips.models.panoptic_net import UnifiedPanopticNet
from unips.models.postprocess import PanopticPostprocessor
from unips.progress import progress_bar


@dataclass
class EvaluationResult:
    """``metrics`` as ``"<mode>/<name>"`` percentages; per mode: ``per_class``, the export folder, and the
    pictures of the first images (image stem -> ``{"overlay", "gt_vs_pred"}`` uint8 ``(H, W', 3)`` arrays)."""

    metrics: dict[str, float]
    per_class: dict[str, pd.DataFrame]
    export_dirs: dict[str, Path]
    pictures: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)

    def table(self) -> str:
        """PQ / SQ / RQ for All, Things and Stuff, one block per mode (panopticapi's layout)."""
        return "\n".join(f"mode {mode}\n{pq_table(self.metrics, f'{mode}/')}" for mode in self.per_class)


@torch.no_grad()
def evaluate(
    model: UnifiedPanopticNet,
    postprocessor: PanopticPostprocessor,
    dataset: Dataset,
    categories: CategoryMap,
    *,
    trim_stuff: bool = True,
    stuff_area_limit: int = 4096,
    max_images: int | None = None,
    export_dir: str | Path | None = None,
    num_visualizations: int = 0,
    batch_size: int = 2,
    progress: bool | None = False,
) -> EvaluationResult:
    """Run ``model`` (in evaluation mode) over ``dataset`` and score every mode of ``postprocessor``.

    ``trim_stuff``: stuff segments below ``stuff_area_limit`` pixels become void before scoring.
    The first ``num_visualizations`` images get pictures of ground truth against prediction (in the result);
    with ``export_dir``, each mode's predictions go to ``export_dir/<mode>/`` as COCO panoptic PNG + JSON,
    the pictures to ``export_dir/<mode>/visualizations/``. ``progress``: a bar over the images on stderr (True), only
    when stderr is a terminal (None), or none (False, the default: training evaluates in its workers).
    """
    if max_images is not None:
        dataset = Subset(dataset, range(min(max_images, len(dataset))))
    modes = [str(mode) for mode in postprocessor.modes]
    export_dirs = {mode: Path(export_dir) / mode for mode in modes} if export_dir is not None else {}
    evaluators = {
        mode: PanopticEvaluator(categories, trim_stuff=trim_stuff, stuff_area_limit=stuff_area_limit,
                                compute_ap=(k == 0), export_dir=export_dirs.get(mode),
                                num_visualizations=num_visualizations)
        for k, mode in enumerate(modes)
    }
    was_training = model.training
    model.eval()
    # A generator of its own: creating a loader's iterator draws a seed, which from torch's global
    # generator would change what training samples next (RPN and RoI sampling draw from it).
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_panoptic, generator=torch.Generator())
    with progress_bar(total=len(dataset), desc="evaluate" if export_dir is None else "evaluate + export",
                      progress=progress) as bar:
        for images, targets in loader:
            outputs = model(images, targets)
            predictions = [postprocessor(out) for out in outputs]
            for k, mode in enumerate(modes):
                per_mode: list[dict[str, Any]] = [
                    {"image_id": out.image_id, "panoptic": by_mode[mode].panoptic,
                     "segments_info": dataset_segments(by_mode[mode].segments, categories),
                     "semantic": out.semantic if k == 0 else None, "detections": out.detections}
                    for out, by_mode in zip(outputs, predictions, strict=True)
                ]
                evaluators[mode].process(per_mode, targets, images)
            bar.update(len(images))
    model.train(was_training)
    metrics = {f"{mode}/{name}": value for mode, ev in evaluators.items() for name, value in ev.evaluate().items()}
    return EvaluationResult(metrics, {mode: ev.per_class() for mode, ev in evaluators.items()}, export_dirs,
                            {mode: ev.pictures for mode, ev in evaluators.items()})


def evaluate_as_configured(model: UnifiedPanopticNet, cfg: Config, dataset: Dataset, categories: CategoryMap,
                           **options: Any) -> EvaluationResult:
    """:func:`evaluate` with the modes, overlap rule, stuff trimming and image count of ``cfg.eval``."""
    return evaluate(model, build_postprocessor(cfg, categories), dataset, categories,
                    trim_stuff=cfg.eval.trim_stuff, stuff_area_limit=cfg.eval.stuff_area_limit,
                    max_images=cfg.eval.max_images, **options)
