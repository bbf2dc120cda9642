"""Loss functions: Lovasz-softmax and Lovasz hinge (Berman et al., CVPR 2018), semantic and mask losses.

The paper supervises the semantic head with Lovasz-softmax and the mask head with
the Lovasz hinge instead of cross-entropy (Appendix A.2, B). The Lovasz extension
of the Jaccard loss is written here from its definition: sort the errors, weight
them by the increments of the Jaccard loss along that order.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from unips.datasets.categories import IGNORE_INDEX


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss along a sorted order.

    ``gt_sorted`` ``(..., P)`` holds 0/1 ground truth sorted by decreasing error; the result has the
    same shape. Summing ``errors_sorted * lovasz_grad(gt_sorted)`` gives the Lovasz extension.
    """
    gts = gt_sorted.sum(dim=-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(dim=-1)
    union = gts + (1.0 - gt_sorted).cumsum(dim=-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Lovasz-softmax loss over the classes present in ``labels``.

    Args:
        probs: ``(B, C, H, W)`` class probabilities.
        labels: ``(B, H, W)`` class indices; ``ignore_index`` pixels are left out.
    """
    num_classes = probs.shape[1]
    flat = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = labels.reshape(-1)
    valid = labels != ignore_index
    flat, labels = flat[valid], labels[valid]
    present = torch.unique(labels)
    if present.numel() == 0:
        return probs.sum() * 0.0
    fg = (labels[None, :] == present[:, None]).to(flat.dtype)  # (C_present, P)
    errors = (fg - flat[:, present].T).abs()
    errors_sorted, order = torch.sort(errors, dim=1, descending=True, stable=True)
    grads = lovasz_grad(torch.gather(fg, 1, order))
    return (errors_sorted * grads).sum(dim=1).mean()


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge, averaged over masks.

    Args:
        logits: ``(R, P)`` scores (one row per mask, e.g. 28 x 28 flattened).
        labels: ``(R, P)`` 0/1 targets.
    """
    if logits.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, dim=1, descending=True, stable=True)
    grads = lovasz_grad(torch.gather(labels, 1, order))
    return (F.relu(errors_sorted) * grads).sum(dim=1).mean()


SemanticLoss = Literal["ce", "lovasz"]


def semantic_loss(logits: torch.Tensor, labels: torch.Tensor, kind: SemanticLoss) -> torch.Tensor:
    """Semantic segmentation loss at label resolution.

    Args:
        logits: ``(B, N, h, w)`` class scores (stride 4); upsampled bilinearly to the labels' size.
        labels: ``(B, H, W)`` training ids, 255 = ignore.
        kind: ``"ce"`` (cross-entropy) or ``"lovasz"`` (Lovasz-softmax).
    """
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if kind == "ce":
        if not (labels != IGNORE_INDEX).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    if kind == "lovasz":
        return lovasz_softmax(logits.softmax(dim=1), labels)
    raise ValueError(f"unknown semantic loss {kind!r}: 'ce' or 'lovasz'")
