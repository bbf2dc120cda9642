"""Reader for any folder in the COCO panoptic format (COCO, converted Cityscapes, synthetic)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from unips.datasets.panoptic_format import (
    PanopticFormatError,
    check_segments_match,
    read_json,
    read_rgb_image,
)
from unips.datasets.panoptic_json import ImageRecord, parse_panoptic_json
from unips.datasets.panoptic_png import read_panoptic_png
from unips.datasets.targets import panoptic_targets

#: ``(image (H, W, 3) uint8, panoptic ids (H, W) int32) -> same, transformed together``.
JointTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class PanopticDataset(Dataset):
    """Images with panoptic ground truth from a COCO panoptic folder.

    Args:
        image_dir: folder of the images (``images[].file_name`` is relative to it).
        json_path: the ``panoptic_*.json`` file.
        png_dir: folder of the panoptic PNGs (``annotations[].file_name`` is relative to it).
        transform: optional joint transform of image and panoptic id map (augmentation).

    Each item is ``(image, target)``: ``image`` is a ``(3, H, W)`` float32 tensor in
    ``[0, 1]``; ``target`` holds what :func:`unips.datasets.targets.panoptic_targets`
    returns plus ``image_id``, ``file_name``, ``height`` and ``width``.
    The category mapping is ``dataset.categories``.
    """

    def __init__(
        self,
        image_dir: str | os.PathLike[str],
        json_path: str | os.PathLike[str],
        png_dir: str | os.PathLike[str],
        transform: JointTransform | None = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir)
        self.transform = transform
        self.categories, self.records = parse_panoptic_json(read_json(self.json_path), self.json_path)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, ImageRecord]:
        """Decode and check one image and its panoptic map, before any transform.

        Returns ``(image (H, W, 3) uint8, panoptic (H, W) int32, record)``.
        """
        record = self.records[index]
        image_path = self.image_dir / record.image_file
        png_path = self.png_dir / record.png_file
        image = read_rgb_image(image_path, image_id=record.image_id)
        panoptic = read_panoptic_png(png_path, image_id=record.image_id)
        if image.shape[:2] != panoptic.shape:
            raise PanopticFormatError(
                f"image id {record.image_id}: image {image_path} is {image.shape[1]}x{image.shape[0]} "
                f"but its panoptic PNG {png_path} is {panoptic.shape[1]}x{panoptic.shape[0]} (width x height)"
            )
        if record.height is not None and (record.height, record.width) != panoptic.shape:
            raise PanopticFormatError(
                f"image id {record.image_id}: {self.json_path} gives size {record.width}x{record.height} "
                f"but {png_path} is {panoptic.shape[1]}x{panoptic.shape[0]} (width x height)"
            )
        # pandas' hash-based unique is several times faster than np.unique's sort on large maps.
        check_segments_match(
            pd.unique(panoptic.ravel()),
            [seg["id"] for seg in record.segments_info],
            image_id=record.image_id,
            png_path=png_path,
            json_path=self.json_path,
        )
        return image, panoptic, record

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, panoptic, record = self.load(index)
        if self.transform is not None:
            image, panoptic = self.transform(image, panoptic)
        target = panoptic_targets(panoptic, list(record.segments_info), self.categories)
        target.update(
            image_id=record.image_id,
            file_name=record.image_file,
            height=panoptic.shape[0],
            width=panoptic.shape[1],
        )
        image_tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        return image_tensor, target


def collate_panoptic(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Keep images and their variable-length targets as per-image lists (torchvision detection style)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
