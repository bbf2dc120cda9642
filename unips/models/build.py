"""The network and the post-processor a configuration describes (plain functions; the parts stay usable on
their own)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from unips.config import Config, InferenceMode
from unips.datasets.categories import CategoryMap
from unips.models.affinity import AffinityHead
from unips.models.backbone import ResNetFPN
from unips.models.decoder import FPNDecoder
from unips.models.detector import build_detector
from unips.models.panoptic_head import PanopticHead
from unips.models.panoptic_net import UnifiedPanopticNet
from unips.models.postprocess import PanopticPostprocessor

T = TypeVar("T")


def _seeded(seed: int, make: Callable[[], T]) -> T:
    """``make()`` with torch's CPU generator seeded to ``seed``, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build_model(cfg: Config, categories: CategoryMap) -> UnifiedPanopticNet:
    """Assemble :class:`UnifiedPanopticNet` from ``cfg.model``, the loss weights and ``eval.score_thresh``."""
    m, d, panoptic = cfg.model, cfg.model.detector, cfg.model.panoptic
    channels = m.backbone.fpn_channels
    # Each part draws its initial weights from its own seed, taken from the global generator in a
    # fixed order: from one seed, all rows of a table then start from the same weights wherever they
    # share a part (as the paper's rows share their ImageNet weights), whichever optional parts
    # (mask head, affinity head) a row has. The mask head is built last inside the detector.
    backbone_seed, semantic_seed, detector_seed, affinity_seed = torch.randint(2**62, (4,)).tolist()
    backbone = _seeded(backbone_seed, lambda: ResNetFPN(
        m.backbone.depth, channels, se_on_c5=m.backbone.se_on_c5, norm=m.backbone.norm,
        freeze_at=m.backbone.freeze_at, pretrained=m.backbone.pretrained))
    semantic_head = _seeded(semantic_seed, lambda: FPNDecoder(channels, m.semantic.channels, len(categories)))
    detector = _seeded(detector_seed, lambda: build_detector(
        categories.thing_train_ids, channels, with_masks=d.with_masks, mask_loss=d.mask_loss,
        anchor_sizes=d.anchor_sizes, rpn_pre_nms_top_n=(d.rpn_pre_nms_top_n_train, d.rpn_pre_nms_top_n_test),
        rpn_post_nms_top_n=(d.rpn_post_nms_top_n_train, d.rpn_post_nms_top_n_test),
        box_batch_size_per_image=d.box_batch_size_per_image, box_head_dim=d.box_head_dim,
        mask_head_channels=d.mask_head_channels, score_thresh=d.score_thresh, nms_thresh=d.nms_thresh,
        detections_per_image=d.detections_per_image))
    affinity = None
    if panoptic.use_affinity:
        affinity = _seeded(affinity_seed, lambda: AffinityHead(
            channels, m.semantic.channels, panoptic.affinity_channels, scale=panoptic.affinity_scale,
            activation=panoptic.affinity_activation, centre=panoptic.affinity_centre,
            learn_gain=panoptic.affinity_gain, support=panoptic.affinity_support))
    return UnifiedPanopticNet(
        backbone=backbone,
        semantic_head=semantic_head,
        detector=detector,
        panoptic_head=PanopticHead(categories.stuff_train_ids, panoptic.variant, affinity),
        categories=categories,
        semantic_loss_kind=m.semantic.loss,
        end_to_end=panoptic.end_to_end,
        train_with_gt_boxes=panoptic.train_with_gt_boxes,
        match_iou_thresh=panoptic.match_iou_thresh,
        match_same_class=panoptic.match_same_class,
        loss_resolution=panoptic.loss_resolution,
        logits_form=panoptic.logits,
        train_detections=panoptic.train_detections,
        loss_weights=cfg.optim.loss_weights.model_dump(),
        score_thresh=cfg.eval.score_thresh,
    )


def build_postprocessor(cfg: Config, categories: CategoryMap,
                        modes: Sequence[InferenceMode | str] | None = None) -> PanopticPostprocessor:
    """The post-processor of ``cfg.eval``: its modes (the first is the main one; ``modes`` instead, if given) and
    the merge's overlap rule."""
    return PanopticPostprocessor(cfg.eval.modes if modes is None else modes, categories.stuff_train_ids,
                                 overlap_thresh=cfg.eval.heu_overlap_thresh)
