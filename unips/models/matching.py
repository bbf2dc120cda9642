"""The panoptic matching loss (paper section 3.5): match ground-truth segments to channels, then cross-entropy.

Stuff segments are matched to their class's channel. Thing instances are matched
to detections one-to-one by the Hungarian assignment that maximises the total box
IoU (``scipy.optimize.linear_sum_assignment``), keeping pairs whose IoU reaches the
threshold and, optionally, whose classes agree. Each pixel's target is the channel
its segment was matched to; pixels of unmatched instances, crowd regions and void
are ignored. Unmatched detections get no pixels, which teaches the head to
suppress false positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from unips.datasets.categories import CategoryMap

#: Target value of pixels that carry no loss (torch's cross-entropy default).
PANOPTIC_IGNORE = -100


def match_detections(
    pred_boxes: torch.Tensor,
    pred_classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    iou_thresh: float = 0.5,
    same_class: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of ``(D, 4)`` predicted to ``(G, 4)`` ground-truth boxes.

    Returns ``(pred_index, gt_index)``, two int arrays of the matched pairs: the pairs of
    the assignment maximising the total IoU over admissible pairs (IoU >= ``iou_thresh``,
    and equal classes if ``same_class``).
    """
    if pred_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    iou = box_iou(pred_boxes.detach().float(), gt_boxes.detach().float()).cpu().numpy()
    admissible = iou >= iou_thresh
    if same_class:
        admissible &= pred_classes.detach().cpu().numpy()[:, None] == gt_classes.detach().cpu().numpy()[None, :]
    # Inadmissible pairs weigh nothing, so the assignment maximises IoU over admissible pairs only.
    rows, cols = linear_sum_assignment(np.where(admissible, iou, 0.0), maximize=True)
    keep = admissible[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def downsample_ids(ids: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Nearest sample of an ``(H, W)`` id map at the pixel centres of an ``(h, w)`` frame."""
    rows = ((torch.arange(height, device=ids.device) + 0.5) * ids.shape[0] / height).long().clamp(max=ids.shape[0] - 1)
    cols = ((torch.arange(width, device=ids.device) + 0.5) * ids.shape[1] / width).long().clamp(max=ids.shape[1] - 1)
    return ids[rows][:, cols]


def pixel_targets(
    panoptic: torch.Tensor,
    segments_info: Sequence[Mapping[str, Any]],
    categories: CategoryMap,
    stuff_channel: Mapping[int, int],
    instance_channel: Mapping[int, int],
) -> torch.Tensor:
    """Per-pixel target channel.

    Args:
        panoptic: ``(h, w)`` ground-truth segment ids at the resolution of ``P``.
        segments_info: the ground-truth segments (``id``, ``category_id``, ``iscrowd``).
        categories: dataset category ids -> training ids.
        stuff_channel: stuff training id -> its channel.
        instance_channel: segment id of a matched thing instance -> its channel.

    Returns:
        ``(h, w)`` int64 channel indices, :data:`PANOPTIC_IGNORE` for void, crowd and unmatched instances.
    """
    target = torch.full(panoptic.shape, PANOPTIC_IGNORE, dtype=torch.int64, device=panoptic.device)
    for seg in segments_info:
        train_id = categories.train_id(seg["category_id"])
        if categories.is_thing(train_id):
            channel = None if seg.get("iscrowd", 0) else instance_channel.get(seg["id"])
        else:
            channel = stuff_channel[train_id]
        if channel is not None:
            target[panoptic == seg["id"]] = channel
    return target


def panoptic_cross_entropy(logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean pixel-wise cross-entropy over the valid pixels of all images.

    ``logits[i]`` is ``P`` of image ``i``, ``(K_i, h_i, w_i)`` (channel counts differ per image);
    ``targets[i]`` is ``(h_i, w_i)`` from :func:`pixel_targets`.
    """
    total = logits[0].new_zeros(())
    count = 0
    for p, t in zip(logits, targets, strict=True):
        total = total + F.cross_entropy(p[None], t[None], ignore_index=PANOPTIC_IGNORE, reduction="sum")
        count += int((t != PANOPTIC_IGNORE).sum())
    return total / max(count, 1)
