"""Learning-rate schedule and optimizer groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unips.config import OptimConfig
from unips.platform.schedule import (
    WarmupMultiStep,
    build_optimizer,
    build_scheduler,
    learning_rate,
    panoptic_loss_factor,
)


def test_multiplier_ramps_from_the_warmup_factor_then_steps_down() -> None:
    f = WarmupMultiStep(milestones=[40_000, 55_000], gamma=0.1, warmup_iters=500, warmup_factor=1 / 3)
    assert f(0) == pytest.approx(1 / 3)
    assert f(250) == pytest.approx(1 / 3 + (1 - 1 / 3) / 2)
    assert f(500) == 1.0 and f(39_999) == 1.0
    assert f(40_000) == pytest.approx(0.1) and f(54_999) == pytest.approx(0.1)
    assert f(55_000) == pytest.approx(0.01)


def test_scheduler_gives_the_papers_learning_rates_step_by_step() -> None:
    cfg = OptimConfig(base_lr=0.01, max_iter=20, steps=(10, 15), warmup_iters=4, warmup_factor=0.25)
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.01 * (0.25 + 0.75 * i / 4) for i in range(4)] + [0.01] * 6 + [0.001] * 5 + [0.0001] * 5
    assert seen == pytest.approx(expected)


def test_normalisation_parameters_get_no_weight_decay_and_frozen_ones_are_left_out() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Linear(8, 2))
    model[2].requires_grad_(False)
    groups = build_optimizer(model, OptimConfig(weight_decay=1e-4)).param_groups
    assert [len(g["params"]) for g in groups] == [2, 2]  # conv weight + bias; GN weight + bias
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert all(p is not model[2].weight for g in groups for p in g["params"])
    assert isinstance(build_optimizer(model, OptimConfig()), torch.optim.SGD)


def test_panoptic_loss_is_off_then_ramps_linearly() -> None:
    assert [panoptic_loss_factor(i, start=100, ramp=50) for i in (1, 100, 101, 125, 150, 151, 10_000)] == \
        pytest.approx([0.0, 0.0, 0.02, 0.5, 1.0, 1.0, 1.0])
    assert panoptic_loss_factor(1, start=0, ramp=0) == 1.0  # no warm-up: on from the first iteration
    assert panoptic_loss_factor(30, start=30, ramp=0) == 0.0 and panoptic_loss_factor(31, start=30, ramp=0) == 1.0


def test_learning_rate_scales_linearly_with_the_batch() -> None:
    assert learning_rate(OptimConfig(base_lr=0.01)) == 0.01
    scaled = OptimConfig(base_lr=0.01, images_per_batch=4, lr_reference_batch=32)
    assert learning_rate(scaled) == pytest.approx(0.00125)
    model = nn.Linear(2, 2)
    assert build_optimizer(model, scaled).param_groups[0]["lr"] == pytest.approx(0.00125)
    adamw = build_optimizer(model, OptimConfig(optimizer="adamw", base_lr=1e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05
