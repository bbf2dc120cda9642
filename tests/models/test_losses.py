"""Lovasz losses equal the Jaccard loss they extend, on hard predictions."""

from __future__ import annotations

import pytest
import torch

from unips.models.losses import lovasz_hinge, lovasz_softmax, semantic_loss


def _jaccard_loss(pred: torch.Tensor, gt: torch.Tensor) -> float:
    union = (pred | gt).sum().item()
    return 1.0 - (pred & gt).sum().item() / union if union else 0.0


def test_lovasz_softmax_of_one_hot_predictions_is_the_mean_jaccard_loss_of_present_classes() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 6, 7), generator=generator)  # classes 0..2 present, class 3 absent
    labels[0, 0, 0] = 255
    pred = torch.randint(0, 4, (2, 6, 7), generator=generator)
    probs = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float()
    valid = labels != 255
    expected = sum(_jaccard_loss((pred == c) & valid, (labels == c) & valid) for c in range(3)) / 3
    assert lovasz_softmax(probs, labels).item() == pytest.approx(expected, abs=1e-6)
    perfect = torch.nn.functional.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    assert lovasz_softmax(perfect, labels).item() == pytest.approx(0.0, abs=1e-7)


def test_lovasz_hinge_of_unit_margins_is_twice_the_jaccard_loss_per_mask() -> None:
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (3, 50), generator=generator).float()
    pred = torch.randint(0, 2, (3, 50), generator=generator).bool()
    logits = pred.float() * 2 - 1  # +-1: hinge errors are 0 where right and 2 where wrong
    expected = sum(2 * _jaccard_loss(pred[r], labels[r].bool()) for r in range(3)) / 3
    assert lovasz_hinge(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_losses_have_gradients_and_handle_empty_input() -> None:
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)
    labels = torch.randint(0, 4, (2, 12, 20))
    for kind in ("ce", "lovasz"):
        logits.grad = None
        semantic_loss(logits, labels, kind).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
    ignored = torch.full((2, 12, 20), 255)
    assert semantic_loss(logits, ignored, "ce").item() == 0.0 == semantic_loss(logits, ignored, "lovasz").item()
    assert lovasz_hinge(torch.zeros(0, 784), torch.zeros(0, 784)).item() == 0.0
