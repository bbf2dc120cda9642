"""SGD with momentum and the paper's schedule: linear warm-up from lr * factor, then step decay.

The multiplier is detectron2's WarmupMultiStepLR as a picklable callable, so the
scheduler's state (including it) checkpoints and loads with ``weights_only=True``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch import nn

from unips.config import OptimConfig


class WarmupMultiStep:
    """Learning-rate multiplier after ``iteration`` optimizer steps.

    ``gamma ** (number of milestones <= iteration)``, times a linear ramp from
    ``warmup_factor`` to 1 over the first ``warmup_iters`` iterations.
    """

    def __init__(self, milestones: Sequence[int], gamma: float, warmup_iters: int, warmup_factor: float) -> None:
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor

    def __call__(self, iteration: int) -> float:
        factor = self.gamma ** bisect_right(self.milestones, iteration)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor *= self.warmup_factor * (1.0 - alpha) + alpha
        return factor


def learning_rate(cfg: OptimConfig) -> float:
    """``base_lr``, scaled linearly to the batch size when ``lr_reference_batch`` is set."""
    if cfg.lr_reference_batch is None:
        return cfg.base_lr
    return cfg.base_lr * cfg.images_per_batch / cfg.lr_reference_batch


def panoptic_loss_factor(iteration: int, start: int, ramp: int) -> float:
    """Multiplier of the panoptic loss at 1-based ``iteration``: 0 up to ``start``, then a linear
    ramp reaching 1 after ``start + ramp`` iterations (1 from the start when both are 0)."""
    if iteration <= start:
        return 0.0
    if ramp == 0:
        return 1.0
    return min(1.0, (iteration - start) / ramp)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum (or AdamW); no weight decay on normalisation parameters (detectron2's default)."""
    norm_types = (nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad:
                (no_decay if isinstance(module, norm_types) else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=learning_rate(cfg))
    return torch.optim.SGD(groups, lr=learning_rate(cfg), momentum=cfg.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Step it once after every optimizer step."""
    multiplier = WarmupMultiStep(cfg.steps, cfg.gamma, cfg.warmup_iters, cfg.warmup_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
