"""From the network's raw outputs to panoptic segments: the three inference modes.

    postprocess = PanopticPostprocessor([InferenceMode.FULL, InferenceMode.HEU], categories.stuff_train_ids)
    for output in model.eval()(images):
        predictions = postprocess(output)  # {mode: PanopticPrediction}

* ``full``: argmax over the channels of ``P``; ``amx``: argmax over ``Psi``. Each channel
  that wins pixels becomes one segment of its class. No post-processing.
* ``heu``: the Panoptic-FPN heuristic merge of instance masks and the semantic argmax (the
  paper's Table 1 baseline).

Segments carry training ids (``train_id``); dataset category ids and stuff trimming belong
to evaluation and export (:func:`unips.evaluation.segments.dataset_segments`). Segment ids
are 1, 2, ... in channel order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unips.config import InferenceMode
from unips.datasets.panoptic_format import mask_bbox_xywh
from unips.models.decoder import OUTPUT_STRIDE
from unips.models.geometry import upsampled_argmax
from unips.models.panoptic_net import ImageOutput

Segments = list[dict[str, Any]]


@dataclass
class PanopticPrediction:
    """One image in one mode: ``panoptic`` ``(H, W)`` int64 segment ids (0 = void) and its ``segments``
    (``id``, ``train_id``, ``score``, ``area``, ``bbox``)."""

    panoptic: torch.Tensor
    segments: Segments


def describe_segments(panoptic: np.ndarray, segments: Segments) -> Segments:
    """Fill ``area`` and ``bbox`` from the map; segments without pixels are dropped."""
    described = []
    for seg in segments:
        mask = panoptic == seg["id"]
        area = int(mask.sum())
        if area:
            described.append({**seg, "area": area, "bbox": mask_bbox_xywh(mask)})
    return described


def channels_to_panoptic(
    channel_map: np.ndarray, channel_classes: Sequence[int], channel_scores: Sequence[float]
) -> tuple[np.ndarray, Segments]:
    """Turn a per-pixel channel index map into a panoptic id map and its segments.

    Args:
        channel_map: ``(H, W)`` channel indices (argmax of ``P`` or ``Psi``).
        channel_classes: training id of each of the ``K`` channels.
        channel_scores: score of each channel (1 for stuff channels).

    Returns:
        ``(panoptic (H, W) int64, segments)``, one segment per channel that wins a pixel.
    """
    counts = np.bincount(channel_map.ravel(), minlength=len(channel_classes))
    lut = np.zeros(len(channel_classes), dtype=np.int64)
    segments = []
    for channel in np.flatnonzero(counts):
        segment_id = len(segments) + 1
        lut[channel] = segment_id
        segments.append({"id": segment_id, "train_id": int(channel_classes[channel]),
                         "score": float(channel_scores[channel])})
    return lut[channel_map], segments


def heuristic_merge(
    masks: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    semantic: np.ndarray,
    stuff_train_ids: Sequence[int],
    overlap_thresh: float = 0.5,
) -> tuple[np.ndarray, Segments]:
    """The Panoptic-FPN merge of instance masks and semantic segmentation.

    Instances are pasted from the highest score down; an instance is kept only if the share
    of its mask already taken is below ``overlap_thresh``, and then only its free pixels are
    taken. Stuff comes from the semantic argmax on the pixels left; pixels whose argmax is a
    thing class stay void.

    Args:
        masks: ``(D, H, W)`` bool masks of the detections the network kept.
        scores: ``(D,)``; classes: ``(D,)`` training ids.
        semantic: ``(H, W)`` semantic argmax in training ids.
        stuff_train_ids: the stuff classes, in the order their segments are numbered.
    """
    panoptic = np.zeros(semantic.shape, dtype=np.int64)
    segments: Segments = []
    for k in np.argsort(-scores, kind="stable"):
        area = int(masks[k].sum())
        if area == 0:
            continue
        free = masks[k] & (panoptic == 0)
        if (area - int(free.sum())) / area >= overlap_thresh:
            continue
        segment_id = len(segments) + 1
        panoptic[free] = segment_id
        segments.append({"id": segment_id, "train_id": int(classes[k]), "score": float(scores[k])})
    for train_id in stuff_train_ids:
        region = (semantic == train_id) & (panoptic == 0)
        if region.any():
            segment_id = len(segments) + 1
            panoptic[region] = segment_id
            segments.append({"id": segment_id, "train_id": int(train_id), "score": 1.0})
    return panoptic, segments


class PanopticPostprocessor:
    """Turns one image's :class:`~unips.models.panoptic_net.ImageOutput` into a panoptic answer per mode.

    Args:
        modes: the inference modes to produce; the first is the main one.
        stuff_train_ids: the stuff classes (the heuristic merge numbers their segments in this order).
        overlap_thresh: the heuristic merge keeps an instance if less than this share of it is taken.
        stride: pixels of the image per pixel of ``P`` and ``Psi``.
    """

    def __init__(
        self,
        modes: Sequence[InferenceMode],
        stuff_train_ids: Sequence[int],
        overlap_thresh: float = 0.5,
        stride: int = OUTPUT_STRIDE,
    ) -> None:
        self.modes = [InferenceMode(mode) for mode in modes]
        self.stuff_train_ids = list(stuff_train_ids)
        self.overlap_thresh = overlap_thresh
        self.stride = stride
        self._answer: dict[InferenceMode, Callable[[ImageOutput], tuple[np.ndarray, Segments]]] = {
            InferenceMode.FULL: lambda out: self._argmax(out, out.p),
            InferenceMode.AMX: lambda out: self._argmax(out, out.psi),
            InferenceMode.HEU: self._merge,
        }

    def __call__(self, output: ImageOutput) -> dict[InferenceMode, PanopticPrediction]:
        predictions = {}
        for mode in self.modes:
            panoptic, segments = self._answer[mode](output)
            predictions[mode] = PanopticPrediction(torch.from_numpy(panoptic), describe_segments(panoptic, segments))
        return predictions

    def _argmax(self, output: ImageOutput, logits: torch.Tensor | None) -> tuple[np.ndarray, Segments]:
        if logits is None:
            raise ValueError("mode 'full' (argmax of P) needs a network with the affinity head")
        channels = upsampled_argmax(logits, *output.semantic.shape, stride=self.stride)
        return channels_to_panoptic(channels.numpy(), output.channel_classes, output.channel_scores)

    def _merge(self, output: ImageOutput) -> tuple[np.ndarray, Segments]:
        detections = output.detections
        if "masks" not in detections:
            raise ValueError("mode 'heu' (heuristic merge of masks) needs a network with the mask head")
        kept = output.kept
        return heuristic_merge(detections["masks"][kept].numpy(), detections["scores"][kept].numpy(),
                               detections["labels"][kept].numpy(), output.semantic.numpy(), self.stuff_train_ids,
                               self.overlap_thresh)
