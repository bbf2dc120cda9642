"""One pass of a trained network over a split, scored in every inference mode it produces.

The network returns all configured modes from one forward pass (``by_mode``); each
mode gets its own :class:`~unips.evaluation.evaluator.PanopticEvaluator`. Semantic
IoU and COCO AP do not depend on the mode, so they are computed once, with the first.
Stuff trimming is the network's own post-processing, so the evaluators do not trim again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from unips.datasets import collate_panoptic
from unips.datasets.categories import CategoryMap
from unips.evaluation.evaluator import PanopticEvaluator
from unips.models.panoptic_net import UnifiedPanopticNet


@dataclass
class EvaluationResult:
    """``metrics`` as ``"<mode>/<name>"`` percentages; ``per_class`` and export folders per mode."""

    metrics: dict[str, float]
    per_class: dict[str, pd.DataFrame]
    export_dirs: dict[str, Path]

    def table(self) -> str:
        """PQ / SQ / RQ for All, Things and Stuff, one block per mode (panopticapi's layout)."""
        lines = []
        for mode in self.per_class:
            lines.append(f"mode {mode}")
            lines.append(f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}")
            lines.append("-" * 31)
            for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
                values = [self.metrics[f"{mode}/{name}{suffix}"] for name in ("PQ", "SQ", "RQ")]
                lines.append(f"{group:10s}| {values[0]:5.1f}  {values[1]:5.1f}  {values[2]:5.1f}")
        return "\n".join(lines)


@torch.no_grad()
def evaluate(
    model: UnifiedPanopticNet,
    dataset: Dataset,
    categories: CategoryMap,
    *,
    max_images: int | None = None,
    export_dir: str | Path | None = None,
    num_visualizations: int = 0,
    batch_size: int = 2,
) -> EvaluationResult:
    """Run ``model`` (in evaluation mode) over ``dataset`` and score every mode of ``model.inference_modes``.

    With ``export_dir``, each mode's predictions go to ``export_dir/<mode>/`` as COCO panoptic
    PNG + JSON, with ``num_visualizations`` pictures of ground truth against prediction.
    """
    if max_images is not None:
        dataset = Subset(dataset, range(min(max_images, len(dataset))))
    modes = list(model.inference_modes)
    export_dirs = {mode: Path(export_dir) / mode for mode in modes} if export_dir is not None else {}
    evaluators = {
        mode: PanopticEvaluator(categories, trim_stuff=False, compute_ap=(k == 0), export_dir=export_dirs.get(mode),
                                num_visualizations=num_visualizations)
        for k, mode in enumerate(modes)
    }
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_panoptic)
    for images, targets in loader:
        outputs = model(images, targets)
        for k, mode in enumerate(modes):
            per_mode: list[dict[str, Any]] = [
                {**out, "panoptic": out["by_mode"][mode]["panoptic"],
                 "segments_info": out["by_mode"][mode]["segments_info"],
                 "semantic": out["semantic"] if k == 0 else None}
                for out in outputs
            ]
            evaluators[mode].process(per_mode, targets, images)
    model.train(was_training)
    metrics = {f"{mode}/{name}": value for mode, ev in evaluators.items() for name, value in ev.evaluate().items()}
    return EvaluationResult(metrics, {mode: ev.per_class() for mode, ev in evaluators.items()}, export_dirs)
