"""The loop every Ray Train worker runs: train with DDP, evaluate, checkpoint, log.

One iteration = one optimizer step on ``images_per_batch / num_workers`` images per
worker. Every ``eval.period`` iterations (and at the end) rank 0 evaluates the
validation split in every inference mode while the others wait at ``ray.train.report``;
checkpoints go through ``ray.train.report`` too, so Ray Train restarts a failed run
from the last one (``FailureConfig``) and a stopped run resumes from it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from unips.config import Config
from unips.datasets import PanopticDataset, collate_panoptic
from unips.datasets.categories import CategoryMap
from unips.datasets.build import build_dataset, check_data
from unips.models.build import build_model
from unips.platform import storage
from unips.platform.checkpoint import STATE_FILE, load_state, rng_state, save_state, set_rng_state
from unips.platform.evaluate import evaluate_as_configured
from unips.platform.mlflow_model import log_panoptic_model
from unips.platform.sampler import InfiniteShardedSampler
from unips.platform.schedule import build_optimizer, build_scheduler, panoptic_loss_factor
from unips.platform.tracking import MetricLogger
from unips.progress import duration
from unips.seeding import seed_everything

TAG_NODE = "unips.node"  # the Ray node rank 0 trains on


def _derived_seed(seed: int, rank: int, step: int) -> int:
    """Per-rank, per-restart seed: data and augmentation differ across ranks and repeat across reruns."""
    return (seed * 1_000_003 + rank * 10_007 + step) % 2**31


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
    amp: torch.dtype | None = None,
    clip_grad_norm: float | None = None,
    panoptic_scale: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step (mixed precision and gradient clipping optional); returns the total and named losses.

    ``amp``: the autocast dtype (None: float32). ``panoptic_scale``: the panoptic loss's warm-up multiplier.
    """
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
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


@dataclass
class Trainee:
    """What a worker trains and a checkpoint holds: the network and its optimisation state."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    step: int = 0

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step}


AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_trainee(cfg: Config, categories: CategoryMap, device: torch.device) -> Trainee:
    """The network (the same initial weights on every rank) with its optimizer, schedule and loss scaler
    (enabled for float16 only: bfloat16 has float32's range, its gradients do not underflow)."""
    seed_everything(cfg.seed)
    model = build_model(cfg, categories).to(device)
    if cfg.optim.channels_last:  # convolutions then keep their activations NHWC too
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.optim.amp == "fp16")
    return Trainee(model, optimizer, build_scheduler(optimizer, cfg.optim), scaler)


def newest_readable_state(latest: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The state in checkpoint folder ``latest`` (a local path or a storage URI), or, if that file is unreadable
    (truncated by a full disk, a killed copy), in the newest readable checkpoint beside it in the run's folder;
    and the files skipped."""
    latest = str(latest)
    run_dir = storage.parent_of(latest)
    # Ray Train's checkpoint_<time> folders, newest first (not its checkpoint_manager_snapshot.json).
    older = [folder for folder in reversed(storage.subfolders(run_dir, "checkpoint_"))
             if storage.name_of(folder) != storage.name_of(latest)]
    skipped = []
    for folder in [latest, *older]:
        try:
            return load_state(folder), skipped
        except (ValueError, FileNotFoundError):
            skipped.append(storage.join(folder, STATE_FILE))
    raise ValueError(f"no readable checkpoint in {run_dir}: {', '.join(skipped)} are all unreadable")


def restore(trainee: Trainee, storage_path: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Load Ray Train's latest (readable) checkpoint of this run into ``trainee``, if there is one; its RNG
    state and the unreadable checkpoint files passed over."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None, []
    # Ray names the checkpoint by its path inside the storage filesystem: named again by the storage location.
    run_dir = storage.join(storage_path, ray.train.get_context().get_experiment_name())
    state, skipped = newest_readable_state(storage.join(run_dir, storage.name_of(checkpoint.path)))
    for part in ("model", "optimizer", "scheduler", "scaler"):
        getattr(trainee, part).load_state_dict(state[part])
    trainee.step = int(state["step"])
    return state["rng"], skipped


def batches(train_set: PanopticDataset, cfg: Config, rank: int, world: int, step: int, rng: dict[str, Any] | None,
            device: torch.device = torch.device("cpu")) -> Iterator[tuple[list[torch.Tensor], list[dict[str, Any]]]]:
    """This rank's endless stream of batches from ``step`` on: after a restart, the data, augmentation
    and random state continue exactly where the uninterrupted run would be."""
    loader_seeding = seed_everything(_derived_seed(cfg.seed, rank, step))
    if rng is not None and rank == 0:
        set_rng_state(rng)
    per_worker = cfg.optim.images_per_batch // world
    sampler = InfiniteShardedSampler(len(train_set), cfg.seed, rank, world, start=step * per_worker)
    return iter(DataLoader(train_set, batch_size=per_worker, sampler=sampler, collate_fn=collate_panoptic,
                           num_workers=cfg.data.loader_workers, persistent_workers=cfg.data.loader_workers > 0,
                           pin_memory=cfg.data.pin_memory and device.type == "cuda", **loader_seeding))


class LossWindow:
    """Training losses averaged over each ``platform.log_period`` steps; rank 0 logs and prints them."""

    def __init__(self, cfg: Config, world: int, first_step: int, logger: MetricLogger | None) -> None:
        self.cfg, self.world, self.logger = cfg, world, logger
        self.sums: dict[str, float] = defaultdict(float)
        self.steps, self.first_step = 0, first_step
        self.start = self.attempt_start = time.perf_counter()

    def add(self, step: int, total: torch.Tensor, losses: dict[str, torch.Tensor], lr: float) -> dict[str, float]:
        """Add one step; at a log step, the window's metrics (``loss/<name>``, ``lr``, ``images_per_s``)."""
        for name, value in {**losses, "loss_total": total}.items():
            self.sums[name] += value.item()
        self.steps += 1
        if step % self.cfg.platform.log_period and step != self.cfg.optim.max_iter:
            return {}
        now = time.perf_counter()
        metrics = {f"loss/{k.removeprefix('loss_')}": v / self.steps for k, v in self.sums.items()}
        metrics["lr"] = lr
        metrics["images_per_s"] = self.steps * self.cfg.optim.images_per_batch / (now - self.start)
        if self.logger is not None:
            self.logger.log(metrics, step)
            eta = (now - self.attempt_start) / (step - self.first_step) * (self.cfg.optim.max_iter - step)
            parts = " ".join(f"{k[5:]} {v:.3f}" for k, v in metrics.items()
                             if k.startswith("loss/") and k != "loss/total")
            print(f"step {step}/{self.cfg.optim.max_iter}  loss {metrics['loss/total']:.3f} ({parts})  lr {lr:.2e}  "
                  f"{metrics['images_per_s']:.1f} img/s  ETA {duration(eta)}", flush=True)
        self.sums.clear()
        self.steps, self.start = 0, now
        return metrics

    def finish(self) -> None:
        if self.logger is not None:
            elapsed = duration(time.perf_counter() - self.attempt_start)
            print(f"finished {self.cfg.optim.max_iter} steps; this attempt took {elapsed}", flush=True)
            self.logger.close()


def evaluate_and_log(model: torch.nn.Module, cfg: Config, val_set: PanopticDataset, logger: MetricLogger,
                     step: int) -> dict[str, float]:
    """Rank 0: every mode on the validation split, logged with pictures of the first images (MLflow's image
    view, by step); at the last step also the per-class PQ / SQ / RQ of each mode, as a table and as CSV."""
    final = step == cfg.optim.max_iter
    result = evaluate_as_configured(model, cfg, val_set, val_set.categories,
                                    num_visualizations=cfg.eval.num_visualizations)
    print(f"evaluation at step {step}:\n{result.table()}", flush=True)
    if not logger.log(result.metrics, step):  # a restart recomputing a logged step logs nothing again
        return result.metrics
    logger.log_pictures({f"{mode}/{stem}": pictures["gt_vs_pred"] for mode, by_image in result.pictures.items()
                         for stem, pictures in by_image.items()}, step)
    with tempfile.TemporaryDirectory() as folder:
        for mode, table in result.per_class.items() if final else ():
            logger.log_table(table, f"per_class/{mode}.json")
            table.to_csv(path := Path(folder) / f"per_class_{mode}.csv", index=False)
            logger.log_artifact(path, "per_class")
    return result.metrics


@contextmanager
def checkpoint(trainee: Trainee, cfg: Config, categories: CategoryMap,
               logger: MetricLogger | None) -> Iterator[ray.train.Checkpoint | None]:
    """Rank 0's checkpoint for ``ray.train.report`` (None on the other ranks); at the last step the
    weights also go to MLflow (without the optimizer state, which only resuming needs), inside the run's MLflow
    model ``model`` (``artifacts/state.pt``, :mod:`unips.platform.mlflow_model`): one copy, which ``--run`` reads."""
    with tempfile.TemporaryDirectory() as folder:
        if logger is None:
            yield None
            return
        about = {"config": cfg.model_dump(mode="json"), "categories": categories.to_json()}
        save_state(folder, {**trainee.state(), "rng": rng_state(), **about})
        if trainee.step == cfg.optim.max_iter:
            with tempfile.TemporaryDirectory() as weights:
                final = save_state(weights, {"model": trainee.model.state_dict(), "step": trainee.step, **about})
                log_panoptic_model(logger.tracking_uri, logger.run_id, final, str(cfg.eval.modes[0]),
                                   step=trainee.step, register_as=cfg.platform.register_model)
        yield ray.train.Checkpoint.from_directory(folder)


def data_on_this_node(cfg: Config) -> None:
    """Each node reads its own copy of the data at ``data.root`` (the synthetic set is generated there, the
    same bytes from the same seed); a copy that is missing is named with the node, before anything trains."""
    try:
        check_data(cfg.data)
    except FileNotFoundError as error:
        context = ray.get_runtime_context()
        raise FileNotFoundError(f"on Ray node {context.get_node_id()} ({ray.util.get_node_ip_address()}): {error}; "
                                "every node needs the dataset at data.root (docs/cluster.md)"
                                ) from None


def announce(logger: MetricLogger, cfg: Config, step: int, where: str, skipped: list[str]) -> None:
    """Rank 0's first lines: unreadable checkpoints passed over (also an MLflow tag), where training starts; the
    Ray node it runs on as the MLflow tag ``unips.node`` (a restart on another node updates it); the system
    metrics start."""
    logger.client.set_tag(logger.run_id, TAG_NODE, ray.get_runtime_context().get_node_id())
    logger.watch_system(cfg.platform.system_metrics_s)
    for path in skipped:
        print(f"warning: checkpoint {path} is unreadable; resuming from an older one", flush=True)
        logger.client.set_tag(logger.run_id, "unips.unreadable_checkpoint", path)
    # Named by its run: a study trains several at once, and their lines meet in one terminal.
    run = ray.train.get_context().get_experiment_name()
    print(f"{run}: {'resuming at' if step else 'starting'} step {step}/{cfg.optim.max_iter}: {where}", flush=True)


def quiet_report_lines() -> None:
    """Ray Train 2.60 logs each ``ray.train.report`` (every log step here) at INFO, with its whole metrics
    dict, through a logger named by its module's file, which its ``LoggingConfig`` does not reach; our own
    step line says the same in one line."""
    from ray.train.v2._internal.execution import context as train_context

    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function. ``config``: ``config`` (a :class:`Config` dump) and ``tracking``
    (``uri``, ``run_id`` of the MLflow run)."""
    cfg = Config.model_validate(config["config"])
    quiet_report_lines()
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    data_on_this_node(cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    trainee = build_trainee(cfg, train_set.categories, device)
    rng, skipped = restore(trainee, cfg.platform.storage_path)  # type: ignore[arg-type]
    stream = batches(train_set, cfg, rank, world, trainee.step, rng, device)
    # While the panoptic loss warms up, the affinity head gets no gradient: DDP must allow that.
    warmup = cfg.model.panoptic.end_to_end and cfg.optim.panoptic_loss_start > 0
    ddp = ray.train.torch.prepare_model(trainee.model, parallel_strategy_kwargs={"find_unused_parameters": warmup})
    logger = MetricLogger(config["tracking"]["uri"], config["tracking"]["run_id"]) if rank == 0 else None
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False) if rank == 0 else None
    if logger is not None:
        announce(logger, cfg, trainee.step, f"{world} worker(s) x {cfg.optim.images_per_batch // world} images "
                 f"on {device}", skipped)
    window = LossWindow(cfg, world, trainee.step, logger)
    ddp.train()
    while trainee.step < cfg.optim.max_iter:
        images, targets = next(stream)
        step = trainee.step = trainee.step + 1
        total, losses = train_step(
            ddp, trainee.optimizer, trainee.scheduler, trainee.scaler, images, targets, step=step,
            amp=AMP_DTYPES[cfg.optim.amp], clip_grad_norm=cfg.optim.clip_grad_norm,
            panoptic_scale=panoptic_loss_factor(step, cfg.optim.panoptic_loss_start, cfg.optim.panoptic_loss_ramp))
        report = window.add(step, total, losses, trainee.optimizer.param_groups[0]["lr"])
        final = step == cfg.optim.max_iter
        evaluate_now = final or (cfg.eval.period > 0 and step % cfg.eval.period == 0)
        if final:
            report["replica_max_abs_diff"] = replica_difference(ddp)
        if evaluate_now and logger is not None and val_set is not None:
            report.update(evaluate_and_log(trainee.model, cfg, val_set, logger, step))
        if evaluate_now or step % cfg.optim.checkpoint_period == 0:
            with checkpoint(trainee, cfg, train_set.categories, logger) as saved:
                ray.train.report({"step": step, **report}, checkpoint=saved)
        elif report:
            ray.train.report({"step": step, **report})
    window.finish()
