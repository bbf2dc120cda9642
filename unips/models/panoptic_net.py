"""The unified panoptic network (paper section 3): backbone, semantic and detection heads, panoptic head.

    model = UnifiedPanopticNet(
        backbone=ResNetFPN(depth=50),
        semantic_head=FPNDecoder(256, 128, len(categories)),
        detector=build_detector(categories.thing_train_ids),
        panoptic_head=PanopticHead(categories.stuff_train_ids, "B", AffinityHead(256, 128, 128)),
        categories=categories,
    )
    losses = model(images, targets)          # training: dict of weighted losses; sum them
    outputs = model.eval()(images, targets)  # evaluation: one ImageOutput per image (V, Psi, P, detections)

A :class:`~unips.models.postprocess.PanopticPostprocessor` beside the network reads the
panoptic answer of each inference mode from an :class:`ImageOutput`.

Training and inference run the same path: the detector's own (decoded, NMS'd, top-k)
detections build ``Psi``, the affinity head revises it into ``P``, and the
matching loss supervises ``P`` directly; at inference the argmax of ``P`` is the answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList

from unips.datasets.categories import IGNORE_INDEX, CategoryMap
from unips.models.backbone import ResNetFPN
from unips.models.decoder import OUTPUT_STRIDE, FPNDecoder
from unips.models.detector import Detections, Detector, paste_full_resolution
from unips.models.geometry import paste_masks, upsampled_argmax
from unips.models.losses import SemanticLoss, semantic_loss
from unips.models.matching import match_detections, panoptic_cross_entropy, pixel_targets, downsample_ids
from unips.models.panoptic_head import PanopticHead

_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision's ResNet weights expect
_STD = (0.229, 0.224, 0.225)
STRIDE = OUTPUT_STRIDE  # of V, Q, Psi and P
LOG_FLOOR = 1e-4  # P is floored here before the log of logits_form="log" (P is 0 outside a box)


@dataclass
class ImageOutput:
    """What the network answers for one image in evaluation, all on the CPU.

    Attributes:
        image_id: the target's ``image_id``, or None when no target was given.
        semantic: ``(H, W)`` int64 argmax of ``V`` upsampled to the image, training ids.
        psi: ``(K, h, w)`` the potential on its stride-4 frame; channels are the stuff classes, then
            the kept detections.
        p: ``(K, h, w)`` the potential revised by the affinities, or None without the affinity head.
        channel_classes: ``K`` training ids, one per channel.
        channel_scores: ``K`` scores (1 for stuff channels).
        detections: every raw detection, for AP: ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,)
            training ids, and with the mask head ``masks`` (D, H, W) bool.
        kept: ``(D,)`` bool, the detections that made channels (``score >= score_thresh``).
    """

    image_id: Any
    semantic: torch.Tensor
    psi: torch.Tensor
    p: torch.Tensor | None
    channel_classes: list[int]
    channel_scores: list[float]
    detections: dict[str, torch.Tensor]
    kept: torch.Tensor


class UnifiedPanopticNet(nn.Module):
    """The whole network. Parts are passed in; everything else is keyword arguments.

    Args:
        backbone: ResNet-FPN.
        semantic_head: decoder with one output channel per class (``V`` = its softmax).
        detector: RPN + RoI heads.
        panoptic_head: potential head (+ affinity head).
        categories: the dataset's categories (training ids <-> dataset ids, things / stuff).
        semantic_loss_kind: ``"ce"`` or ``"lovasz"``.
        end_to_end: train the panoptic head with the matching loss (the ablation's ``e2e``).
        train_with_gt_boxes: feed ground-truth boxes (score 1) instead of predictions to the
            panoptic head in training (paper Table H); the detector then gets no panoptic gradient.
        match_iou_thresh, match_same_class: the matching rule.
        loss_resolution: the matching loss on ``P`` upsampled to the image size (``"image"``, what the
            argmax at inference sees), on ``P``'s stride-4 grid (``"frame"``), or both summed.
        logits_form: how the matching loss reads ``P``: as logits (``"raw"``), or as unnormalised
            probabilities (``"log"``: cross-entropy on ``log P``, floored at :data:`LOG_FLOOR`).
        train_detections: detections fed to the panoptic head in training: ``"all"`` the detector
            returns, or only those that inference keeps (``"inference"``: score >= ``score_thresh``).
        loss_weights: ``detection``, ``semantic``, ``panoptic`` multipliers.
        score_thresh: detections at least this confident enter the panoptic head at inference.
    """

    def __init__(
        self,
        backbone: ResNetFPN,
        semantic_head: FPNDecoder,
        detector: Detector,
        panoptic_head: PanopticHead,
        categories: CategoryMap,
        *,
        semantic_loss_kind: SemanticLoss = "lovasz",
        end_to_end: bool = True,
        train_with_gt_boxes: bool = False,
        match_iou_thresh: float = 0.5,
        match_same_class: bool = True,
        loss_resolution: Literal["frame", "image", "both"] = "image",
        logits_form: Literal["raw", "log"] = "log",
        train_detections: Literal["all", "inference"] = "inference",
        loss_weights: Mapping[str, float] | None = None,
        score_thresh: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.semantic_head = semantic_head
        self.detector = detector
        self.panoptic_head = panoptic_head
        self.categories = categories
        self.semantic_loss_kind = semantic_loss_kind
        self.end_to_end = end_to_end
        self.train_with_gt_boxes = train_with_gt_boxes
        self.match_iou_thresh = match_iou_thresh
        self.match_same_class = match_same_class
        self.loss_resolution = loss_resolution
        self.logits_form = logits_form
        self.train_detections = train_detections
        self.loss_weights = {"detection": 0.25, "semantic": 1.0, "panoptic": 1.0, **(loss_weights or {})}
        self.score_thresh = score_thresh
        self._stuff_channel = {train_id: k for k, train_id in enumerate(panoptic_head.stuff_classes)}
        self.register_buffer("_mean", torch.tensor(_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_STD).view(3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ batching
    def _batch(self, images: Sequence[torch.Tensor]) -> ImageList:
        """Normalise ``(3, H_i, W_i)`` images in [0, 1] and pad them to a multiple of 32."""
        sizes = [(int(img.shape[1]), int(img.shape[2])) for img in images]
        height = 32 * math.ceil(max(h for h, _ in sizes) / 32)
        width = 32 * math.ceil(max(w for _, w in sizes) / 32)
        batch = self._mean.new_zeros((len(images), 3, height, width))
        for i, img in enumerate(images):
            batch[i, :, : img.shape[1], : img.shape[2]] = (img.to(batch.device) - self._mean) / self._std
        return ImageList(batch, sizes)

    def forward(
        self,
        images: Sequence[torch.Tensor],
        targets: Sequence[Mapping[str, Any]] | None = None,
        panoptic_scale: float = 1.0,
    ) -> dict[str, torch.Tensor] | list[ImageOutput]:
        """Training: ``images`` ``(3, H_i, W_i)`` and dataset ``targets`` -> weighted losses.

        ``panoptic_scale`` multiplies the panoptic loss (its warm-up); at 0 the panoptic head is skipped.

        Evaluation: -> one :class:`ImageOutput` per image; ``targets`` are optional and only lend
        their ``image_id``.
        """
        batch = self._batch(images)
        features = self.backbone(batch.tensors)
        semantic_logits = self.semantic_head(features)  # (B, N, H / 4, W / 4)
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            device = batch.tensors.device
            targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
            return self._losses(batch, features, semantic_logits, targets, panoptic_scale)
        return self._infer(batch, features, semantic_logits, targets)

    # ------------------------------------------------------------------ training
    def _losses(
        self,
        batch: ImageList,
        features: Mapping[str, torch.Tensor],
        semantic_logits: torch.Tensor,
        targets: list[dict[str, Any]],
        panoptic_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        detections, detector_losses = self.detector(batch, features, targets)
        w = self.loss_weights
        losses = {name: w["detection"] * value for name, value in detector_losses.items()}
        labels = semantic_logits.new_full((len(targets), *batch.tensors.shape[-2:]), IGNORE_INDEX, dtype=torch.int64)
        for i, t in enumerate(targets):
            labels[i, : t["semantic"].shape[0], : t["semantic"].shape[1]] = t["semantic"]
        losses["loss_semantic"] = w["semantic"] * semantic_loss(semantic_logits, labels, self.semantic_loss_kind)
        if self.end_to_end:
            if panoptic_scale > 0:
                losses["loss_panoptic"] = panoptic_scale * w["panoptic"] * self._panoptic_loss(
                    batch, features, semantic_logits, detections, targets)
            else:
                losses["loss_panoptic"] = semantic_logits.new_zeros(())
        return losses

    def _panoptic_inputs(
        self,
        batch: ImageList,
        features: Mapping[str, torch.Tensor],
        semantic_logits: torch.Tensor,
        detections: Sequence[Detections],
        detach_masks: bool = False,
        masks: Sequence[torch.Tensor] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(Psi, P)`` of every image, each cropped to the image's own ``ceil(H/4) x ceil(W/4)`` frame.

        ``masks``: the detections' ``(D, M, M)`` mask probabilities if already computed.
        """
        q = self.panoptic_head.affinity_features(features)
        probs = semantic_logits.softmax(dim=1)
        if masks is None and self.detector.with_masks:
            masks = self.detector.mask_probs(features, detections, batch.image_sizes)
        outputs = []
        for i, (height, width) in enumerate(batch.image_sizes):
            h, w = math.ceil(height / STRIDE), math.ceil(width / STRIDE)
            pasted = None
            if masks is not None:
                m = masks[i].detach() if detach_masks else masks[i]
                pasted = paste_masks(m, detections[i]["boxes"], h, w, STRIDE)
            outputs.append(self.panoptic_head(probs[i, :, :h, :w], detections[i], pasted,
                                              None if q is None else q[i, :, :h, :w]))
        return outputs

    def _panoptic_loss(
        self,
        batch: ImageList,
        features: Mapping[str, torch.Tensor],
        semantic_logits: torch.Tensor,
        detections: list[Detections],
        targets: list[dict[str, Any]],
    ) -> torch.Tensor:
        gt_boxes = self.train_with_gt_boxes
        if gt_boxes:  # paper Table H: ground-truth boxes with score 1; matching is the identity
            detections = [{"boxes": t["boxes"], "scores": torch.ones_like(t["boxes"][:, 0]), "labels": t["labels"]}
                          for t in targets]
        elif self.train_detections == "inference":
            detections = [{k: v[self._kept(d)] for k, v in d.items()} for d in detections]
        n_stuff = len(self.panoptic_head.stuff_classes)
        on_frame = self.loss_resolution in ("frame", "both")
        on_image = self.loss_resolution in ("image", "both")
        frame_logits, frame_goals, image_logits, image_goals = [], [], [], []
        for (psi, p), det, t in zip(self._panoptic_inputs(batch, features, semantic_logits, detections, gt_boxes),
                                    detections, targets, strict=True):
            if gt_boxes:
                pred_idx = gt_idx = torch.arange(t["boxes"].shape[0]).numpy()
            else:
                pred_idx, gt_idx = match_detections(det["boxes"], det["labels"], t["boxes"], t["labels"],
                                                    self.match_iou_thresh, self.match_same_class)
            instance_channel = {int(t["instance_ids"][g]): n_stuff + int(k) for k, g in zip(pred_idx, gt_idx,
                                                                                           strict=True)}
            out = psi if p is None else p
            if on_frame:
                frame_ids = downsample_ids(t["panoptic"], out.shape[1], out.shape[2])
                frame_logits.append(self._as_logits(out))
                frame_goals.append(pixel_targets(frame_ids, t["segments_info"], self.categories,
                                                 self._stuff_channel, instance_channel))
            if on_image:
                height, width = t["panoptic"].shape
                up = F.interpolate(out[None], scale_factor=STRIDE, mode="bilinear", align_corners=False)[0]
                image_logits.append(self._as_logits(up[:, :height, :width]))
                image_goals.append(pixel_targets(t["panoptic"], t["segments_info"], self.categories,
                                                 self._stuff_channel, instance_channel))
        loss = semantic_logits.new_zeros(())
        if on_frame:
            loss = loss + panoptic_cross_entropy(frame_logits, frame_goals)
        if on_image:
            loss = loss + panoptic_cross_entropy(image_logits, image_goals)
        return loss

    def _kept(self, detections: Detections) -> torch.Tensor:
        """``(D,)`` bool: the detections that enter the panoptic head at inference (and in training
        with ``train_detections="inference"``)."""
        return detections["scores"] >= self.score_thresh

    def _as_logits(self, p: torch.Tensor) -> torch.Tensor:
        """What the cross-entropy takes of ``P`` (either form has the same argmax)."""
        return p.clamp(min=LOG_FLOOR).log() if self.logits_form == "log" else p

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def _infer(
        self,
        batch: ImageList,
        features: Mapping[str, torch.Tensor],
        semantic_logits: torch.Tensor,
        targets: Sequence[Mapping[str, Any]] | None,
    ) -> list[ImageOutput]:
        raw, _ = self.detector(batch, features)
        keep = [self._kept(d) for d in raw]
        kept = [{k: v[m] for k, v in d.items()} for d, m in zip(raw, keep, strict=True)]
        # Mask probabilities of all raw detections (for AP); the kept ones are a selection of them.
        mask_probs = self.detector.mask_probs(features, raw, batch.image_sizes) if self.detector.with_masks else None
        kept_masks = None if mask_probs is None else [p[m] for p, m in zip(mask_probs, keep, strict=True)]
        panoptic_inputs = self._panoptic_inputs(batch, features, semantic_logits, kept, masks=kept_masks)
        stuff = self.panoptic_head.stuff_classes
        outputs = []
        for i, (height, width) in enumerate(batch.image_sizes):
            h, w = math.ceil(height / STRIDE), math.ceil(width / STRIDE)
            detections = {k: v.cpu() for k, v in raw[i].items()}
            if mask_probs is not None:
                detections["masks"] = paste_full_resolution(mask_probs[i], raw[i]["boxes"], height, width).cpu()
            psi, p = panoptic_inputs[i]
            outputs.append(ImageOutput(
                image_id=None if targets is None else targets[i].get("image_id"),
                semantic=upsampled_argmax(semantic_logits[i, :, :h, :w], height, width, STRIDE).cpu(),
                psi=psi.cpu(),
                p=None if p is None else p.cpu(),
                channel_classes=stuff + kept[i]["labels"].tolist(),
                channel_scores=[1.0] * len(stuff) + kept[i]["scores"].tolist(),
                detections=detections,
                kept=keep[i].cpu(),
            ))
        return outputs
