"""What the full mode costs over the heuristic merge on the CPU, and the affinity head's share of it.

    python benchmarks/inference.py [--size 1024x2048] [--images 3] [--detections 20] [key.sub=value ...]

The same R50-FPN network (the ``cityscapes_r50`` preset with masks and the affinity head, random
weights, the top ``--detections`` detections per image kept) reads out ``--images`` images of
``--size`` in the full mode (argmax of P) and with the heuristic merge, each after one warm-up
image, timing the network's forward plus the mode's read-out (benchmarks/gpu.py's
``inference_ms``). A third pass in the full mode times the affinity head alone (its feature branch
Q and the affinity product). The forward computes the mask head's probabilities in both modes (AP is
scored from them), so the full mode pays for masks it does not read. Last line:

    inference full_ms=<a> heu_ms=<b> ratio=<a/b>
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# benchmarks/gpu.py, beside this file
from gpu import add_model_arguments, config, inference_model, inference_ms, parse_size, random_images, readout_ms
from unips.config import InferenceMode
from unips.datasets.build import ensure_synthetic
from unips.models.build import build_postprocessor


def _timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)
    return wrapper


@torch.no_grad()
def affinity_ms(cfg: Any, size: tuple[int, int], count: int) -> tuple[float, float]:
    """``(full mode ms per image, of which the affinity head's ms)`` on the CPU."""
    cpu = torch.device("cpu")
    model, categories = inference_model(cfg, cpu)
    affinity = model.panoptic_head.affinity
    spent: list[float] = []
    affinity.features = _timed(affinity.features, spent)
    affinity.forward = _timed(affinity.forward, spent)
    cfg.eval.modes = [InferenceMode.FULL]
    postprocess = build_postprocessor(cfg, categories)
    warm_up, *images = random_images(size, count + 1, cpu, seed=1)
    postprocess(model([warm_up])[0])
    spent.clear()
    return readout_ms(model, postprocess, images, cpu), sum(spent) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x2048", help="image HxW")
    parser.add_argument("--images", type=int, default=3)
    add_model_arguments(parser)
    args = parser.parse_args()
    args.crop, args.batch = "64x128", 1  # the synthetic set only gives the categories here
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(args, Path(folder) / "data")
        ensure_synthetic(cfg.data)
        print(f"cpu ({torch.get_num_threads()} threads): {cfg.model.backbone.depth}-layer backbone, {args.size}, "
              f"{args.images} images per mode, {args.detections} detections each", flush=True)
        ms = inference_ms(cfg, torch.device("cpu"), size, args.images)
        full_alone, in_affinity = affinity_ms(cfg, size, args.images)
    full, heu = ms[str(InferenceMode.FULL)], ms[str(InferenceMode.HEU)]
    print(f"affinity head (Q and the affinity product): {in_affinity:.0f} ms of {full_alone:.0f} ms in the full mode "
          f"({in_affinity / full_alone:.1%})")
    print(f"inference full_ms={full:.0f} heu_ms={heu:.0f} ratio={full / heu:.2f}")


if __name__ == "__main__":
    main()
