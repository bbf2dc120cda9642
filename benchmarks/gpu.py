"""Training and inference speed of the R50-FPN network on one GPU (or, without CUDA, on the CPU at a reduced size).

    python benchmarks/gpu.py                                  # CUDA: the Cityscapes preset's sizes
    python benchmarks/gpu.py --crop 128x256 --batch 2 --infer-size 256x512   # what CPU runs use

Measured in one run on the same network (the ``cityscapes_r50`` preset with masks and the affinity
head, so that both the full mode and the heuristic merge can read it out; random weights, no
ImageNet file needed), on synthetic scenes generated at the crop size in a temporary folder:

* ``train_ips``: training images/s in float32 (batch ``--batch`` per GPU, one process: per GPU),
  ``train_ips_amp``: the same with autocast (bfloat16 where the device has it, else float16 with
  a gradient scaler), ``--steps`` optimizer steps after ``--warmup``;
* ``peak_gb``: the most GPU memory allocated by either (on the CPU: the process's peak resident memory);
* ``full_ms`` / ``heu_ms``: inference per image at ``--infer-size`` (network forward plus the mode's
  read-out) for the full mode (argmax of P) and the heuristic merge, ``--infer-images`` each, with
  ``--detections`` detections per image handed on (random weights score none above the presets'
  thresholds: the top ones are kept whatever their score, as a trained model keeps its objects).

The paper (Table 6): 197 ms for its full model on an RTX 2080 Ti at 1024x2048, 386 ms for its
Panoptic FPN re-implementation. Last line:

    gpu device=<name> train_ips=<x> train_ips_amp=<y> peak_gb=<z> full_ms=<a> heu_ms=<b> full_over_heu=<a/b>
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unips.config import Config, InferenceMode, load_config
from unips.datasets import CategoryMap, collate_panoptic
from unips.datasets.build import build_dataset, ensure_synthetic
from unips.models.build import build_postprocessor
from unips.platform.train_loop import AMP_DTYPES, build_trainee, train_step

MODES = (InferenceMode.FULL, InferenceMode.HEU)


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


def config(args: argparse.Namespace, root: Path) -> Config:
    """The preset with masks and the affinity head, random weights, synthetic scenes of the crop size."""
    height, width = parse_size(args.crop)
    return load_config(args.preset, [
        "data.dataset=synthetic", f"data.root={root}", "data.synthetic.generate=true",
        f"data.synthetic.height={height}", f"data.synthetic.width={width}",
        f"data.synthetic.num_train={args.batch}", "data.synthetic.num_val=1", "data.loader_workers=0",
        "model.backbone.pretrained=null", "model.backbone.freeze_at=0",
        "model.detector.with_masks=true", "model.panoptic.use_affinity=true", "model.panoptic.end_to_end=true",
        "eval.modes=[full,heu]", f"optim.images_per_batch={args.batch}", "model.detector.score_thresh=0.0",
        "eval.score_thresh=0.0", f"model.detector.detections_per_image={args.detections}", *args.overrides])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_images_per_s(cfg: Config, device: torch.device, amp: str, steps: int, warmup: int) -> float:
    """Training images/s on one fixed batch (data loading left out: benchmarks/data_loading.py has it)."""
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images, targets = collate_panoptic([dataset[i] for i in range(cfg.optim.images_per_batch)])
    cfg = cfg.model_copy(deep=True)
    cfg.optim.amp = amp  # type: ignore[assignment]
    trainee = build_trainee(cfg, dataset.categories, device)
    trainee.model.train()
    images = [image.to(device) for image in images]
    elapsed = 0.0
    for step in range(1, warmup + steps + 1):
        _sync(device)
        start = time.perf_counter()
        train_step(trainee.model, trainee.optimizer, trainee.scheduler, trainee.scaler, images, targets, step=step,
                   amp=AMP_DTYPES[amp])
        _sync(device)
        if step > warmup:
            elapsed += time.perf_counter() - start
    return steps * len(images) / elapsed


def inference_model(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, CategoryMap]:
    """The network in evaluation mode, and its categories."""
    categories = build_dataset(cfg.data, cfg.data.train_split, train=False).categories
    return build_trainee(cfg, categories, device).model.eval(), categories


@torch.no_grad()  # as the predictor and the evaluator run the network: no autograd graph for the backbone
def readout_ms(model: torch.nn.Module, postprocess: Callable[[Any], Any], images: list[torch.Tensor],
               device: torch.device) -> float:
    """Milliseconds per image of forward plus read-out (the caller warms up first)."""
    _sync(device)
    start = time.perf_counter()
    for image in images:
        postprocess(model([image])[0])
    _sync(device)
    return (time.perf_counter() - start) / len(images) * 1000


def random_images(size: tuple[int, int], count: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *size, generator=generator).to(device) for _ in range(count)]


@torch.no_grad()
def inference_ms(cfg: Config, device: torch.device, size: tuple[int, int], count: int) -> dict[str, float]:
    """Milliseconds per image of forward plus read-out, for each mode of :data:`MODES`, on one network."""
    model, categories = inference_model(cfg, device)
    warm_up, *images = random_images(size, count + 1, device)
    result = {}
    for mode in MODES:
        cfg.eval.modes = [mode]
        postprocess = build_postprocessor(cfg, categories)
        postprocess(model([warm_up])[0])
        result[str(mode)] = readout_ms(model, postprocess, images, device)
    return result


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the network (shared with benchmarks/inference.py)."""
    parser.add_argument("--preset", default="cityscapes_r50")
    parser.add_argument("--detections", type=int, default=20, help="detections per image (Cityscapes has ~20 objects)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    add_model_arguments(parser)
    parser.add_argument("--crop", default="512x1024" if cuda else "128x256", help="training crop HxW")
    parser.add_argument("--batch", type=int, default=8 if cuda else 2, help="training images per GPU")
    parser.add_argument("--steps", type=int, default=20 if cuda else 3)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 1)
    parser.add_argument("--infer-size", default="1024x2048" if cuda else "256x512", help="inference image HxW")
    parser.add_argument("--infer-images", type=int, default=20 if cuda else 2)
    args = parser.parse_args()

    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    amp = "bf16" if not cuda or torch.cuda.is_bf16_supported() else "fp16"
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(args, Path(folder) / "data")
        ensure_synthetic(cfg.data)
        print(f"{name}: {cfg.model.backbone.depth}-layer backbone, crop {args.crop}, batch {args.batch}, "
              f"{args.steps} steps after {args.warmup}; inference at {args.infer_size}", flush=True)
        fp32 = train_images_per_s(cfg, device, "off", args.steps, args.warmup)
        print(f"train fp32: {fp32:.2f} images/s", flush=True)
        mixed = train_images_per_s(cfg, device, amp, args.steps, args.warmup)
        print(f"train {amp}: {mixed:.2f} images/s", flush=True)
        peak = peak_memory_gb(device)
        ms = inference_ms(cfg, device, parse_size(args.infer_size), args.infer_images)
    full, heu = ms[str(InferenceMode.FULL)], ms[str(InferenceMode.HEU)]
    print(f"gpu device={name.replace(' ', '_')} train_ips={fp32:.2f} train_ips_amp={mixed:.2f} peak_gb={peak:.2f} "
          f"full_ms={full:.1f} heu_ms={heu:.1f} full_over_heu={full / heu:.2f}")


if __name__ == "__main__":
    main()
