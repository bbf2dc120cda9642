"""The loop every Ray Train worker runs: train with DDP, evaluate, checkpoint, log.

One iteration = one optimizer step on ``images_per_batch / num_workers`` images per
worker. Every ``eval.period`` iterations (and at the end) rank 0 evaluates the
validation split in every inference mode while the others wait at ``ray.train.report``;
checkpoints go through ``ray.train.report`` too, so Ray Train restarts a failed run
from the last one (``FailureConfig``) and a stopped run resumes from it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from unips.config import Config
from unips.datasets import collate_panoptic
from unips.datasets.build import build_dataset
from unips.models.build import build_model
from unips.platform.checkpoint import load_state, rng_state, save_state, set_rng_state
from unips.platform.evaluate import evaluate
from unips.platform.sampler import InfiniteShardedSampler
from unips.platform.schedule import build_optimizer, build_scheduler, panoptic_loss_factor
from unips.platform.tracking import MetricLogger
from unips.seeding import seed_everything


def _derived_seed(seed: int, rank: int, step: int) -> int:
    """Per-rank, per-restart seed: data and augmentation differ across ranks and repeat across reruns."""
    return (seed * 1_000_003 + rank * 10_007 + step) % 2**31


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def replica_difference(model: torch.nn.Module) -> float:
    """Largest difference between the ranks' per-parameter sums (0 when DDP kept the replicas equal)."""
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 0.0
    gathered = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return float(max((g - gathered[0]).abs().max() for g in gathered))


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    *,
    step: int,
    amp: bool = False,
    clip_grad_norm: float | None = None,
    panoptic_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step (mixed precision and gradient clipping optional); returns the total and named losses.

    ``panoptic_scale``: the panoptic loss's warm-up multiplier at this step.
    """
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, enabled=amp):
        losses = model(images, targets, panoptic_scale=panoptic_scale)
    total = sum(losses.values())
    if not torch.isfinite(total):
        raise FloatingPointError(f"loss is {total.item()} at step {step}: {({k: v.item() for k, v in losses.items()})}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return total, losses


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function. ``config``: ``config`` (a :class:`Config` dump), ``tracking``
    (``uri``, ``run_id``) and optionally ``fail_once`` (``step``, ``marker``: raise once at that step,
    for testing fault tolerance).
    """
    cfg = Config.model_validate(config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    amp = cfg.optim.amp and device.type == "cuda"
    per_worker = cfg.optim.images_per_batch // world

    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    categories = train_set.categories
    seed_everything(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, categories).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_state(folder)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
    loader_seeding = seed_everything(_derived_seed(cfg.seed, rank, step))
    if checkpoint is not None and rank == 0:
        set_rng_state(state["rng"])
    if rank == 0:
        print(f"{'resuming at' if step else 'starting'} step {step}/{cfg.optim.max_iter}: {world} worker(s) x "
              f"{per_worker} images on {device}", flush=True)

    # While the panoptic loss warms up, the affinity head gets no gradient: DDP must allow that.
    warmup = cfg.model.panoptic.end_to_end and cfg.optim.panoptic_loss_start > 0
    ddp = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": warmup})
    sampler = InfiniteShardedSampler(len(train_set), cfg.seed, rank, world, start=step * per_worker)
    loader = DataLoader(train_set, batch_size=per_worker, sampler=sampler, collate_fn=collate_panoptic,
                        num_workers=cfg.data.loader_workers, persistent_workers=cfg.data.loader_workers > 0,
                        **loader_seeding)
    batches = iter(loader)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False) if rank == 0 else None
    logger = MetricLogger(config["tracking"]["uri"], config["tracking"]["run_id"]) if rank == 0 else None
    fail_once = config.get("fail_once")

    window: dict[str, float] = defaultdict(float)
    window_steps, window_start, attempt_start, attempt_first = 0, time.perf_counter(), time.perf_counter(), step
    ddp.train()
    while step < cfg.optim.max_iter:
        images, targets = next(batches)
        step += 1
        total, losses = train_step(
            ddp, optimizer, scheduler, scaler, images, targets, step=step, amp=amp,
            clip_grad_norm=cfg.optim.clip_grad_norm,
            panoptic_scale=panoptic_loss_factor(step, cfg.optim.panoptic_loss_start, cfg.optim.panoptic_loss_ramp))
        for name, value in losses.items():
            window[name] += value.item()
        window["loss_total"] += total.item()
        window_steps += 1

        report: dict[str, float] = {"step": step}
        if step % cfg.platform.log_period == 0 or step == cfg.optim.max_iter:
            now = time.perf_counter()
            train_metrics = {f"loss/{k.removeprefix('loss_')}": v / window_steps for k, v in window.items()}
            train_metrics["lr"] = optimizer.param_groups[0]["lr"]
            train_metrics["images_per_s"] = window_steps * per_worker * world / (now - window_start)
            report.update(train_metrics)
            if logger is not None:
                logger.log(train_metrics, step)
                eta = (now - attempt_start) / (step - attempt_first) * (cfg.optim.max_iter - step)
                parts = " ".join(f"{k[5:]} {v:.3f}" for k, v in train_metrics.items()
                                 if k.startswith("loss/") and k != "loss/total")
                print(f"step {step}/{cfg.optim.max_iter}  loss {train_metrics['loss/total']:.3f} ({parts})  "
                    f"lr {train_metrics['lr']:.2e}  {train_metrics['images_per_s']:.1f} img/s  ETA {_duration(eta)}", flush=True)
            window.clear()
            window_steps, window_start = 0, now

        final = step == cfg.optim.max_iter
        evaluate_now = final or (cfg.eval.period > 0 and step % cfg.eval.period == 0)
        if final:
            report["replica_max_abs_diff"] = replica_difference(ddp)
        if evaluate_now and rank == 0:
            assert val_set is not None and logger is not None
            with tempfile.TemporaryDirectory() as export:
                result = evaluate(model, val_set, categories, max_images=cfg.eval.max_images,
                                  export_dir=export if final else None,
                                  num_visualizations=cfg.eval.num_visualizations)
                logger.log(result.metrics, step)
                report.update(result.metrics)
                print(f"evaluation at step {step}:\n{result.table()}", flush=True)
                if final:
                    for mode, table in result.per_class.items():
                        path = Path(export) / f"per_class_{mode}.csv"
                        table.to_csv(path, index=False)
                        logger.log_artifact(path, "per_class")
                        pictures = result.export_dirs[mode] / "visualizations"
                        if pictures.is_dir():
                            logger.log_artifact(pictures, f"visualizations/{mode}")
        if evaluate_now or final or step % cfg.optim.checkpoint_period == 0:
            with tempfile.TemporaryDirectory() as folder:
                saved = None
                if rank == 0:
                    save_state(folder, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": step,
                        "rng": rng_state(), "config": cfg.model_dump(mode="json"), "categories": categories.to_json(),
                    })
                    if final and logger is not None:
                        # MLflow keeps the weights (what evaluation needs); the optimizer state stays in
                        # Ray's checkpoint for resuming, and would double the artifact's size.
                        with tempfile.TemporaryDirectory() as weights_folder:
                            weights = save_state(weights_folder, {
                                "model": model.state_dict(), "step": step, "config": cfg.model_dump(mode="json"),
                                "categories": categories.to_json()})
                            logger.log_artifact(weights, "checkpoint")
                    saved = ray.train.Checkpoint.from_directory(folder)
                ray.train.report(report, checkpoint=saved)
        # After this step's metrics are logged: the restart recomputes steps that MLflow already has.
        if fail_once is not None and step == fail_once["step"] and not os.path.exists(fail_once["marker"]):
            Path(fail_once["marker"]).touch()
            raise RuntimeError(f"failure injected at step {step} (fault-tolerance test)")
    if rank == 0:
        elapsed = _duration(time.perf_counter() - attempt_start)
        print(f"finished {cfg.optim.max_iter} steps; this attempt took {elapsed}", flush=True)

