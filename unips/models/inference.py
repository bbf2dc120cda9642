"""From network outputs to COCO-panoptic segments: the three inference modes.

* ``full``: argmax over the channels of ``P``; ``amx``: argmax over ``Psi``. Each
  channel that wins pixels becomes one segment of its class. No post-processing.
* ``heu``: the Panoptic-FPN heuristic merge of instance masks and the semantic
  argmax (used as the baseline in the paper's Table 1).

Optional for every mode: small stuff segments to void (:func:`unips.evaluation.trim.trim_small_stuff`).
Segment ids are 1, 2, ... in channel order; ``category_id`` is the dataset's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unips.datasets.categories import CategoryMap
from unips.datasets.panoptic_format import mask_bbox_xywh
from unips.evaluation.trim import trim_small_stuff


def upsampled_argmax(logits: torch.Tensor, height: int, width: int, stride: int = 4, chunk: int = 16) -> torch.Tensor:
    """Argmax over channels after bilinear upsampling by ``stride``, cropped to ``(height, width)``.

    Args:
        logits: ``(K, h, w)`` with ``h * stride >= height`` and ``w * stride >= width``.

    Returns:
        ``(height, width)`` int64 channel indices. Channels are upsampled ``chunk`` at a time so a
        full-resolution ``(K, H, W)`` tensor never exists.
    """
    size = (logits.shape[1] * stride, logits.shape[2] * stride)
    best_value = best_index = None
    for start in range(0, logits.shape[0], chunk):
        up = F.interpolate(logits[None, start : start + chunk], size=size, mode="bilinear", align_corners=False)[0]
        up = up[:, :height, :width]
        value, index = up.max(dim=0)
        index = index + start
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value  # ties keep the lower channel, as a single argmax would
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index, best_index)
    assert best_index is not None
    return best_index


def describe_segments(panoptic: np.ndarray, segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill ``area`` and ``bbox`` from the map; segments without pixels are dropped."""
    described = []
    for seg in segments:
        mask = panoptic == seg["id"]
        area = int(mask.sum())
        if area:
            described.append({**seg, "area": area, "bbox": mask_bbox_xywh(mask)})
    return described


def channels_to_panoptic(
    channel_map: np.ndarray,
    channel_classes: Sequence[int],
    channel_scores: Sequence[float],
    categories: CategoryMap,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Turn a per-pixel channel index map into a panoptic id map and its segments.

    Args:
        channel_map: ``(H, W)`` channel indices (argmax of ``P`` or ``Psi``).
        channel_classes: training id of each of the ``K`` channels.
        channel_scores: score of each channel (1 for stuff channels).
        categories: training ids -> dataset category ids.

    Returns:
        ``(panoptic (H, W) int64, segments_info)``.
    """
    counts = np.bincount(channel_map.ravel(), minlength=len(channel_classes))
    lut = np.zeros(len(channel_classes), dtype=np.int64)
    segments = []
    for channel in np.flatnonzero(counts):
        segment_id = len(segments) + 1
        lut[channel] = segment_id
        train_id = int(channel_classes[channel])
        segments.append({"id": segment_id, "category_id": categories.dataset_id(train_id),
                         "isthing": int(categories.is_thing(train_id)), "score": float(channel_scores[channel])})
    return lut[channel_map], segments


def heuristic_merge(
    masks: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    semantic: np.ndarray,
    categories: CategoryMap,
    score_thresh: float = 0.5,
    overlap_thresh: float = 0.5,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The Panoptic-FPN merge of instance masks and semantic segmentation.

    Instances with ``score >= score_thresh`` are pasted from the highest score down; an
    instance is kept only if the share of its mask already taken is below ``overlap_thresh``,
    and then only its free pixels are taken. Stuff comes from the semantic argmax on the
    pixels left; pixels whose argmax is a thing class stay void. The area limit on stuff is
    the common stuff trimming applied after every mode.

    Args:
        masks: ``(D, H, W)`` bool instance masks.
        scores: ``(D,)``; classes: ``(D,)`` training ids.
        semantic: ``(H, W)`` semantic argmax in training ids.
    """
    panoptic = np.zeros(semantic.shape, dtype=np.int64)
    segments: list[dict[str, Any]] = []
    for k in np.argsort(-scores, kind="stable"):
        if scores[k] < score_thresh:
            break
        area = int(masks[k].sum())
        if area == 0:
            continue
        free = masks[k] & (panoptic == 0)
        if (area - int(free.sum())) / area >= overlap_thresh:
            continue
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append({"id": segment_id, "category_id": categories.dataset_id(int(classes[k])), "isthing": 1,
                         "score": float(scores[k])})
    for train_id in categories.stuff_train_ids:
        region = (semantic == train_id) & (panoptic == 0)
        if region.any():
            segment_id = len(segments) + 1
            panoptic[region] = segment_id
            segments.append({"id": segment_id, "category_id": categories.dataset_id(train_id), "isthing": 0,
                             "score": 1.0})
    return panoptic, segments


def finish_segments(
    panoptic: np.ndarray,
    segments: list[dict[str, Any]],
    categories: CategoryMap,
    trim_stuff: bool,
    stuff_area_limit: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Optional stuff trimming, then ``area`` and ``bbox`` of every remaining segment."""
    if trim_stuff:
        things = [categories.dataset_id(t) for t in categories.thing_train_ids]
        panoptic, segments = trim_small_stuff(panoptic, segments, things, stuff_area_limit)
    return panoptic, describe_segments(panoptic, segments)
