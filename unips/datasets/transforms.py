"""Joint augmentation of an image and its panoptic id map with albumentations.

Only the image and the ``(H, W)`` int32 segment-id map go through albumentations
(the map as a mask, so nearest-neighbour resampling and zero = void padding);
semantic map, boxes, masks and crowd regions are then derived from the
transformed id map (:func:`unips.datasets.targets.panoptic_targets`). They can
therefore never disagree with it, and instances cropped away vanish.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from unips.config import AugmentConfig


class ResizeShortestEdge(A.LongestMaxSize):
    """Scale so the shorter side is ``short_side`` unless the longer would exceed ``max_size``.

    albumentations' ``SmallestMaxSize`` followed by ``LongestMaxSize`` would instead
    force the longer side to exactly ``max_size``, enlarging images whose longer side
    is already below it. This is detectron2's ``ResizeShortestEdge``.
    """

    def __init__(self, short_side: int, max_size: int, p: float = 1.0) -> None:
        super().__init__(max_size=max_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=p)
        self.short_side = short_side

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        return {"scale": min(self.short_side / min(height, width), self.max_size / max(height, width))}


class PanopticAugmentation:
    """Callable ``(image (H, W, 3) uint8, panoptic (H, W) int32) -> (image', panoptic')``.

    albumentations keeps its own random state and ignores global seeds, and every
    DataLoader worker would get an identical copy of it. So each call reseeds the
    pipeline from torch's generator, which PyTorch seeds differently per worker and
    :func:`unips.seeding.seed_everything` seeds in the main process: augmentation is
    then reproducible for a given seed and worker count, and differs across workers.
    """

    def __init__(self, transforms: list[A.BasicTransform]) -> None:
        self.transforms = transforms
        self.pipeline = A.Compose(transforms, seed=0)

    def __call__(self, image: np.ndarray, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.pipeline.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
        out = self.pipeline(image=image, mask=panoptic.astype(np.int32, copy=False))
        return out["image"], out["mask"]

    def __repr__(self) -> str:
        return f"PanopticAugmentation({self.transforms})"


def _colour_jitter(cfg: AugmentConfig) -> list[A.BasicTransform]:
    if not any((cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)):
        return []
    return [A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation,
                          hue=cfg.hue, p=1.0)]


def build_train_augmentation(cfg: AugmentConfig) -> PanopticAugmentation | None:
    """The training augmentation a config asks for (None for ``kind: none``)."""
    if cfg.kind == "none":
        return None
    if cfg.kind == "scale_crop":  # the paper's Cityscapes recipe
        low, high = cfg.scale_range
        crop_h, crop_w = cfg.crop_size
        transforms: list[A.BasicTransform] = [
            A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                          mask_interpolation=cv2.INTER_NEAREST, p=1.0),
            # Padding is void (id 0) in the map and black in the image.
            A.PadIfNeeded(min_height=crop_h, min_width=crop_w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
            A.RandomCrop(height=crop_h, width=crop_w),
        ]
    else:  # "shortest_edge", the paper's COCO recipe
        transforms = [ResizeShortestEdge(cfg.short_side, cfg.max_long_side)]
    if cfg.hflip_prob > 0:
        transforms.append(A.HorizontalFlip(p=cfg.hflip_prob))
    if cfg.kind == "scale_crop":
        transforms += _colour_jitter(cfg)
    return PanopticAugmentation(transforms)


def build_test_resize(short_side: int | None, max_long_side: int | None) -> PanopticAugmentation | None:
    """The deterministic test-time resize (None keeps full resolution)."""
    if short_side is None:
        return None
    return PanopticAugmentation([ResizeShortestEdge(short_side, max_long_side or 10**9)])
