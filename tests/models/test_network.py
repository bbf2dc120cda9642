"""The assembled network: gradient paths, training and evaluation outputs, construction rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet18, resnet34

from unips.config import load_config
from unips.datasets import PanopticDataset
from unips.datasets.panoptic_format import mask_bbox_xywh
from unips.models.backbone import ResNetFPN
from unips.models.build import build_model, build_postprocessor

SMALL = ["model.backbone.fpn_channels=32", "model.semantic.channels=32", "model.panoptic.affinity_channels=16",
         "model.detector.box_head_dim=64", "model.detector.mask_head_channels=16", "eval.modes=[full, amx, heu]"]


def _model(categories, *overrides: str):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_model(load_config("smoke", [*SMALL, *overrides]), categories)


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_panoptic_loss_alone_reaches_detector_scores_affinity_and_semantic_head(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    # Every detection enters (none reaches 0.5 at initialisation) and the affinity's gain is fixed at 1,
    # so that each path is open from the first step.
    model = _model(categories, "eval.score_thresh=0.0", "model.panoptic.affinity_gain=false").train()
    model(images, targets)["loss_panoptic"].backward()
    assert _grad_norm(model.detector.roi_heads.box_predictor.cls_score) > 0  # through the scores s_k
    assert _grad_norm(model.detector.roi_heads.mask_predictor) > 0  # through the masks M
    assert _grad_norm(model.panoptic_head.affinity.phi0) > 0 and _grad_norm(model.panoptic_head.affinity.phi1) > 0
    assert _grad_norm(model.panoptic_head.affinity.decoder) > 0  # Q learns through the panoptic loss only
    assert _grad_norm(model.semantic_head) > 0


def test_in_gt_box_mode_the_detector_gets_no_panoptic_gradient(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    model = _model(categories, "model.panoptic.train_with_gt_boxes=true", "model.panoptic.affinity_gain=false").train()
    model(images, targets)["loss_panoptic"].backward()
    assert _grad_norm(model.detector) == 0
    assert _grad_norm(model.semantic_head) > 0 and _grad_norm(model.panoptic_head.affinity.phi0) > 0


def test_training_returns_weighted_named_losses(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    torch.manual_seed(1)
    losses = _model(categories).train()(images, targets)
    assert set(losses) == {"loss_rpn_objectness", "loss_rpn_box", "loss_box_cls", "loss_box_reg", "loss_mask",
                           "loss_semantic", "loss_panoptic"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    torch.manual_seed(1)
    doubled = _model(categories, "optim.loss_weights.detection=0.5", "optim.loss_weights.panoptic=3.0").train()(
        images, targets)
    torch.testing.assert_close(doubled["loss_box_cls"], 2 * losses["loss_box_cls"])
    torch.testing.assert_close(doubled["loss_panoptic"], 3 * losses["loss_panoptic"])
    torch.testing.assert_close(doubled["loss_semantic"], losses["loss_semantic"])
    no_e2e = _model(categories, "model.panoptic.use_affinity=false", "model.panoptic.end_to_end=false",
                    "eval.modes=[amx]").train()(images, targets)
    assert "loss_panoptic" not in no_e2e


def test_evaluation_returns_the_raw_outputs_the_postprocessor_reads(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    cfg = load_config("smoke", [*SMALL, "eval.score_thresh=0.0"])
    torch.manual_seed(0)
    outputs = build_model(cfg, categories).eval()(images, targets)
    assert len(outputs) == 2
    n_stuff = len(categories.stuff_train_ids)
    for out, image, target in zip(outputs, images, targets, strict=True):
        height, width = image.shape[1:]
        frame = (-(-height // 4), -(-width // 4))
        assert out.image_id == target["image_id"]
        assert out.semantic.shape == (height, width) and int(out.semantic.max()) < len(categories)
        det = out.detections
        assert det["boxes"].shape[1] == 4 and det["masks"].shape[1:] == (height, width)
        assert set(det["labels"].tolist()) <= set(categories.thing_train_ids)
        # One channel per stuff class, then one per kept detection (all of them at threshold 0).
        assert out.kept.all() and out.psi.shape == out.p.shape == (n_stuff + len(det["scores"]), *frame)
        assert out.channel_classes == [*categories.stuff_train_ids, *det["labels"].tolist()]
        assert out.channel_scores == [1.0] * n_stuff + det["scores"].tolist()
        predictions = build_postprocessor(cfg, categories)(out)
        assert list(predictions) == ["full", "amx", "heu"]
        for prediction in predictions.values():
            panoptic = prediction.panoptic.numpy()
            assert panoptic.shape == (height, width)
            assert set(np.unique(panoptic)) - {0} == {s["id"] for s in prediction.segments}
            for seg in prediction.segments:
                mask = panoptic == seg["id"]
                assert seg["area"] == mask.sum() and seg["bbox"] == mask_bbox_xywh(mask)
                assert 0 <= seg["train_id"] < len(categories)


def test_images_of_different_sizes_share_a_batch(synthetic_root: Path) -> None:
    dataset = PanopticDataset(synthetic_root / "images/train", synthetic_root / "panoptic_train.json",
                              synthetic_root / "panoptic_train")
    big = dataset[0]
    small_image = big[0][:, :100, :150]
    small_target = {k: v for k, v in dataset[1][1].items()}
    from unips.datasets.targets import panoptic_targets

    small_target.update(panoptic_targets(small_target["panoptic"][:100, :150].numpy(),
                                         small_target["segments_info"], dataset.categories))
    model = _model(dataset.categories)
    losses = model.train()([big[0], small_image], [big[1], small_target])
    sum(losses.values()).backward()
    outputs = model.eval()([big[0], small_image])
    assert outputs[1].semantic.shape == (100, 150) and outputs[0].semantic.shape == (128, 256)
    assert outputs[1].p.shape[1:] == (25, 38) and outputs[0].p.shape[1:] == (32, 64)


def test_backbone_loads_a_local_torchvision_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.manual_seed(3)
    reference = resnet18()
    torch.save(reference.state_dict(), path)
    backbone = ResNetFPN(18, 32, norm="frozen_bn", freeze_at=2, pretrained=path)
    torch.testing.assert_close(backbone.body.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(backbone.body.bn1.running_var, reference.bn1.running_var)
    assert not backbone.body.conv1.weight.requires_grad and not backbone.body.layer1[0].conv1.weight.requires_grad
    assert backbone.body.layer2[0].conv1.weight.requires_grad


def test_missing_or_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.pth.*never downloaded"):
        ResNetFPN(18, 32, pretrained=tmp_path / "nothere.pth")
    path = tmp_path / "r34.pth"
    torch.save(resnet34().state_dict(), path)
    with pytest.raises(ValueError, match=r"r34\.pth does not fit this ResNet: .*unexpected keys \['layer1\.2"):
        ResNetFPN(18, 32, pretrained=path)
    with pytest.raises(ValueError, match=r"r34\.pth does not fit this ResNet"):
        ResNetFPN(34, 32, norm="gn", pretrained=path)  # BN statistics have no place in GroupNorm


def test_backbone_gives_p2_to_p6_at_their_strides() -> None:
    features = ResNetFPN(18, 16, norm="gn", freeze_at=0)(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "0": (1, 16, 16, 24), "1": (1, 16, 8, 12), "2": (1, 16, 4, 6), "3": (1, 16, 2, 3), "pool": (1, 16, 1, 2)}


def _panoptic_head_inputs(model, images, targets) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The detection scores the panoptic head received in one training forward pass."""
    seen: list[torch.Tensor] = []
    head_forward = model.panoptic_head.forward

    def record(semantic_probs, detections, masks=None, q=None):  # type: ignore[no-untyped-def]
        seen.append(detections["scores"].detach())
        return head_forward(semantic_probs, detections, masks, q)

    model.panoptic_head.forward = record
    model(images, targets)
    return seen


def test_training_feeds_the_panoptic_head_what_inference_would_keep(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    every = _panoptic_head_inputs(_model(categories).train(), images, targets)
    scores = torch.cat(every)
    thresh = round(float(scores.median()), 4)  # so that some detections fall below it and some do not
    assert float(scores.min()) < thresh <= float(scores.max())
    kept = _panoptic_head_inputs(
        _model(categories, f"eval.score_thresh={thresh}", "model.panoptic.train_detections=inference").train(),
        images, targets)
    # The same (seeded) model detects the same boxes; only those inference would keep reach the head.
    assert [s.tolist() for s in kept] == [s[s >= thresh].tolist() for s in every]


def test_log_logits_read_p_as_unnormalised_probabilities(batch) -> None:  # type: ignore[no-untyped-def]
    categories, _ = batch
    model = _model(categories, "model.panoptic.logits=log")
    p = torch.tensor([[[0.9]], [[0.1]], [[0.0]]])  # (K=3, 1, 1): the third channel's box misses the pixel
    logits = model._as_logits(p)
    target = torch.zeros(1, 1, dtype=torch.int64)
    expected = -torch.log(torch.tensor(0.9 / (0.9 + 0.1 + 1e-4)))
    torch.testing.assert_close(torch.nn.functional.cross_entropy(logits[None], target[None]), expected)
    assert int(logits.argmax()) == int(p.argmax())  # the same argmax as inference takes of P
    raw = _model(categories, "model.panoptic.logits=raw")._as_logits(p)
    assert raw is p


def test_panoptic_warm_up_scales_the_loss_and_skips_the_head_at_zero(batch) -> None:  # type: ignore[no-untyped-def]
    categories, (images, targets) = batch
    torch.manual_seed(5)
    full = _model(categories).train()(images, targets)
    torch.manual_seed(5)
    half = _model(categories).train()(images, targets, panoptic_scale=0.5)
    torch.testing.assert_close(half["loss_panoptic"], 0.5 * full["loss_panoptic"])
    model = _model(categories).train()
    off = model(images, targets, panoptic_scale=0.0)
    assert float(off["loss_panoptic"]) == 0.0
    sum(off.values()).backward()
    assert _grad_norm(model.panoptic_head.affinity) == 0  # the head did not run


def test_all_ablation_rows_start_from_the_same_weights_where_they_share_parts(batch) -> None:  # type: ignore[no-untyped-def]
    categories, _ = batch
    full = _model(categories).state_dict()
    for overrides in (["model.panoptic.use_affinity=false", "model.panoptic.end_to_end=false", "eval.modes=[heu]"],
                      ["model.detector.with_masks=false", "eval.modes=[full]"]):
        other = _model(categories, *overrides).state_dict()
        shared = set(full) & set(other)
        assert any(k.startswith("backbone.") for k in shared) and any("box_predictor" in k for k in shared)
        assert shared != set(full)  # the row really lacks a part
        for key in shared:
            torch.testing.assert_close(other[key], full[key], rtol=0, atol=0, msg=key)
