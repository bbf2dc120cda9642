"""What training inside Ray Train costs over a plain PyTorch loop, once started.

    python benchmarks/train_overhead.py [--steps 30] [--preset smoke] [key.sub=value ...]

Runs the same ``train_step`` (the one the Ray Train loop calls) on one fixed batch,
``--steps`` times after 3 warm-up steps, first as a plain loop in this process, then
inside Ray Train with 1 worker, timing the steps with the same clock in both places.
Both use the preset's threads per worker (``platform.cpus_per_worker``), so the only
difference is Ray. Start-up (Ray, the worker group) is reported, not counted. Last line:

    train_overhead steps=<N> plain_s=<a> ray_s=<b> overhead=<b/a-1>
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from unips.config import Config, load_config
from unips.datasets import collate_panoptic
from unips.datasets.build import build_dataset, ensure_synthetic
from unips.models.build import build_model
from unips.platform.launch import absolute_paths
from unips.platform.schedule import build_optimizer, build_scheduler
from unips.platform.train_loop import train_step
from unips.seeding import seed_everything

WARMUP = 3


def time_steps(cfg: Config, steps: int) -> float:
    """Seconds for ``steps`` optimizer steps on one fixed batch, after warm-up."""
    seed_everything(cfg.seed)
    dataset = build_dataset(cfg.data, cfg.data.train_split, train=False)
    images, targets = collate_panoptic([dataset[i] for i in range(cfg.optim.images_per_batch)])
    model = build_model(cfg, dataset.categories).train()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for step in range(WARMUP):
        train_step(model, optimizer, scheduler, scaler, images, targets, step=step)
    start = time.perf_counter()
    for step in range(steps):
        train_step(model, optimizer, scheduler, scaler, images, targets, step=WARMUP + step)
    return time.perf_counter() - start


def _worker(config: dict[str, Any]) -> None:
    seconds = time_steps(Config.model_validate(config["cfg"]), config["steps"])
    # Ray Train 2.x keeps only the metrics reported with a checkpoint in the Result: an empty one.
    with tempfile.TemporaryDirectory() as folder:
        ray.train.report({"seconds": seconds, "threads": torch.get_num_threads()},
                         checkpoint=ray.train.Checkpoint.from_directory(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. platform.cpus_per_worker=1")
    args = parser.parse_args()
    cfg = absolute_paths(load_config(args.preset, ["model.backbone.freeze_at=0", *args.overrides]), Path.cwd())
    ensure_synthetic(cfg.data)
    threads = max(1, int(cfg.platform.cpus_per_worker))

    torch.set_num_threads(threads)
    plain = time_steps(cfg, args.steps)
    print(f"plain loop: {args.steps} steps in {plain:.2f} s on {threads} thread(s)")

    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    start = time.perf_counter()
    ray.init(num_cpus=max(threads, os.cpu_count() or 1), log_to_driver=False)
    trainer = TorchTrainer(
        _worker, train_loop_config={"cfg": cfg.model_dump(mode="json"), "steps": args.steps},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False, resources_per_worker={"CPU": threads}),
        run_config=RunConfig(name=f"train_overhead_{int(time.time())}", storage_path=str(cfg.platform.storage_path)),
    )
    result = trainer.fit()
    total = time.perf_counter() - start
    ray.shutdown()
    inside = result.metrics["seconds"]
    print(f"Ray Train, 1 worker: {args.steps} steps in {inside:.2f} s on {result.metrics['threads']} thread(s); "
          f"start-up and teardown {total - inside:.1f} s (not counted)")
    print(f"train_overhead steps={args.steps} plain_s={plain:.2f} ray_s={inside:.2f} overhead={inside / plain - 1:.3f}")


if __name__ == "__main__":
    main()
