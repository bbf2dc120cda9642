"""Panoptic data: the COCO panoptic reader, the synthetic generator, Cityscapes conversion, augmentation.

The reader (and with it torch) is imported on first use, so tools that only need the
file format or the categories, such as the PQ command line, start without torch.
"""

from typing import Any

from unips.datasets.categories import IGNORE_INDEX, Category, CategoryMap
from unips.datasets.panoptic_format import PanopticFormatError

__all__ = ["IGNORE_INDEX", "Category", "CategoryMap", "PanopticDataset", "PanopticFormatError", "collate_panoptic"]


def __getattr__(name: str) -> Any:
    if name in ("PanopticDataset", "collate_panoptic"):
        from unips.datasets import coco_panoptic

        return getattr(coco_panoptic, name)
    raise AttributeError(f"module 'unips.datasets' has no attribute '{name}'")
