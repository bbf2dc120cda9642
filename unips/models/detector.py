"""Faster / Mask R-CNN from torchvision parts, opened up for the panoptic head (paper section 3.3).

torchvision's ``RoIHeads.forward`` returns losses only in training, and its masks
without gradients. Here the RPN and RoI pieces are called directly so that, in
training too, the panoptic head receives the detector's own predictions (decoded,
NMS'd, top-k) made exactly as at inference, with the scores ``s_k`` and the mask
probabilities still in the autograd graph.

Class labels at this interface are training ids (the semantic head's channels);
the detector's internal labels are 1..N_things with 0 = background.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_loss,
    paste_masks_in_image,
    project_masks_on_boxes,
)
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from unips.models.backbone import FPN_LEVELS
from unips.models.losses import lovasz_hinge

#: One image's detections: ``boxes`` (D, 4) x1 y1 x2 y2 in image pixels, ``scores`` (D,), ``labels`` (D,)
#: training ids.
Detections = dict[str, torch.Tensor]

class Detector(nn.Module):
    """RPN + RoI box head (+ optional mask head) with the panoptic network's label space.

    Args:
        rpn: torchvision ``RegionProposalNetwork``.
        roi_heads: torchvision ``RoIHeads`` (with or without the mask branch).
        thing_train_ids: training id of each thing class, in detector label order 1..N.
        mask_loss: ``"bce"`` (Mask R-CNN) or ``"lovasz"`` (Lovasz hinge, as the paper).
        test_proposals: the RPN's test-time count; in training the detections handed on to the
            panoptic head come from this many proposals, as at inference.
    """

    def __init__(
        self,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        thing_train_ids: Sequence[int],
        mask_loss: Literal["bce", "lovasz"] = "lovasz",
        test_proposals: int = 1000,
    ) -> None:
        super().__init__()
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.mask_loss = mask_loss
        self.test_proposals = test_proposals
        to_detector = torch.zeros(max(thing_train_ids) + 1, dtype=torch.int64)
        to_detector[list(thing_train_ids)] = torch.arange(1, len(thing_train_ids) + 1)
        self.register_buffer("_to_detector", to_detector, persistent=False)
        self.register_buffer("_to_train", torch.tensor([-1, *thing_train_ids]), persistent=False)

    @property
    def with_masks(self) -> bool:
        return self.roi_heads.has_mask()

    def forward(
        self, images: ImageList, features: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[list[Detections], dict[str, torch.Tensor]]:
        """Detect, and in training also compute the detection losses.

        Args:
            images: the padded batch and each image's size.
            features: FPN maps ``"0"``..``"3"``, ``"pool"``.
            targets: in training, per image ``boxes`` (N, 4), ``labels`` (N,) training ids, ``masks`` (N, H, W).

        Returns:
            per-image detections (with gradients in training) and the losses
            ``loss_rpn_objectness``, ``loss_rpn_box``, ``loss_box_cls``, ``loss_box_reg`` (+ ``loss_mask``).
        """
        det_targets = None
        if self.training:
            if targets is None:
                raise ValueError("the detector needs targets in training")
            det_targets = [{"boxes": t["boxes"], "labels": self._to_detector[t["labels"]], "masks": t["masks"]}
                           for t in targets]
        proposals, rpn_losses = self.rpn(images, dict(features), det_targets)
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            assert det_targets is not None
            losses = {"loss_rpn_objectness": rpn_losses["loss_objectness"], "loss_rpn_box": rpn_losses["loss_rpn_box_reg"]}
            losses.update(self._roi_losses(features, proposals, images.image_sizes, det_targets))
            # The panoptic head sees what inference would produce: the test-time number of proposals.
            proposals = [p[: self.test_proposals] for p in proposals]
        return self._detect(features, proposals, images.image_sizes), losses

    def _detect(
        self, features: Mapping[str, torch.Tensor], proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[Detections]:
        heads = self.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(dict(features), proposals, image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        boxes, scores, labels = heads.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
        return [{"boxes": b, "scores": s, "labels": self._to_train[lab]} for b, s, lab in zip(boxes, scores, labels,
                                                                                            strict=True)]

    def _roi_losses(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        heads = self.roi_heads
        sampled, matched_idxs, labels, regression_targets = heads.select_training_samples(list(proposals), targets)
        box_features = heads.box_head(heads.box_roi_pool(dict(features), sampled, image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        loss_cls, loss_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_box_cls": loss_cls, "loss_box_reg": loss_reg}
        if self.with_masks:
            positive = [torch.where(lab > 0)[0] for lab in labels]
            pos_boxes = [p[i] for p, i in zip(sampled, positive, strict=True)]
            pos_matched = [m[i] for m, i in zip(matched_idxs, positive, strict=True)]
            mask_logits = self._mask_logits(features, pos_boxes, image_sizes)
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            if self.mask_loss == "bce":
                losses["loss_mask"] = maskrcnn_loss(mask_logits, pos_boxes, gt_masks, gt_labels, pos_matched)
            else:
                losses["loss_mask"] = _lovasz_mask_loss(mask_logits, pos_boxes, gt_masks, gt_labels, pos_matched)
        return losses

    def _mask_logits(
        self, features: Mapping[str, torch.Tensor], boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]]
    ) -> torch.Tensor:
        heads = self.roi_heads
        return heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(dict(features), boxes, image_sizes)))

    def mask_probs(
        self, features: Mapping[str, torch.Tensor], detections: Sequence[Detections], image_sizes: list[tuple[int, int]]
    ) -> list[torch.Tensor]:
        """Mask probabilities of each detection's own class, ``(D, M, M)`` per image (M = 28), in the graph."""
        boxes = [d["boxes"] for d in detections]
        logits = self._mask_logits(features, boxes, image_sizes)
        labels = torch.cat([self._to_detector[d["labels"]] for d in detections])
        probs = logits[torch.arange(labels.shape[0], device=labels.device), labels].sigmoid()
        return list(probs.split([b.shape[0] for b in boxes]))


def _lovasz_mask_loss(
    mask_logits: torch.Tensor,
    proposals: list[torch.Tensor],
    gt_masks: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    matched_idxs: list[torch.Tensor],
) -> torch.Tensor:
    """``maskrcnn_loss`` with the Lovasz hinge in place of binary cross-entropy."""
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[i] for lab, i in zip(gt_labels, matched_idxs, strict=True)])
    targets = torch.cat([project_masks_on_boxes(m, p, i, size)
                         for m, p, i in zip(gt_masks, proposals, matched_idxs, strict=True)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0.0
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    # RoIAlign of a binary mask gives fractions at its edge; the hinge needs 0/1 targets.
    return lovasz_hinge(logits.flatten(1), (targets >= 0.5).to(logits.dtype).flatten(1))


def build_detector(
    thing_train_ids: Sequence[int],
    in_channels: int = 256,
    with_masks: bool = True,
    mask_loss: Literal["bce", "lovasz"] = "lovasz",
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000),
    box_batch_size_per_image: int = 512,
    box_head_dim: int = 1024,
    mask_head_channels: int = 256,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_image: int = 100,
) -> Detector:
    """torchvision's FPN Faster / Mask R-CNN heads with the given sizes.

    ``rpn_pre_nms_top_n`` and ``rpn_post_nms_top_n`` are ``(training, testing)`` counts.
    """
    num_classes = len(thing_train_ids) + 1
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    rpn = RegionProposalNetwork(
        anchors, RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": rpn_pre_nms_top_n[0], "testing": rpn_pre_nms_top_n[1]},
        post_nms_top_n={"training": rpn_post_nms_top_n[0], "testing": rpn_post_nms_top_n[1]},
        nms_thresh=0.7,
    )
    # The box head before the optional mask head: from one seed, detectors with and without masks
    # then share the box head's initial weights.
    box_head = TwoMLPHead(in_channels * 7 * 7, box_head_dim)
    box_predictor = FastRCNNPredictor(box_head_dim, num_classes)
    mask_parts: dict[str, nn.Module] = {}
    if with_masks:
        mask_parts = {
            "mask_roi_pool": MultiScaleRoIAlign(list(FPN_LEVELS), 14, 2),
            "mask_head": MaskRCNNHeads(in_channels, [mask_head_channels] * 4, 1),
            "mask_predictor": MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes),
        }
    roi_heads = RoIHeads(
        MultiScaleRoIAlign(list(FPN_LEVELS), 7, 2), box_head, box_predictor,
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=box_batch_size_per_image, positive_fraction=0.25,
        bbox_reg_weights=None, score_thresh=score_thresh, nms_thresh=nms_thresh,
        detections_per_img=detections_per_image, **mask_parts,
    )
    return Detector(rpn, roi_heads, thing_train_ids, mask_loss, test_proposals=rpn_post_nms_top_n[1])


def paste_full_resolution(mask_probs: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(D, M, M)`` probabilities -> ``(D, height, width)`` bool masks at 0.5, for output and AP."""
    if mask_probs.shape[0] == 0:
        return torch.zeros((0, height, width), dtype=torch.bool, device=mask_probs.device)
    return paste_masks_in_image(mask_probs[:, None], boxes, (height, width), padding=1)[:, 0] >= 0.5

