"""The network a configuration describes (plain function; the parts stay usable on their own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from unips.config import Config
from unips.datasets.categories import CategoryMap
from unips.models.affinity import AffinityHead
from unips.models.backbone import ResNetFPN
from unips.models.decoder import FPNDecoder
from unips.models.detector import build_detector
from unips.models.panoptic_head import PanopticHead
from unips.models.panoptic_net import UnifiedPanopticNet

T = TypeVar("T")


def _seeded(seed: int, make: Callable[[], T]) -> T:
    """``make()`` with torch's CPU generator seeded to ``seed``, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_model(cfg: Config, categories: CategoryMap) -> UnifiedPanopticNet:
    """Assemble :class:`UnifiedPanopticNet` from ``cfg.model``, the loss weights and the inference settings."""
    m = cfg.model
    channels = m.backbone.fpn_channels
    d = m.detector
    # Each part draws its initial weights from its own seed, taken from the global generator in a
    # fixed order: from one seed, all rows of a table then start from the same weights wherever they
    # share a part (as the paper's rows share their ImageNet weights), whichever optional parts
    # (mask head, affinity head) a row has. The mask head is built last inside the detector.
    backbone_seed, semantic_seed, detector_seed, affinity_seed = torch.randint(2**62, (4,)).tolist()
    backbone = _seeded(backbone_seed, lambda: ResNetFPN(m.backbone.depth, channels, m.backbone.se_on_c5, m.backbone.norm, m.backbone.freeze_at,
                         m.backbone.pretrained))
    semantic_head = _seeded(semantic_seed, lambda: FPNDecoder(channels, m.semantic.channels, len(categories)))
    detector = _seeded(detector_seed, lambda: build_detector(
        categories.thing_train_ids, channels, d.with_masks, d.mask_loss, d.anchor_sizes,
        (d.rpn_pre_nms_top_n_train, d.rpn_pre_nms_top_n_test),
        (d.rpn_post_nms_top_n_train, d.rpn_post_nms_top_n_test),
        d.box_batch_size_per_image, d.box_head_dim, d.mask_head_channels, d.score_thresh, d.nms_thresh,
        d.detections_per_image,
    ))
    affinity = None
    if m.panoptic.use_affinity:
        affinity = _seeded(affinity_seed, lambda: AffinityHead(
            channels, m.semantic.channels, m.panoptic.affinity_channels, m.panoptic.affinity_scale,
            m.panoptic.affinity_activation, m.panoptic.affinity_centre, m.panoptic.affinity_gain))
    return UnifiedPanopticNet(
        backbone=backbone,
        semantic_head=semantic_head,
        detector=detector,
        panoptic_head=PanopticHead(categories.stuff_train_ids, m.panoptic.variant, affinity),
        categories=categories,
        semantic_loss_kind=m.semantic.loss,
        end_to_end=m.panoptic.end_to_end,
        train_with_gt_boxes=m.panoptic.train_with_gt_boxes,
        match_iou_thresh=m.panoptic.match_iou_thresh,
        match_same_class=m.panoptic.match_same_class,
        loss_resolution=m.panoptic.loss_resolution,
        logits_form=m.panoptic.logits,
        train_detections=m.panoptic.train_detections,
        loss_weights=cfg.optim.loss_weights.model_dump(),
        inference_modes=cfg.eval.modes,
        score_thresh=cfg.eval.score_thresh,
        heu_overlap_thresh=cfg.eval.heu_overlap_thresh,
        trim_stuff=cfg.eval.trim_stuff,
        stuff_area_limit=cfg.eval.stuff_area_limit,
    )
